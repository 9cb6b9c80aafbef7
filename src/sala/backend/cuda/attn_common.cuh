// Device helpers shared by the attention-side kernels (attention.cu, infllmv2_select.cu): the tensor-core primitives
// (mma.sync m16n8k16 bf16 -> fp32, ldmatrix, cp.async), the swizzled shared-memory layout of a 64-row key tile, the
// §4.9 visibility rule, and the row-tile scheduler that maps a CTA index to R consecutive rows of one sequence.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .bf16): lane = 4 g + t; A (16x16 row-major): a0 (g, 2t..2t+1),
// a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); B (16x8): b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
// C (16x8 fp32): c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1).
// Key tiles: 64 rows of D bf16 (D*2 bytes), 16-byte chunk c of row r stored at chunk c ^ (r & 7), so the 8 row
// addresses of one ldmatrix hit 8 different bank groups.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/wgmma.cuh"

namespace sala::cuda::detail {

constexpr float kNegInf = -__builtin_huge_valf();

// 2^x on the SFU with denormal results flushed to zero: one MUFU.EX2, where exp2f's denormal-preserving form adds a
// test and two multiplies around it. The softmax terms and stage-1 probabilities it computes are summed against a
// largest term of 1 (attention) or compared at 1e-3 (block scores), so results below 2^-126 changing to 0 is invisible.
__device__ __forceinline__ float fast_exp2(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte asynchronous copy global -> shared; valid = false writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// c += a * b (16x8x16, bf16 inputs, fp32 accumulators).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Two consecutive bf16 of a row (4-byte aligned), 0 when !valid.
__device__ __forceinline__ uint32_t ld_pair(const bf16* p, bool valid) {
  return valid ? *reinterpret_cast<const uint32_t*>(p) : 0u;
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled 64-row tile of rows D bf16 wide: the tile is cut
// into D / 64 column panels of 64 x 128 bytes (8 KB), and in each panel chunk c of row r sits at c ^ (r & 7). This
// is the canonical 128-byte-swizzled layout of wgmma's shared-memory operands (K-major for K tiles, N-major for V
// tiles; panel bases 1024-byte aligned), and ldmatrix reads it without bank conflicts.
constexpr int kPanelBytes = kPageTokens * 128;
template <int D>
__device__ __forceinline__ uint32_t tile_off(int row, int chunk) {
  static_assert(D % 64 == 0, "tiles are made of 64-column panels");
  return uint32_t((chunk >> 3) * kPanelBytes + row * 128 + (((chunk & 7) ^ (row & 7)) << 4));
}

// Bytes of one 64-row key (or value) tile of head size D.
template <int D>
constexpr int tile_bytes() {
  return kPageTokens * D * 2;
}

// The A fragments (m16n8k16) of two query rows q0, q1 over the whole head: thread tq's pairs of every 16-wide slice;
// rows that are not valid read as zeros.
template <int D>
__device__ __forceinline__ void load_q_frags(uint32_t (&qa)[D / 16][4], const bf16* q0, const bf16* q1, int tq,
                                             bool v0, bool v1) {
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    qa[ks][0] = ld_pair(q0 + ks * 16 + 2 * tq, v0);
    qa[ks][1] = ld_pair(q1 + ks * 16 + 2 * tq, v1);
    qa[ks][2] = ld_pair(q0 + ks * 16 + 8 + 2 * tq, v0);
    qa[ks][3] = ld_pair(q1 + ks * 16 + 8 + 2 * tq, v1);
  }
}

// s = Q K^T on mma.sync for the warp's 16 rows (A fragments qa) against the 64 rows of the swizzled tile at kb.
template <int D>
__device__ __forceinline__ void qk_tile_mma(float (&s)[8][4], const uint32_t (&qa)[D / 16][4], uint32_t kb) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks)
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b0, b1, b2, b3;
      const int key = np * 16 + (lane >> 4) * 8 + (lane & 7);
      ldsm_x4(kb + tile_off<D>(key, ks * 2 + ((lane >> 3) & 1)), b0, b1, b2, b3);
      mma_bf16(s[2 * np], qa[ks], b0, b1);
      mma_bf16(s[2 * np + 1], qa[ks], b2, b3);
    }
}

// s = Q K^T on wgmma over the 64-row tile at kb (tile_off's layout, read K-major), Q = the warp's fragments over the
// whole head (D / 16 k-steps of the mma.sync A layout): issued and committed as one group, not awaited.
template <int D>
__device__ __forceinline__ void wgmma_qk_issue(float (&s)[8][4], const uint32_t (&qa)[D / 16][4], uint32_t kb) {
  wgmma_fence();
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks)
    wgmma_m64n64k16<0>(s, qa[ks], wgmma_desc_kmajor(kb + (ks >> 2) * kPanelBytes + (ks & 3) * 32), ks > 0);
  wgmma_commit();
}

// One 64-token page of K and V (kv head rows of D) into a shared-memory stage at kdst (V right after K): keys at
// positions past maxpos are zero-filled. first_pos: the page's first position. Commits the copies as one group.
template <int D, int kThreads>
__device__ __forceinline__ void load_kv_page(uint32_t kdst, const bf16* ksrc, const bf16* vsrc, int first_pos,
                                             int maxpos, int tid) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per key row
  const uint32_t vdst = kdst + tile_bytes<D>();
  for (int c = tid; c < kPageTokens * kChunks; c += kThreads) {
    const int row = c / kChunks, ch = c % kChunks;
    const bool ok = first_pos + row <= maxpos;
    const uint32_t off = tile_off<D>(row, ch);
    cp_async16(kdst + off, ksrc + row * D + ch * 8, ok);
    cp_async16(vdst + off, vsrc + row * D + ch * 8, ok);
  }
  cp_async_commit();
}

// Orders this thread's completed cp.async writes to shared memory (generic proxy) before reads by the async proxy
// (wgmma operands); must come before the barrier that publishes them.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Tiles [begin, end) through two shared-memory stages: load(t, stage) issues tile t's copies (one commit group);
// body(t, stage) runs once tile t has landed and every thread has passed the barrier. The body must end with a barrier
// of its own before its stage is refilled by the next load.
// kAsyncReads: the body reads the stage through wgmma (each thread fences its copies into the async proxy).
template <bool kAsyncReads = false, class Load, class Body>
__device__ __forceinline__ void pipeline2(int begin, int end, Load&& load, Body&& body) {
  if (begin < end) load(begin, 0);
  for (int t = begin; t < end; ++t) {
    const int st = (t - begin) & 1;
    if (t + 1 < end) {
      load(t + 1, st ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    if constexpr (kAsyncReads) fence_proxy_async();
    __syncthreads();
    body(t, st);
  }
}

// Stage-1 visibility (cpu::stage1_visible_windows, sala-model.md §4.9 item 1).
__device__ __forceinline__ int visible_windows(int pos, int call_len, int stride) {
  const int kernel = 2 * stride;
  const int complete = pos + 1 >= kernel ? (pos + 1 - kernel) / stride + 1 : 0;
  const bool off_by_one = call_len >= kernel - 1 && call_len % stride == stride - 1;
  const int n = complete - (off_by_one ? 1 : 0);
  return n > 0 ? n : 0;
}

// Complete windows of `kernel` keys with `stride` among the keys [0, last_pos].
__device__ __forceinline__ int complete_windows(int last_pos, int kernel, int stride) {
  return last_pos + 1 >= kernel ? (last_pos + 1 - kernel) / stride + 1 : 0;
}

struct RowTile {
  int seq, row0, nrows;
};

// Tile t of the step: each sequence's rows are cut into tiles of R consecutive rows (the last one shorter), tiles
// numbered sequence by sequence. Called by all 32 lanes of one warp; false when t is past the last tile. The grid is
// sized on the host to an upper bound (min(N, ceil(N/R) + S)); CTAs past the end exit.
__device__ __forceinline__ bool find_tile(const StepRows& rows, int R, int t, RowTile& out) {
  const int lane = threadIdx.x & 31;
  int acc = 0;
  for (int base = 0; base < rows.S; base += 32) {
    const int s = base + lane;
    const int c0 = s < rows.S ? rows.cu_seqlens[s] : 0;
    const int n = s < rows.S ? rows.cu_seqlens[s + 1] - c0 : 0;
    const int c = (n + R - 1) / R;
    int incl = c;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += v;
    }
    const int total = __shfl_sync(0xffffffffu, incl, 31);
    if (t < acc + total) {
      const unsigned m = __ballot_sync(0xffffffffu, t < acc + incl);
      const int L = __ffs(int(m)) - 1;
      const int excl = __shfl_sync(0xffffffffu, incl - c, L);
      const int cuL = __shfl_sync(0xffffffffu, c0, L);
      const int nL = __shfl_sync(0xffffffffu, n, L);
      out.seq = base + L;
      out.row0 = cuL + (t - acc - excl) * R;
      out.nrows = min(R, cuL + nL - out.row0);
      return true;
    }
    acc += total;
  }
  return false;
}

// Host side: an upper bound on the number of row tiles of N rows in S sequences.
inline int row_tiles_upper(int N, int S, int R) {
  const long long t = (long long)(N + R - 1) / R + S;
  return int(t < N ? t : N);
}

}  // namespace sala::cuda::detail
