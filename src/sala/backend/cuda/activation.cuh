// The gates' nonlinearities, written once: the elementwise kernels (elementwise.cu) and the fused epilogues that
// apply them inside another kernel (gemv.cu) must round the same fp32 expression, so that a fused and an unfused
// step agree bitwise.
#pragma once

namespace sala::cuda::detail {

// F.silu(g) * u (SwiGLU), g and u the bf16 values widened to fp32
__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }
// x * sigmoid(g) (the output gates)
__device__ __forceinline__ float times_sigmoid(float x, float g) { return x * (1.0f / (1.0f + expf(-g))); }

}  // namespace sala::cuda::detail
