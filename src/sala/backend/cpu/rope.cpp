#include "sala/backend/cpu/rope.h"

#include <cmath>
#include <vector>

#include "sala/core/parallel.h"

namespace sala::cpu {

void rope_apply(float* x, int64_t T, int64_t H, const RopeTables& r, int64_t pos0, int64_t seq_len) {
  const int64_t dim = r.dim, half = dim / 2;
  const std::vector<float>& inv_ext = r.inv_ext(seq_len);
  ParallelErrors errs;
#pragma omp parallel for schedule(static) if (T > 16)
  for (int64_t t = 0; t < T; ++t)
    errs.run([&] {
      std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
      const float pos = float(pos0 + t);
      for (int64_t i = 0; i < half; ++i) {
        float a = inv_ext.empty() ? pos * r.inv_freq[size_t(i)] : (pos * inv_ext[size_t(i)]) * r.inv_freq[size_t(i)];
        c[size_t(i)] = float(std::cos(double(a))) * r.mscale;
        s[size_t(i)] = float(std::sin(double(a))) * r.mscale;
      }
      for (int64_t h = 0; h < H; ++h) {
        float* xh = x + (t * H + h) * dim;
        for (int64_t i = 0; i < half; ++i) {
          const float a = xh[i], b = xh[i + half];
          xh[i] = a * c[size_t(i)] - b * s[size_t(i)];
          xh[i + half] = b * c[size_t(i)] + a * s[size_t(i)];
        }
      }
    });
  errs.rethrow();
}

}  // namespace sala::cpu
