#include "sala/eval/haystack.h"

#include <algorithm>

#include "sala/core/error.h"
#include "sala/eval/files.h"

namespace sala::eval {

const char* const kNoiseText =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

std::vector<std::string> split_sentences(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  const auto flush = [&] {
    while (!cur.empty() && cur.back() == ' ') cur.pop_back();
    if (!cur.empty()) out.push_back(cur);
    cur.clear();
  };
  const auto is_space = [](unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (is_space(c)) {
      if (!cur.empty() && cur.back() != ' ') cur += ' ';
      continue;
    }
    cur += char(c);
    const bool next_space_or_end = i + 1 == text.size() || is_space(static_cast<unsigned char>(text[i + 1]));
    if ((c == '.' || c == '!' || c == '?') && next_space_or_end) {
      flush();
      continue;
    }
    // CJK full stop / exclamation / question mark (UTF-8 E3 80 82, EF BC 81, EF BC 9F) end a sentence by themselves
    if (cur.size() >= 3) {
      const std::string_view t(cur.data() + cur.size() - 3, 3);
      if (t == "\xE3\x80\x82" || t == "\xEF\xBC\x81" || t == "\xEF\xBC\x9F") flush();
    }
  }
  flush();
  return out;
}

std::shared_ptr<const std::vector<std::string>> load_corpus(const std::string& path, const std::string& what) {
  auto sentences = std::make_shared<std::vector<std::string>>();
  for (const std::string& f : text_files(path, what))
    for (std::string& s : split_sentences(read_text(f, what))) sentences->push_back(std::move(s));
  if (sentences->empty()) fail("{}: {}: holds no text", what, path);
  return sentences;
}

Haystack Haystack::noise() {
  const auto sentences = std::make_shared<const std::vector<std::string>>(split_sentences(kNoiseText));
  return text(sentences, 0);
}

Haystack Haystack::text(std::shared_ptr<const std::vector<std::string>> sentences, uint64_t first_sentence) {
  SALA_CHECK(sentences && !sentences->empty());
  auto at = std::make_shared<size_t>(size_t(first_sentence % sentences->size()));
  return Haystack([sentences, at]() {
    const std::string& s = (*sentences)[*at];
    *at = (*at + 1) % sentences->size();
    return s;
  });
}

Haystack Haystack::generated(std::function<std::string()> next_sentence) {
  Haystack h(std::move(next_sentence));
  h.whole_sentences_ = true;
  return h;
}

void Haystack::ensure(int64_t n) {
  while (int64_t(words_.size()) < n) {
    const std::string s = next_();
    const size_t before = words_.size();
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && s[i] == ' ') ++i;
      size_t j = i;
      while (j < s.size() && s[j] != ' ') ++j;
      if (j > i) {
        words_.push_back(s.substr(i, j - i));
        ends_.push_back(false);
        if (chars_.empty()) chars_.push_back(0);
        chars_.push_back(chars_.back() + (weigh_ ? weigh_(words_.back()) : int64_t(j - i) + 1));
      }
      i = j;
    }
    SALA_CHECK(words_.size() > before);  // a sentence without words would never end the loop
    ends_.back() = true;
  }
}

std::string Haystack::render(int64_t n, std::vector<Insert> inserts, int64_t extra) {
  ensure(n + (extra > 0));
  std::stable_sort(inserts.begin(), inserts.end(), [](const Insert& a, const Insert& b) { return a.at < b.at; });
  std::string out;
  const auto add = [&out](const std::string& s) {
    if (!out.empty()) out += ' ';
    out += s;
  };
  size_t k = 0;
  for (int64_t i = 0; i <= n; ++i) {
    while (k < inserts.size() && inserts[k].at <= i) add(inserts[k++].text);
    if (i < n) add(words_[size_t(i)]);
  }
  for (; k < inserts.size(); ++k) add(inserts[k].text);
  if (extra > 0) {
    const std::string& w = words_[size_t(n)];
    size_t e = std::min(size_t(extra), w.size());
    while (e > 0 && e < w.size() && (static_cast<unsigned char>(w[e]) & 0xC0) == 0x80) --e;  // not inside a character
    if (e > 0) add(w.substr(0, e));
  }
  return out;
}

int64_t Haystack::at_depth(double d, int64_t n) {
  ensure(n);
  if (n == 0) return 0;
  const int64_t want = int64_t(d * double(chars_[size_t(n)]) + 0.5);
  // the boundary k whose character count is nearest to want
  const auto it = std::lower_bound(chars_.begin(), chars_.begin() + n + 1, want);
  int64_t k = it - chars_.begin();
  if (k > 0 && (k > n || want - chars_[size_t(k - 1)] < chars_[size_t(k)] - want)) --k;
  return snap(std::min(k, n), n);
}

int64_t Haystack::snap(int64_t at, int64_t n) {
  at = std::clamp<int64_t>(at, 0, n);
  ensure(n);
  const auto boundary = [&](int64_t k) { return k == 0 || k == n || ends_[size_t(k - 1)]; };
  // a haystack of generated sentences (distractor needles) is never cut by an insert: the nearest boundary, however far
  const int64_t radius = whole_sentences_ ? n : std::max<int64_t>(2, n / 200);
  for (int64_t r = 0; r <= radius; ++r) {
    if (at - r >= 0 && boundary(at - r)) return at - r;
    if (at + r <= n && boundary(at + r)) return at + r;
  }
  return at;
}

}  // namespace sala::eval
