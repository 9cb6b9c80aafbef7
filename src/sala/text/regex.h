// Regex: a PCRE2 (UTF + UCP, JIT) pattern for pre-tokenizer Split and ByteLevel patterns.
// HF tokenizers runs these patterns through Oniguruma; the translation rewrites \s and \S to Oniguruma's Unicode
// White_Space set (PCRE2's UCP \s also matches U+180E, Oniguruma's does not) so both engines split identically.
// Thread-safe: the compiled code is shared read-only; match data and the JIT stack are per thread.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sala::text {

class Regex {
 public:
  // Compiles an HF/Oniguruma-syntax pattern; `what` names it in error messages (e.g. the tokenizer.json path).
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Appends the non-empty matches of `s` (a valid UTF-8 string) as [begin, end) byte ranges.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;
  // Replaces every match in s by `to` (HF Replace with a Regex pattern).
  void replace_all(std::string& s, std::string_view to) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// Rewrites Oniguruma-isms of HF patterns into PCRE2 syntax (exposed for tests).
std::string onig_to_pcre2(std::string_view pattern);

}  // namespace sala::text
