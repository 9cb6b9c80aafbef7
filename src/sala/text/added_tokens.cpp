// Added-token matching (see added_tokens.h): at each position the longest token starting there wins; the scan
// resumes after the match, as a leftmost-longest Aho-Corasick find_iter does.
#include "sala/text/added_tokens.h"

#include <utf8proc.h>

#include "sala/text/utf8.h"

namespace sala::text {
namespace {

bool is_ws(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_word_char(char32_t c) {  // Rust char::is_alphanumeric or '_'
  if (c == '_') return true;
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
         (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

char32_t last_char(std::string_view s) {
  size_t k = s.size() - 1;
  while (k > 0 && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
  return utf8_next(s, k);
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens) {
  tokens_.clear();
  edges_.clear();
  terminal_.assign(1, -1);
  for (auto& f : first_byte_) f = false;
  for (const auto& t : tokens) {
    if (t.content.empty()) continue;
    int32_t node = 0;
    for (char c : t.content) {
      const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        const auto child = static_cast<int32_t>(terminal_.size());
        terminal_.push_back(-1);
        it = edges_.emplace(key, child).first;
      }
      node = it->second;
    }
    if (terminal_[static_cast<size_t>(node)] < 0) {  // first definition of a content wins
      terminal_[static_cast<size_t>(node)] = static_cast<int32_t>(tokens_.size());
      tokens_.push_back(Tok{t.id, t.lstrip, t.rstrip, t.single_word});
    }
    first_byte_[static_cast<uint8_t>(t.content[0])] = true;
  }
}

void AddedTokenMatcher::split(std::string_view s, std::vector<Segment>& out) const {
  size_t text_start = 0;
  size_t i = 0;
  while (i < s.size()) {
    if (!first_byte_[static_cast<uint8_t>(s[i])]) {
      ++i;
      continue;
    }
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t k = i; k < s.size(); ++k) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(s[k]));
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[static_cast<size_t>(node)] >= 0) best = terminal_[static_cast<size_t>(node)], best_end = k + 1;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const Tok& t = tokens_[static_cast<size_t>(best)];
    size_t b = i, e = best_end;
    if (t.single_word) {
      const bool start_ok = b == 0 || !is_word_char(last_char(s.substr(0, b)));
      size_t j = e;
      const bool stop_ok = e == s.size() || !is_word_char(utf8_next(s, j));
      if (!start_ok || !stop_ok) {
        i = best_end;
        continue;
      }
    }
    if (t.lstrip) {
      while (b > text_start) {
        size_t k = b - 1;
        while (k > text_start && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_ws(utf8_next(s, j))) break;
        b = k;
      }
    }
    if (t.rstrip) {
      while (e < s.size()) {
        size_t j = e;
        if (!is_ws(utf8_next(s, j))) break;
        e = j;
      }
    }
    if (text_start < b) out.push_back(Segment{text_start, b, -1});
    out.push_back(Segment{b, e, t.id});
    text_start = e;
    i = e;
  }
  if (text_start < s.size() || s.empty()) out.push_back(Segment{text_start, s.size(), -1});
}

}  // namespace sala::text
