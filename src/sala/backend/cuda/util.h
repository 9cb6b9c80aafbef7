// Small device helpers of the CUDA backend (util.cu).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace sala::cuda {

// dst[i] = src[rows[i]] for i < R: rows of `cols` elements of `elem_bytes` (2 or 4), row strides in elements.
void gather_rows(void* dst, int ld_dst, const void* src, int ld_src, const int32_t* rows, int R, int cols,
                 int elem_bytes, cudaStream_t s);

// out[i] = bf16(normal(0, std)) from a counter-based generator of (seed, i), or 1 when std == 0 (random weights made
// on the device for benchmarks).
void fill_random_bf16(void* out, size_t n, float std, uint64_t seed, cudaStream_t s);

// Multiprocessors of the current device (asked once per process: launchers size their grids by it).
int sm_count();

}  // namespace sala::cuda
