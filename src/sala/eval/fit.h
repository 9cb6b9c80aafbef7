// The length search: the largest haystack size n whose prompt fits a token budget, counted by the model's own
// tokenizer (RULER's binary search over the haystack). The count is treated as non-decreasing in n (it is, up to the
// odd merge across a word boundary), so the result n has count(n) <= target < count(n + 1): the prompt is within one
// unit's tokens of the target. A hint (the n found for the previous sample of the same task and length) makes the
// search a few tokenizations instead of twenty.
#pragma once
#include <cstdint>
#include <functional>

namespace sala::eval {

struct Fit {
  int64_t n = -1;       // -1: even n_min is over the target
  int64_t tokens = 0;   // count(n) (count(n_min) when n = -1)
  int evaluations = 0;  // calls of count
};

// n_max caps the search (the result is n_max when even that fits).
Fit fit_length(const std::function<int64_t(int64_t)>& count, int64_t target, int64_t n_min, int64_t hint = 0,
               int64_t n_max = int64_t(1) << 34);

}  // namespace sala::eval
