// Word material for the eval tasks, bundled (no downloads): English adjective/noun/verb lists for needle keys
// ("adjective-noun", as RULER's wonderwords keys), an endless pool of distinct words for common-words extraction
// (the real words first, then pronounceable syllable words), and the random values needles carry (7-digit numbers,
// UUIDs, 5-letter variable names, 6-letter coded words). Everything is drawn from a caller's Rng: same seed, same words.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sala/core/rng.h"

namespace sala::eval {

std::span<const std::string_view> adjectives();
std::span<const std::string_view> nouns();
std::span<const std::string_view> verbs();

std::string random_key(Rng& r);                  // "adjective-noun"
std::string random_number(Rng& r, int digits);   // uniform over the numbers of exactly `digits` digits
std::string random_uuid(Rng& r);                 // RFC 4122 version-4 layout, lowercase hex
std::string random_letters(Rng& r, int n, bool upper);

// n distinct words in a seeded order: the bundled real words (shuffled) first, then syllable words, so any n works.
std::vector<std::string> distinct_words(Rng& r, int64_t n);

// Fisher-Yates with the caller's Rng (std::shuffle's result depends on the standard library).
template <class T>
void shuffle(std::vector<T>& v, Rng& r) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[r.below(i)]);
}

}  // namespace sala::eval
