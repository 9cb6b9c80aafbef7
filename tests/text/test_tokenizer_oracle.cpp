// Golden tests against Hugging Face tokenizers: for every fixture written by scripts/oracle.sh (build/oracle/
// expected_<fixture>.json), sala must give the same ids (with and without special tokens), the same decodes (special
// tokens skipped and kept) and, streamed id by id, the same text. Skips when the oracle output is absent.
#include <gtest/gtest.h>

#include "oracle_util.h"
#include "sala/text/tokenizer.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

using testing::first_diff;
using testing::oracle_dir;
using testing::read_bytes;
using testing::show;
using testing::text_diff;

void check_fixture(const std::string& name) {
  const auto exp_path = oracle_dir() / ("expected_" + name + ".json");
  if (!std::filesystem::exists(exp_path))
    GTEST_SKIP() << exp_path << " not found: run scripts/oracle.sh first (needs Node 20 + npm)"
                 << (name == "minicpm" ? " and ../shared/fixtures/minicpm-tokenizer" : "");
  const auto exp = nlohmann::json::parse(read_bytes(exp_path));
  const auto tok = Tokenizer::load(exp.at("dir").get<std::string>());
  std::map<std::string, std::string> files;
  int n_cases = 0, n_fail = 0;
  for (const auto& c : exp.at("cases")) {
    const std::string file = c.at("file").get<std::string>();
    if (!files.count(file)) files[file] = read_bytes(oracle_dir() / "corpus" / file);
    const int line = c.at("line").get<int>();
    std::string text = files[file];
    if (line >= 0) {
      size_t b = 0;
      for (int k = 0; k < line; ++k) b = text.find('\n', b) + 1;
      const size_t e = text.find('\n', b);
      text = text.substr(b, e == std::string::npos ? std::string::npos : e - b);
    }
    const std::string where = fmt::format("{} {}:{} \"{}\"", name, file, line, show(text.substr(0, 80)));
    ++n_cases;
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    const auto want_plain = c.at("ids_plain").get<std::vector<int32_t>>();
    const auto got = tok->encode(text, true);
    const auto got_plain = tok->encode(text, false);
    std::string d = first_diff(*tok, want, got);
    if (!d.empty()) {
      ADD_FAILURE() << where << " add_special_tokens=true: " << d;
      if (++n_fail > 10) break;
      continue;
    }
    d = first_diff(*tok, want_plain, got_plain);
    if (!d.empty()) {
      ADD_FAILURE() << where << " add_special_tokens=false: " << d;
      if (++n_fail > 10) break;
      continue;
    }
    const std::string dec_skip = tok->decode(got, true), dec_keep = tok->decode(got, false);
    EXPECT_EQ(text_diff(c.at("decode_skip").get<std::string>(), dec_skip), "") << where << " decode(skip_special=true)";
    EXPECT_EQ(text_diff(c.at("decode_keep").get<std::string>(), dec_keep), "") << where << " decode(skip_special=false)";
    if (c.at("roundtrip").get<bool>()) {
      EXPECT_EQ(text_diff(to_valid_utf8(text), tok->decode(got_plain, false)), "") << where << " roundtrip";
    }
    // Streaming, id by id, gives the same text as one decode.
    StreamDecoder sd(*tok, true);
    std::string streamed;
    for (int32_t id : got) streamed += sd.push(id);
    streamed += sd.finish();
    EXPECT_EQ(text_diff(dec_skip, streamed), "") << where << " streamed decode";
  }
  EXPECT_GT(n_cases, 100) << "oracle file has too few cases";
  std::printf("[ oracle ] %s: %d cases compared\n", name.c_str(), n_cases);
}

TEST(TokenizerOracle, MiniCPM) { check_fixture("minicpm"); }
TEST(TokenizerOracle, Llama2Mistral32k) { check_fixture("llama2"); }
TEST(TokenizerOracle, Llama2Metaspace) { check_fixture("llama2-metaspace"); }
TEST(TokenizerOracle, Qwen3) { check_fixture("qwen3"); }
TEST(TokenizerOracle, Qwen3IgnoreMerges) { check_fixture("qwen3-ignore-merges"); }
TEST(TokenizerOracle, Qwen3DigitsNfkcLowercase) { check_fixture("qwen3-digits"); }
TEST(TokenizerOracle, Gpt2) { check_fixture("gpt2"); }
TEST(TokenizerOracle, Gpt2PrefixSpace) { check_fixture("gpt2-prefix-space"); }

}  // namespace
}  // namespace sala::text
