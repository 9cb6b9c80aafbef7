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

// Every (token, query head) row of a step, in parallel when the work is large, each against the key ranges that
// ranges(t, g, p, rl) puts in rl (g: the row's kv head, p: its position); scratch is per thread.
template <class Ranges>
void attend_rows(float* o, const float* q, const float* k, const float* v, int64_t T, int64_t pos0, int64_t Hq,
                 int64_t Hkv, int64_t D, float scale, int64_t work, const Ranges& ranges) {
  const int64_t group = Hq / Hkv;
  ParallelErrors errs;
#pragma omp parallel if (work > kParallelWork)
  {
    std::vector<float> scores;
    RangeList rl;
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < Hq; ++h)
        errs.run([&] {
          const int64_t g = h / group;
          ranges(t, g, pos0 + t, rl);
          attend_row(o + (t * Hq + h) * D, q + (t * Hq + h) * D, k + g * D, v + g * D, rl, Hkv * D, D, scale, scores);
        });
  }
  errs.rethrow();
}

}  // namespace

void attention_causal(float* o, const float* q, const float* k, const float* v, int64_t T, int64_t pos0, int64_t Hq,
                      int64_t Hkv, int64_t D, float scale) {
  attend_rows(o, q, k, v, T, pos0, Hq, Hkv, D, scale, T * Hq * (pos0 + T) * D,
              [](int64_t, int64_t, int64_t p, RangeList& rl) {
                rl.r.assign(1, {0, p + 1});
              });
}

void attention_block_sparse(float* o, const float* q, const float* k, const float* v, const int32_t* idx, int64_t K,
                            int64_t block, int64_t T, int64_t pos0, int64_t Hq, int64_t Hkv, int64_t D, float scale) {
  attend_rows(o, q, k, v, T, pos0, Hq, Hkv, D, scale, T * Hq * K * block * D,
              [&](int64_t t, int64_t g, int64_t p, RangeList& rl) {
                rl.r.clear();
                const int32_t* row = idx + (g * T + t) * K;
                for (int64_t r = 0; r < K; ++r) {
                  if (row[r] < 0) continue;
                  const int64_t lo = int64_t(row[r]) * block, hi = std::min(lo + block, p + 1);
                  if (lo < hi) rl.r.push_back({lo, hi});
                }
              });
}

}  // namespace sala::cpu
