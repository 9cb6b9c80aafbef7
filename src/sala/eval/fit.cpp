#include "sala/eval/fit.h"

#include <algorithm>
#include <cmath>

#include "sala/core/error.h"

namespace sala::eval {

Fit fit_length(const std::function<int64_t(int64_t)>& count, int64_t target, int64_t n_min, int64_t hint,
               int64_t n_max) {
  Fit f;
  const int64_t c_min = count(n_min);
  f.evaluations = 1;
  if (c_min > target || n_min >= n_max) {
    if (c_min <= target) f.n = n_min;
    f.tokens = c_min;
    return f;
  }
  int64_t lo = n_min, c_lo = c_min, hi = -1, c_hi = 0;
  const auto probe = [&](int64_t n) {
    const int64_t c = count(n);
    ++f.evaluations;
    if (c <= target) {
      if (n > lo) lo = n, c_lo = c;
    } else if (hi < 0 || n < hi) {
      hi = n, c_hi = c;
    }
  };
  // Bracket: from the hint, then extrapolate at the rate seen so far, aiming a little past the target.
  probe(std::clamp(hint, n_min + 1, n_max));
  while (hi < 0) {
    if (lo >= n_max) break;
    const double rate = lo > n_min ? double(c_lo - c_min) / double(lo - n_min) : 0.0;
    int64_t step = rate > 0 ? int64_t(std::ceil(double(target - c_lo) / rate * 1.05)) + 1 : 2 * (lo - n_min) + 1;
    step = std::max<int64_t>(step, 1);
    probe(std::min(n_max, lo + step));
  }
  // Narrow: interpolation (the count is close to linear in n), every other probe a bisection so it always ends.
  for (int k = 0; hi >= 0 && hi - lo > 1; ++k) {
    int64_t n;
    if (k % 2 == 0 && c_hi > c_lo)
      n = lo + int64_t(double(target - c_lo) * double(hi - lo) / double(c_hi - c_lo));
    else
      n = lo + (hi - lo) / 2;
    probe(std::clamp(n, lo + 1, hi - 1));
  }
  f.n = lo;
  f.tokens = c_lo;
  return f;
}

}  // namespace sala::eval
