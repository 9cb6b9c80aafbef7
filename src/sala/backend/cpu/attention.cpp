#include "sala/backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "sala/backend/cpu/ops.h"
#include "sala/core/parallel.h"

namespace sala::cpu {

namespace {

// One query row against a list of key ranges [lo, hi); online softmax is not needed on the CPU:
// scores are materialised, max-subtracted, normalised in double.
struct RangeList {
  std::vector<std::pair<int64_t, int64_t>> r;
};

void attend_row(float* out, const float* qh, const float* k, const float* v, const RangeList& ranges, int64_t kv_stride,
                int64_t D, float scale, std::vector<float>& scores) {
  int64_t n = 0;
  for (auto [lo, hi] : ranges.r) n += hi - lo;
  scores.resize(size_t(n));
  float mx = -std::numeric_limits<float>::infinity();
  int64_t c = 0;
  for (auto [lo, hi] : ranges.r)
    for (int64_t j = lo; j < hi; ++j, ++c) {
      float s = dot(qh, k + j * kv_stride, D) * scale;
      scores[size_t(c)] = s;
      mx = std::max(mx, s);
    }
  double sum = 0;
  for (auto& s : scores) {
    s = std::exp(s - mx);
    sum += s;
  }
  for (int64_t j = 0; j < D; ++j) out[j] = 0;
  c = 0;
  const float inv = float(1.0 / sum);
  for (auto [lo, hi] : ranges.r)
    for (int64_t j = lo; j < hi; ++j, ++c) axpy(out, v + j * kv_stride, scores[size_t(c)] * inv, D);
}

}  // namespace

void attention_causal(float* o, const float* q, const float* k, const float* v, int64_t T, int64_t pos0, int64_t Hq,
                      int64_t Hkv, int64_t D, float scale) {
  const int64_t group = Hq / Hkv;
  ParallelErrors errs;
#pragma omp parallel if (T * Hq * (pos0 + T) * D > kParallelWork)
  {
    std::vector<float> scores;
    RangeList rl;
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < Hq; ++h)
        errs.run([&] {
          rl.r.assign(1, {0, pos0 + t + 1});
          const int64_t g = h / group;
          attend_row(o + (t * Hq + h) * D, q + (t * Hq + h) * D, k + g * D, v + g * D, rl, Hkv * D, D, scale, scores);
        });
  }
  errs.rethrow();
}

void attention_block_sparse(float* o, const float* q, const float* k, const float* v, const int32_t* idx, int64_t K,
                            int64_t block, int64_t T, int64_t pos0, int64_t Hq, int64_t Hkv, int64_t D, float scale) {
  const int64_t group = Hq / Hkv;
  ParallelErrors errs;
#pragma omp parallel if (T * Hq * K * block * D > kParallelWork)
  {
    std::vector<float> scores;
    RangeList rl;
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < Hq; ++h)
        errs.run([&] {
          const int64_t g = h / group, p = pos0 + t;
          rl.r.clear();
          const int32_t* row = idx + (g * T + t) * K;
          for (int64_t r = 0; r < K; ++r) {
            if (row[r] < 0) continue;
            int64_t lo = int64_t(row[r]) * block, hi = std::min(lo + block, p + 1);
            if (lo < hi) rl.r.push_back({lo, hi});
          }
          attend_row(o + (t * Hq + h) * D, q + (t * Hq + h) * D, k + g * D, v + g * D, rl, Hkv * D, D, scale, scores);
        });
  }
  errs.rethrow();
}

}  // namespace sala::cpu
