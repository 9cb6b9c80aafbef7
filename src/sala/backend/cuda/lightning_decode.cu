// lightning_decode: one block per (head, 32-column tile of the value dim); thread j owns column j of S_h and walks
// the D rows: s = γ S[i][j] + k[i] v[j]; S[i][j] = s; acc += q[i] s. Consecutive threads touch consecutive floats,
// so every state access is coalesced; q and k are staged in shared memory.
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/ops.h"

namespace sala::cuda {

namespace {
constexpr int kCols = 32;
constexpr int kRowGroups = 32;  // 32 warps split the D rows (enough loads in flight), partials reduced in shared memory

__global__ void lightning_decode_kernel(float* __restrict__ o, const float* __restrict__ q,
                                        const float* __restrict__ k, const float* __restrict__ v,
                                        float* __restrict__ state, const float* __restrict__ log_decay, float scale,
                                        int D) {
  extern __shared__ float sh[];  // q (D), k (D), partial (kRowGroups x kCols)
  float* qs = sh;
  float* ks = sh + D;
  float* part = sh + 2 * D;
  const int h = blockIdx.y, j = blockIdx.x * kCols + threadIdx.x, grp = threadIdx.y;
  for (int i = threadIdx.y * kCols + threadIdx.x; i < D; i += kCols * kRowGroups) {
    qs[i] = q[size_t(h) * D + i];
    ks[i] = k[size_t(h) * D + i];
  }
  __syncthreads();
  float acc = 0.f;
  if (j < D) {
    const float gamma = expf(log_decay[h]);
    const float vj = v[size_t(h) * D + j];
    float* S = state + size_t(h) * D * D;
    for (int i = grp; i < D; i += kRowGroups) {
      float s = gamma * S[size_t(i) * D + j] + ks[i] * vj;
      S[size_t(i) * D + j] = s;
      acc += qs[i] * s;
    }
  }
  part[grp * kCols + threadIdx.x] = acc;
  __syncthreads();
  if (grp == 0 && j < D) {
    float sum = 0.f;
    for (int g = 0; g < kRowGroups; ++g) sum += part[g * kCols + threadIdx.x];
    o[size_t(h) * D + j] = sum * scale;
  }
}
}  // namespace

void lightning_decode(float* o, const float* q, const float* k, const float* v, float* state, const float* log_decay,
                      float scale, int64_t H, int64_t D, cudaStream_t s) {
  if (H == 0) return;
  dim3 grid(unsigned((D + kCols - 1) / kCols), unsigned(H)), block(kCols, kRowGroups);
  const size_t shmem = (2 * size_t(D) + kRowGroups * kCols) * sizeof(float);
  lightning_decode_kernel<<<grid, block, shmem, s>>>(o, q, k, v, state, log_decay, scale, int(D));
  SALA_CUDA_CHECK_LAUNCH();
}

}  // namespace sala::cuda
