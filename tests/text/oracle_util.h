// Helpers shared by the tokenizer tests: locating build/oracle (the HF-oracle output of scripts/oracle.sh), reading
// files, and a readable first-difference report for id sequences.
#pragma once
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "sala/text/tokenizer.h"

namespace sala::text::testing {

inline std::filesystem::path oracle_dir() {
  if (const char* e = std::getenv("SALA_ORACLE_DIR")) return e;
  return std::filesystem::path(SALA_SOURCE_DIR) / "build" / "oracle";
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string show(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '\n') o += "\\n";
    else if (c == '\r') o += "\\r";
    else if (c == '\t') o += "\\t";
    else if (c < 0x20) o += fmt::format("\\x{:02x}", c);
    else o += static_cast<char>(c);
  }
  return o;
}

// "" when equal, else a description of the first differing position with +-4 ids of context (ids and tokens).
inline std::string first_diff(const Tokenizer& tok, const std::vector<int32_t>& want, const std::vector<int32_t>& got) {
  size_t k = 0;
  while (k < want.size() && k < got.size() && want[k] == got[k]) ++k;
  if (k == want.size() && k == got.size()) return {};
  std::string msg = fmt::format("lengths want {} got {}; first difference at index {}\n", want.size(), got.size(), k);
  const auto side = [&](const char* name, const std::vector<int32_t>& v) {
    msg += fmt::format("  {}:", name);
    for (size_t i = k >= 4 ? k - 4 : 0; i < std::min(v.size(), k + 5); ++i)
      msg += fmt::format(" {}{}:'{}'", i == k ? "*" : "", v[i], show(tok.id_to_token(v[i]).value_or("?")));
    msg += "\n";
  };
  side("want", want);
  side("got ", got);
  return msg;
}

// "" when equal, else the first differing byte offset with 30 bytes of context from each side.
inline std::string text_diff(const std::string& want, const std::string& got) {
  if (want == got) return {};
  size_t k = 0;
  while (k < want.size() && k < got.size() && want[k] == got[k]) ++k;
  const size_t b = k >= 30 ? k - 30 : 0;
  return fmt::format("lengths want {} got {}; first difference at byte {}\n  want: \"{}\"\n  got : \"{}\"\n",
                     want.size(), got.size(), k, show(want.substr(b, 60)), show(got.substr(b, 60)));
}

}  // namespace sala::text::testing
