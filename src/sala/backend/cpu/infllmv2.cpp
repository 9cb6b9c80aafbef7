#include "sala/backend/cpu/infllmv2.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "sala/backend/cpu/ops.h"
#include "sala/core/error.h"
#include "sala/core/parallel.h"

namespace sala::cpu {

void CompressedKeys::init(int64_t kernel_, int64_t stride_, int64_t heads_, int64_t dim_) {
  kernel = kernel_;
  stride = stride_;
  heads = heads_;
  dim = dim_;
  clear();
}

void CompressedKeys::clear() {
  windows.clear();
  tail.clear();
}

void CompressedKeys::append(const float* k, int64_t n) {
  SALA_CHECK(kernel > 0 && stride > 0 && heads > 0 && dim > 0);
  const int64_t row = heads * dim;
  tail.insert(tail.end(), k, k + n * row);
  int64_t tail_len = int64_t(tail.size()) / row;
  int64_t consumed = 0;
  while (tail_len - consumed >= kernel) {
    const float* base = tail.data() + consumed * row;
    size_t at = windows.size();
    windows.resize(at + size_t(row));
    float* w = windows.data() + at;
    for (int64_t e = 0; e < row; ++e) {
      float s = 0;
      for (int64_t t = 0; t < kernel; ++t) s += base[t * row + e];
      w[e] = s / float(kernel);
    }
    consumed += stride;
  }
  if (consumed) tail.erase(tail.begin(), tail.begin() + consumed * row);
}

int64_t stage1_visible_windows(int64_t pos, int64_t call_len, int64_t stride) {
  const int64_t kernel = 2 * stride;
  int64_t complete = pos + 1 >= kernel ? (pos + 1 - kernel) / stride + 1 : 0;
  const bool off_by_one = call_len >= kernel - 1 && call_len % stride == stride - 1;
  return std::max<int64_t>(0, complete - (off_by_one ? 1 : 0));
}

void infllmv2_select(int32_t* idx, const float* q, const CompressedKeys& k1, const CompressedKeys& k2, int64_t T,
                     int64_t pos0, int64_t call_len, int64_t Hq, const SelectParams& p,
                     std::vector<float>* scores_out) {
  const int64_t Hkv = k1.heads, D = k1.dim, group = Hq / Hkv, K = p.topk_total;
  const int64_t n1_total = k1.count(), n2_total = k2.count();
  const int64_t r = p.block / p.stride;  // K1 windows per block step
  if (scores_out) scores_out->assign(size_t(Hkv * T * n1_total), 0.0f);
  const float neg_inf = -std::numeric_limits<float>::infinity(), pos_inf = std::numeric_limits<float>::infinity();

  ParallelErrors errs;
#pragma omp parallel if (Hkv * T * Hq * (n1_total + n2_total) * D > kParallelWork)
  {
    std::vector<float> s, l2, blk;
    std::vector<int32_t> order;
    errs.run([&] {  // per-thread scratch: its allocation may throw too (iterations are skipped then)
      s.resize(size_t(n1_total));
      l2.resize(size_t(n2_total));
    });
#pragma omp for schedule(dynamic, 4) collapse(2)
    for (int64_t g = 0; g < Hkv; ++g)
      for (int64_t t = 0; t < T; ++t)
        errs.run([&] {
          const int64_t pos = pos0 + t;
          const int64_t n1 = std::min(stage1_visible_windows(pos, call_len, p.stride), n1_total);
          const int64_t n2 = std::min(stage1_visible_windows(pos, call_len, 4 * p.stride), n2_total);
          std::fill(s.begin(), s.end(), 0.0f);
          if (n2 > 0) {
            for (int64_t hh = 0; hh < group; ++hh) {
              const float* qh = q + (t * Hq + g * group + hh) * D;
              float mx = neg_inf;
              for (int64_t j = 0; j < n2; ++j) {
                l2[size_t(j)] = dot(qh, k2.windows.data() + (j * Hkv + g) * D, D) * p.scale;
                mx = std::max(mx, l2[size_t(j)]);
              }
              double sum = 0;
              for (int64_t j = 0; j < n2; ++j) sum += std::exp(double(l2[size_t(j)] - mx));
              const float lse = mx + float(std::log(sum));
              for (int64_t i = 0; i < n1; ++i)
                s[size_t(i)] += std::exp(dot(qh, k1.windows.data() + (i * Hkv + g) * D, D) * p.scale - lse);
            }
          }
          for (auto& x : s)
            if (x != x) x = 0.0f;  // the reference zeroes NaN stage-1 scores
          if (scores_out) std::copy(s.begin(), s.end(), scores_out->begin() + (g * T + t) * n1_total);

          // Pool onto blocks 0..q_blk: blocks beyond q_blk score 0 or -inf and lose every tie to earlier blocks, and
          // are dropped afterwards, so leaving them out changes nothing.
          const int64_t q_blk = pos / p.block, nb = q_blk + 1;
          blk.assign(size_t(nb), neg_inf);
          for (int64_t b = 0; b < nb; ++b) {
            const int64_t lo = std::max<int64_t>(0, b * r - 1), hi = std::min(n1_total, b * r - 1 + r + 1);
            for (int64_t i = lo; i < hi; ++i) blk[size_t(b)] = std::max(blk[size_t(b)], s[size_t(i)]);
          }
          for (int64_t b = 0; b < std::min(p.init_blocks, nb); ++b) blk[size_t(b)] = pos_inf;
          for (int64_t b = std::max<int64_t>(0, q_blk - p.local_blocks); b <= q_blk; ++b) blk[size_t(b)] = pos_inf;

          int32_t* out = idx + (g * T + t) * K;
          const int64_t take = std::min(K, nb);
          order.resize(size_t(nb));
          std::iota(order.begin(), order.end(), 0);
          auto better = [&](int32_t a, int32_t b) {
            float sa = blk[size_t(a)], sb = blk[size_t(b)];
            return sa > sb || (sa == sb && a < b);  // ties toward the lower block index
          };
          if (take < nb) std::nth_element(order.begin(), order.begin() + take, order.end(), better);
          std::sort(order.begin(), order.begin() + take);
          for (int64_t j = 0; j < K; ++j) out[j] = j < take ? order[size_t(j)] : -1;
        });
  }
  errs.rethrow();
}

}  // namespace sala::cpu
