// CUDA ops: same math and layouts as the CPU ops in backend/cpu (fp32 here); device pointers, a stream, and the
// launcher checks the launch. The CPU op of the same name is the reference each one is tested against.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace sala::cuda {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w; x, y: (rows, n); w: (n)
void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps, cudaStream_t s);

// One decode step of lightning attention for every head (backend/cpu/lightning.h):
//   S_h = exp(g_h) S_h + k_h^T v_h ; o_h = scale * q_h S_h        q, k, v, o: (H, D); state: (H, D, D), fp32
// Reads and writes the state exactly once: the step is bound by state bandwidth (48 MiB per token for SALA-9B).
void lightning_decode(float* o, const float* q, const float* k, const float* v, float* state, const float* log_decay,
                      float scale, int64_t H, int64_t D, cudaStream_t s);

}  // namespace sala::cuda
