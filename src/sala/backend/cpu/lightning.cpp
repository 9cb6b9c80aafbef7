#include "sala/backend/cpu/lightning.h"

#include <cmath>
#include <vector>

#include "sala/backend/cpu/ops.h"
#include "sala/core/parallel.h"

namespace sala::cpu {

void lightning_recurrent(float* o, const float* q, const float* k, const float* v, float* state, const float* log_decay,
                         float scale, int64_t T, int64_t H, int64_t D) {
  const int64_t row = H * D;
#pragma omp parallel for schedule(static) if (T * H * D * D > kParallelWork)
  for (int64_t h = 0; h < H; ++h) {
    float* S = state + h * D * D;
    const float gamma = float(std::exp(double(log_decay[h])));
    for (int64_t t = 0; t < T; ++t) {
      const float* qt = q + t * row + h * D;
      const float* kt = k + t * row + h * D;
      const float* vt = v + t * row + h * D;
      float* ot = o + t * row + h * D;
      for (int64_t i = 0; i < D; ++i) {
        float* Si = S + i * D;
        const float ki = kt[i];
        for (int64_t j = 0; j < D; ++j) Si[j] = gamma * Si[j] + ki * vt[j];
      }
      for (int64_t j = 0; j < D; ++j) ot[j] = 0;
      for (int64_t i = 0; i < D; ++i) axpy(ot, S + i * D, qt[i], D);
      for (int64_t j = 0; j < D; ++j) ot[j] *= scale;
    }
  }
}

void lightning_chunked(float* o, const float* q, const float* k, const float* v, float* state, const float* log_decay,
                       float scale, int64_t T, int64_t H, int64_t D, int64_t chunk) {
  const int64_t row = H * D;
  ParallelErrors errs;
#pragma omp parallel for schedule(static) if (T * H * D * (D + chunk) > kParallelWork)
  for (int64_t h = 0; h < H; ++h)
    errs.run([&] {
      float* S = state + h * D * D;
      const double g = log_decay[h];
      // pw[n] = γ^n, computed directly (not by repeated products) so long chunks lose nothing.
      std::vector<float> pw(static_cast<size_t>(chunk) + 1);
      for (int64_t n = 0; n <= chunk; ++n) pw[size_t(n)] = float(std::exp(g * double(n)));
      for (int64_t c0 = 0; c0 < T; c0 += chunk) {
        const int64_t C = std::min(chunk, T - c0);
        for (int64_t i = 0; i < C; ++i) {
          const float* qi = q + (c0 + i) * row + h * D;
          float* oi = o + (c0 + i) * row + h * D;
          // inter-chunk: γ^{i+1} q_i S_prev
          for (int64_t j = 0; j < D; ++j) oi[j] = 0;
          for (int64_t a = 0; a < D; ++a) axpy(oi, S + a * D, qi[a], D);
          const float inter = pw[size_t(i + 1)];
          for (int64_t j = 0; j < D; ++j) oi[j] *= inter;
          // intra-chunk: Σ_{j<=i} γ^{i-j} (q_i·k_j) v_j
          for (int64_t j = 0; j <= i; ++j) {
            const float* kj = k + (c0 + j) * row + h * D;
            const float* vj = v + (c0 + j) * row + h * D;
            axpy(oi, vj, dot(qi, kj, D) * pw[size_t(i - j)], D);
          }
          for (int64_t j = 0; j < D; ++j) oi[j] *= scale;
        }
        // state update: S = γ^C S + Σ_j γ^{C-1-j} k_j^T v_j
        const float decay_all = pw[size_t(C)];
        for (int64_t a = 0; a < D * D; ++a) S[a] *= decay_all;
        for (int64_t j = 0; j < C; ++j) {
          const float* kj = k + (c0 + j) * row + h * D;
          const float* vj = v + (c0 + j) * row + h * D;
          const float w = pw[size_t(C - 1 - j)];
          for (int64_t a = 0; a < D; ++a) axpy(S + a * D, vj, kj[a] * w, D);
        }
      }
    });
  errs.rethrow();
}

}  // namespace sala::cpu
