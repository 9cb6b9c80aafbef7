// Hopper warpgroup matrix multiply (wgmma, sm_90a) for the attention-side kernels: a warpgroup (4 consecutive warps,
// the first one's index a multiple of 4) computes a 64 x 64 fp32 tile from a register A operand (16 x 16 per warp, the
// mma.sync m16n8k16 A layout, so the Q and P fragments of attn_common.cuh feed it unchanged) and a shared-memory B
// operand described by a matrix descriptor. The accumulators come back in the mma.sync C layout, one [4] per 8-column
// block, so the softmax code around them is the mma.sync kernels' own.
//
// B tiles are the 64-row tiles of attn_common.cuh (tile_off): 128-byte rows, 128-byte swizzle, 8-row groups 1024
// bytes apart. K-major (QK^T: B = K, rows = keys): a k16 step is 32 bytes along the row, so the start address moves
// by 32 bytes within a panel and by a panel (8 KB) every 4 steps. N-major (PV: B = V, rows = keys = the reduction):
// a k16 step is two 8-row groups (2048 bytes); an N = 64 tile is one panel, so the offset between panels is never
// used, and the descriptor carries 1024 in both offset fields.
#pragma once
#include <cstdint>

namespace sala::cuda::detail {

// Matrix descriptor (PTX ISA "matrix descriptor format"): start >> 4 in bits 0-13, leading offset >> 4 in 16-29,
// stride offset >> 4 in 32-45, base offset 0 (panels 1024-byte aligned), swizzle mode 1 (128 B) in bits 62-63.
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_addr, uint32_t lead_bytes, uint32_t stride_bytes) {
  return uint64_t((smem_addr & 0x3FFFF) >> 4) | (uint64_t(lead_bytes >> 4) << 16) |
         (uint64_t(stride_bytes >> 4) << 32) | (uint64_t(1) << 62);
}
// K-major B (rows = the N dimension): the leading offset is unused with swizzling (1 by convention).
__device__ __forceinline__ uint64_t wgmma_desc_kmajor(uint32_t smem_addr) { return wgmma_desc(smem_addr, 16, 1024); }
// N-major B of N = 64 (rows = the K dimension).
__device__ __forceinline__ uint64_t wgmma_desc_nmajor64(uint32_t smem_addr) {
  return wgmma_desc(smem_addr, 1024, 1024);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of the accumulators across the asynchronous MMA (after wgmma_wait).
__device__ __forceinline__ void wgmma_touch(float (&d)[8][4]) {
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
}

// d = (accumulate ? d : 0) + A B, m64 n64 k16, bf16 in, fp32 out. kTransB: 0 = B K-major, 1 = B N-major.
template <int kTransB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b,
                                                bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{"
      "%0, %1, %2, %3, %4, %5, %6, %7, "
      "%8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, "
      "%24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n"
      "}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]),
        "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
        "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
        "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
        "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]),
        "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
        "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
        "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(int(accumulate)), "n"(kTransB));
}

}  // namespace sala::cuda::detail
