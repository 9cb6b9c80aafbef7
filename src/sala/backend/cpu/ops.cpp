#include "sala/backend/cpu/ops.h"

#include <cmath>

namespace sala::cpu {

// 8 independent partial sums let the compiler vectorise the reduction without -ffast-math;
// target_clones adds a Haswell (AVX2 + FMA) clone picked at load time where the CPU has it.
__attribute__((target_clones("arch=haswell", "default"))) float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

__attribute__((target_clones("arch=haswell", "default"))) static void dot4(float* out, const float* w, const float* x0,
                                                                          const float* x1, const float* x2,
                                                                          const float* x3, int64_t n) {
  float a0[8] = {}, a1[8] = {}, a2[8] = {}, a3[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      float wv = w[i + j];
      a0[j] += wv * x0[i + j];
      a1[j] += wv * x1[i + j];
      a2[j] += wv * x2[i + j];
      a3[j] += wv * x3[i + j];
    }
  float* accs[4] = {a0, a1, a2, a3};
  const float* xs[4] = {x0, x1, x2, x3};
  for (int r = 0; r < 4; ++r) {
    float* a = accs[r];
    float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (int64_t k = i; k < n; ++k) s += w[k] * xs[r][k];
    out[r] = s;
  }
}

void matmul(float* y, const float* x, const float* w, int64_t T, int64_t in, int64_t out) {
  // Each weight row is read once per 4 tokens; rows are split across threads.
#pragma omp parallel for schedule(static) if (T * in * out > kParallelWork)
  for (int64_t o = 0; o < out; ++o) {
    const float* wr = w + o * in;
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) {
      float r[4];
      dot4(r, wr, x + t * in, x + (t + 1) * in, x + (t + 2) * in, x + (t + 3) * in, in);
      for (int j = 0; j < 4; ++j) y[(t + j) * out + o] = r[j];
    }
    for (; t < T; ++t) y[t * out + o] = dot(wr, x + t * in, in);
  }
}

void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps) {
#pragma omp parallel for schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
    float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    float* yr = y + r * n;
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * inv) * w[i];
  }
}

void silu_mul(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void mul_sigmoid(float* x, const float* g, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) x[i] *= 1.0f / (1.0f + std::exp(-g[i]));
}

void axpy(float* y, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void scale(float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

}  // namespace sala::cpu
