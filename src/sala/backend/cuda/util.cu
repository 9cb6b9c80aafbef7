#include <cuda_bf16.h>

#include <cstdlib>

#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/launch.cuh"
#include "sala/backend/cuda/util.h"

namespace sala::cuda {

bool detail::pdl_enabled(int group) {
  static const int mask = [] {
    const char* e = std::getenv("SALA_CUDA_PDL");
    return e && *e ? std::atoi(e) : -1;  // every group on (launch.cuh); 0: plain launches
  }();
  return (mask & group) != 0;
}

namespace {
template <class T>
__global__ void gather_rows_kernel(T* dst, int ld_dst, const T* src, int ld_src, const int32_t* rows, int cols) {
  const int i = blockIdx.x;
  const T* s = src + size_t(rows[i]) * size_t(ld_src);
  T* d = dst + size_t(i) * size_t(ld_dst);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}
__device__ uint64_t splitmix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

__global__ void fill_random_kernel(uint16_t* out, size_t n, float std, uint64_t seed) {
  for (size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 2; i < n; i += size_t(gridDim.x) * blockDim.x * 2) {
    float a = 1.f, b = 1.f;
    if (std != 0.f) {  // Box-Muller on two 24-bit uniforms of one 64-bit draw
      const uint64_t r = splitmix(seed ^ (i * 0x2545f4914f6cdd1dull));
      const float u1 = (float((r >> 40) & 0xffffff) + 1.f) * (1.f / 16777217.f);
      const float u2 = float((r >> 16) & 0xffffff) * (1.f / 16777216.f);
      const float rad = sqrtf(-2.f * logf(u1)) * std;
      float sn, cs;
      sincospif(2.f * u2, &sn, &cs);
      a = rad * cs;
      b = rad * sn;
    }
    __nv_bfloat16 ha = __float2bfloat16(a), hb = __float2bfloat16(b);
    out[i] = *reinterpret_cast<uint16_t*>(&ha);
    if (i + 1 < n) out[i + 1] = *reinterpret_cast<uint16_t*>(&hb);
  }
}
}  // namespace

void fill_random_bf16(void* out, size_t n, float std, uint64_t seed, cudaStream_t s) {
  if (n == 0) return;
  fill_random_kernel<<<1024, 256, 0, s>>>(static_cast<uint16_t*>(out), n, std, seed);
  SALA_CUDA_CHECK_LAUNCH();
}

void gather_rows(void* dst, int ld_dst, const void* src, int ld_src, const int32_t* rows, int R, int cols,
                 int elem_bytes, cudaStream_t s) {
  if (R == 0) return;
  if (elem_bytes == 4)
    gather_rows_kernel<<<R, 256, 0, s>>>(static_cast<float*>(dst), ld_dst, static_cast<const float*>(src), ld_src,
                                         rows, cols);
  else
    gather_rows_kernel<<<R, 256, 0, s>>>(static_cast<uint16_t*>(dst), ld_dst, static_cast<const uint16_t*>(src),
                                         ld_src, rows, cols);
  SALA_CUDA_CHECK_LAUNCH();
}

int sm_count() {
  static const int n = [] {
    int dev = 0, c = 0;
    SALA_CUDA_CHECK(cudaGetDevice(&dev));
    SALA_CUDA_CHECK(cudaDeviceGetAttribute(&c, cudaDevAttrMultiProcessorCount, dev));
    return c;
  }();
  return n;
}

}  // namespace sala::cuda
