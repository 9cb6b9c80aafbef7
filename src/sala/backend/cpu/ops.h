// Elementwise and dense ops of the CPU backend (fp32, OpenMP). Outputs first, then inputs, then sizes.
// Matrices are row-major; a weight w is (out, in) as in torch.nn.Linear, so y = x w^T.
#pragma once
#include <cstdint>

#include "sala/core/dtype.h"

namespace sala::cpu {

// Multiply-adds below which an op runs on one thread: a parallel region costs microseconds, and on a loaded machine
// (ctest -j, other processes) waking threads for small decode-size work costs far more than the work.
inline constexpr int64_t kParallelWork = int64_t(1) << 20;

// y: (T, out) = x: (T, in) · w^T, w: (out, in). y must not alias x.
void matmul(float* y, const float* x, const float* w, int64_t T, int64_t in, int64_t out);
// The same with row strides and weights in their stored dtype (F32, BF16, F16; widened in registers, so bitwise equal
// to matmul on fp32 copies of the same values).
void matmul_w(float* y, int64_t ldy, const float* x, int64_t ldx, const void* w, DType wt, int64_t T, int64_t in,
              int64_t out);
// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, per row of n; y may alias x. Variance accumulated in double.
void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps);
// out = silu(gate) * up
void silu_mul(float* out, const float* gate, const float* up, int64_t n);
// x *= sigmoid(g)
void mul_sigmoid(float* x, const float* g, int64_t n);
// y += a * x
void axpy(float* y, const float* x, float a, int64_t n);
float dot(const float* a, const float* b, int64_t n);

}  // namespace sala::cpu
