// The gates' nonlinearities, written once: the elementwise kernels (elementwise.cu) and the fused epilogues that
// apply them inside another kernel (gemv.cu) must round the same fp32 expression, so that a fused and an unfused
// step agree bitwise.
#pragma once
#include <cuda_bf16.h>

namespace sala::cuda::detail {

// f rounded to bf16 and widened back: what a bf16 store between two unfused ops does to a value
__device__ __forceinline__ float round_bf16(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }
// F.silu(g) * u (SwiGLU), g and u the bf16 values widened to fp32
__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }
// x * sigmoid(g) (the output gates)
__device__ __forceinline__ float times_sigmoid(float x, float g) { return x * (1.0f / (1.0f + expf(-g))); }

}  // namespace sala::cuda::detail
