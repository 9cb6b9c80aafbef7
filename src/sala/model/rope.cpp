#include "sala/model/rope.h"

#include <cmath>

#include "sala/core/parallel.h"

namespace sala {

Rope::Rope(const RopeConfig& rc, int64_t dim, int64_t max_pos) : dim_(dim) {
  const int64_t half = dim / 2;
  inv_freq_.resize(size_t(half));
  for (int64_t i = 0; i < half; ++i) inv_freq_[size_t(i)] = 1.0f / std::pow(float(rc.theta), float(2 * i) / float(dim));
  if (rc.longrope()) {
    inv_ext_short_.resize(size_t(half));
    inv_ext_long_.resize(size_t(half));
    for (int64_t i = 0; i < half; ++i) {
      inv_ext_short_[size_t(i)] = 1.0f / float(rc.short_factor[size_t(i)]);
      inv_ext_long_[size_t(i)] = 1.0f / float(rc.long_factor[size_t(i)]);
    }
    // HF builds its first cache for max_position_embeddings tokens: long factors from the start if that exceeds the
    // original context.
    long_from_ = max_pos > rc.original_max_position_embeddings ? 0 : rc.original_max_position_embeddings;
    double s = double(max_pos) / double(rc.original_max_position_embeddings);
    mscale_ =
        s <= 1.0 ? 1.0f : float(std::sqrt(1.0 + std::log(s) / std::log(double(rc.original_max_position_embeddings))));
  }
}

void Rope::apply(float* x, int64_t T, int64_t H, int64_t pos0, int64_t seq_len) const {
  const int64_t half = dim_ / 2;
  const std::vector<float>& inv_ext = seq_len > long_from_ ? inv_ext_long_ : inv_ext_short_;
  ParallelErrors errs;
#pragma omp parallel for schedule(static) if (T > 16)
  for (int64_t t = 0; t < T; ++t)
    errs.run([&] {
      std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
      const float pos = float(pos0 + t);
      for (int64_t i = 0; i < half; ++i) {
        float a = inv_ext.empty() ? pos * inv_freq_[size_t(i)] : (pos * inv_ext[size_t(i)]) * inv_freq_[size_t(i)];
        c[size_t(i)] = float(std::cos(double(a))) * mscale_;
        s[size_t(i)] = float(std::sin(double(a))) * mscale_;
      }
      for (int64_t h = 0; h < H; ++h) {
        float* xh = x + (t * H + h) * dim_;
        for (int64_t i = 0; i < half; ++i) {
          const float a = xh[i], b = xh[i + half];
          xh[i] = a * c[size_t(i)] - b * s[size_t(i)];
          xh[i + half] = b * c[size_t(i)] + a * s[size_t(i)];
        }
      }
    });
  errs.rethrow();
}

}  // namespace sala
