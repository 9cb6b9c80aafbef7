// rmsnorm: one block per row; the sum of squares is reduced in fp32 per thread and across the block with CUB.
#include <cub/block/block_reduce.cuh>

#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/ops.h"

namespace sala::cuda {

namespace {
constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(float* __restrict__ y, const float* __restrict__ x, const float* __restrict__ w, int n,
                               float eps) {
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float inv;
  const float* xr = x + size_t(blockIdx.x) * n;
  float ss = 0.f;
  for (int i = threadIdx.x; i < n; i += kThreads) ss += xr[i] * xr[i];
  float total = Reduce(tmp).Sum(ss);
  if (threadIdx.x == 0) inv = rsqrtf(total / float(n) + eps);
  __syncthreads();
  float* yr = y + size_t(blockIdx.x) * n;
  for (int i = threadIdx.x; i < n; i += kThreads) yr[i] = (xr[i] * inv) * w[i];
}
}  // namespace

void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps, cudaStream_t s) {
  if (rows == 0) return;
  rmsnorm_kernel<<<unsigned(rows), kThreads, 0, s>>>(y, x, w, int(n), eps);
  SALA_CUDA_CHECK_LAUNCH();
}

}  // namespace sala::cuda
