// What the decode products (gemv.cu on the CUDA cores, gemv_mma.cu on the tensor cores) share: the weight stream's
// load and the stores of a row's fp32 sum, so both round alike and gemv_silu stays bitwise gemv + silu_mul.
#pragma once
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>

#include "sala/backend/cuda/activation.cuh"

namespace sala::cuda::detail {

constexpr int kGemvWarps = 8;  // warps of a CTA

// 16 bytes of a weight row: read once, so kept out of L1 (the x rows, read by every warp, stay there).
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// The output of a row's fp32 sum (F32: fp32, else bf16) and, for a gate|up pair, the bf16 gate and up values as a
// plain product would store them, then silu(gate) * up rounded once more (silu_mul's math, activation.cuh).
template <bool F32>
__device__ __forceinline__ void store_row(void* y, size_t at, float v) {
  if constexpr (F32)
    static_cast<float*>(y)[at] = v;
  else
    static_cast<__nv_bfloat16*>(y)[at] = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void store_silu(void* y, size_t at, float g, float u) {
  static_cast<__nv_bfloat16*>(y)[at] = __float2bfloat16_rn(silu_times(round_bf16(g), round_bf16(u)));
}

}  // namespace sala::cuda::detail
