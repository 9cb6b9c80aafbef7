// Haystacks: an endless, deterministic stream of sentences, held as words, of which a task takes the first n (the
// unit the length search counts in: one word moves a prompt by a token or two, so a target length is hit to within
// 1% from a few hundred tokens on). Needles are inserted between words, at sentence boundaries where one is near.
//  - noise: RULER's and passkey's filler ("The grass is green. The sky is blue. ..."), repeated;
//  - text: the sentences of local text files (any corpus; RULER's essays swapped for what is on disk), cycled from a
//    seeded starting sentence;
//  - a generator: sentences made by the task (RULER's haystack of distractor needles).
// Whitespace is normalized to single spaces, as RULER does for its essays.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sala::eval {

extern const char* const kNoiseText;

// The sentences of a text corpus: files read, whitespace collapsed, split after . ! ? (and CJK 。！？) followed by
// space or end. Throws sala::Error naming `what` when there is no text.
std::vector<std::string> split_sentences(const std::string& text);
std::shared_ptr<const std::vector<std::string>> load_corpus(const std::string& path, const std::string& what);

struct Insert {
  int64_t at = 0;    // word index the text goes before (0..n)
  std::string text;  // a sentence (needle, assignment)
};

class Haystack {
 public:
  static Haystack noise();
  static Haystack text(std::shared_ptr<const std::vector<std::string>> sentences, uint64_t first_sentence);
  static Haystack generated(std::function<std::string()> next_sentence);

  // The first n words (n >= 0) with the inserts (any order; equal positions keep their order) joined by spaces, then
  // the first `extra` bytes of word n (the length search's last, finest step; cut on a UTF-8 character boundary).
  std::string render(int64_t n, std::vector<Insert> inserts, int64_t extra = 0);
  // The word boundary (0..n) nearest to `at` that ends a sentence, if one lies within max(2, n/200) words (any
  // distance for a generated haystack, whose sentences are short and must stay whole); else at.
  int64_t snap(int64_t at, int64_t n);
  // The word boundary with the fraction d (0..1) of the first n words' weight before it, snapped. A word weighs its
  // bytes + 1 unless a weigher is set (the model's tokens of " word": depth then counts in tokens, even in a text whose
  // words vary as code, tables and names do). Set the weigher before the first word is read.
  int64_t at_depth(double d, int64_t n);
  void set_weigher(std::function<int64_t(const std::string&)> w) { weigh_ = std::move(w); }
  const std::string& word(int64_t i) {
    ensure(i + 1);
    return words_[size_t(i)];
  }

 private:
  explicit Haystack(std::function<std::string()> next) : next_(std::move(next)) {}
  void ensure(int64_t n);
  std::function<std::string()> next_;
  std::vector<std::string> words_;
  std::vector<bool> ends_;  // ends_[i]: word i ends a sentence
  std::vector<int64_t> chars_;  // chars_[i]: the weight of words [0, i)
  std::function<int64_t(const std::string&)> weigh_;
  bool whole_sentences_ = false;  // inserts go between sentences only
};

}  // namespace sala::eval
