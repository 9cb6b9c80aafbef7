// PCRE2 wrapper for HF pre-tokenizer patterns (see regex.h).
#include "sala/text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "sala/core/error.h"

namespace sala::text {
namespace {

// Oniguruma's Unicode \s: White_Space minus nothing, i.e. U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680,
// U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 (no U+180E, unlike PCRE2 UCP).
constexpr std::string_view kSpaceSet = R"(\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

struct ThreadMatch {
  pcre2_match_data_8* md = nullptr;
  pcre2_match_context_8* mc = nullptr;
  pcre2_jit_stack_8* js = nullptr;
  ThreadMatch() {
    md = pcre2_match_data_create_8(4, nullptr);
    mc = pcre2_match_context_create_8(nullptr);
    js = pcre2_jit_stack_create_8(64 * 1024, 8 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign_8(mc, nullptr, js);
  }
  ~ThreadMatch() {
    pcre2_match_data_free_8(md);
    pcre2_match_context_free_8(mc);
    pcre2_jit_stack_free_8(js);
  }
};

}  // namespace

std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        if (class_depth > 0) out += kSpaceSet;
        else out += "[" + std::string(kSpaceSet) + "]";
      } else if (n == 'S' && class_depth == 0) {
        out += "[^" + std::string(kSpaceSet) + "]";
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (c == '[') ++class_depth;
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern, const std::string& what) : pattern_(pattern) {
  const std::string translated = onig_to_pcre2(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  auto* code = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(translated.data()), translated.size(),
                               PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR8 buf[256];
    pcre2_get_error_message_8(err, buf, sizeof buf);
    fail("{}: regex /{}/ does not compile with PCRE2 at offset {}: {}", what, pattern, off,
         reinterpret_cast<const char*>(buf));
  }
  pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = code;
}

Regex::~Regex() { pcre2_code_free_8(static_cast<pcre2_code_8*>(code_)); }

void Regex::find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const {
  thread_local ThreadMatch tm;
  auto* code = static_cast<pcre2_code_8*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR8>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    const int rc = pcre2_match_8(code, subject, s.size(), pos, PCRE2_NO_UTF_CHECK, tm.md, tm.mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR8 buf[256];
      pcre2_get_error_message_8(rc, buf, sizeof buf);
      fail("regex /{}/ failed while matching: {}", pattern_, reinterpret_cast<const char*>(buf));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(tm.md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      // Empty match: step one character forward (Oniguruma's find_iter does the same).
      if (b >= s.size()) break;
      pos = b + 1;
      while (pos < s.size() && (static_cast<uint8_t>(s[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
}

void Regex::replace_all(std::string& s, std::string_view to) const {
  std::vector<std::pair<size_t, size_t>> m;
  find_all(s, m);
  if (m.empty()) return;
  std::string out;
  size_t last = 0;
  for (auto [b, e] : m) {
    out.append(s, last, b - last);
    out += to;
    last = e;
  }
  out.append(s, last);
  s.swap(out);
}

}  // namespace sala::text
