// attention (kernels.h): causal softmax attention over the paged KV cache, dense or InfLLM-V2 block-sparse, in the
// FlashAttention-2 form on the tensor cores: v2 and v3 issue S = Q K^T and O += P V as wgmma m64n64k16 per
// warpgroup (wgmma.cuh: Q and P from registers, K and V tiles straight from the swizzled stages); v1, kept beside
// them in the kernel lab, runs mma.sync m16n8k16 per warp with ldmatrix (bf16 -> fp32 all).
//
// CTA = (row tile, kv head [x head chunk], key split). A row tile is R consecutive rows of one sequence; its M =
// 16 * warps matrix rows are (row, query head) pairs, the hpc = min(group, M) query heads of the CTA's kv head for
// each of R = M / hpc rows, so every query head of a KV group shares each K/V tile (SALA: 16 heads = one row per
// warp; qwen3: 4 heads x 4 rows per warp). Per key block (64 keys = one page = one InfLLM-V2 block): K and V tiles
// are loaded by cp.async into swizzled shared memory (two stages, the next block's load overlaps this block's math),
// each warp computes S = Q K^T (Q fragments held in registers), masks, runs the online softmax in fp32 (exp2 with
// the scale folded in), and accumulates O += P V with P taken from registers.
//
// Key blocks of a tile: dense sequences visit blocks 0 .. max_pos / 64; sparse ones the union of their rows' idx
// lists (built in shared memory as a bitmap over blocks, compacted in ascending order, with a 64-bit row mask per
// block). A row sees key j of a block iff the block is in its list (dense: always) and j <= its position; a warp none
// of whose rows see a block skips its math for that block. Keys past the tile's last position are zero-filled, never
// read (pages there may be unwritten).
//
// Decode steps (every sequence one row, group <= 16) take attn_decode_kernel instead: CTA = (row, kv head, split),
// the four warps split each 64-key block 16 keys apiece with their own softmax states, merged at the end.
//
// Split-KV: when the step has too few CTAs to fill the GPU (decode, short chunks of long contexts), the key blocks
// of each tile are cut into up to `splits` contiguous ranges (>= ~4 blocks each), one CTA each; each writes its
// normalised partial output and log2-sum-exp (fp32, workspace) and attn_combine_kernel merges them. Otherwise each
// CTA stores bf16 O directly. Versions and tile sizes (plan_attention): dense launches v3, 8 warps = two
// warpgroups a phase apart over a 3-stage ring; launches with sparse sequences v2, 4 warps; v1 8 warps (M = 128) when
// the step averages >= 8 rows per sequence, else 4.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/attention_tuning.h"
#include "sala/backend/cuda/attn_common.cuh"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"
#include "sala/backend/cuda/util.h"
#include "sala/backend/cuda/wgmma.cuh"

namespace sala::cuda {

namespace {

using namespace detail;

struct AttnParams {
  bf16* o;
  int ldo;
  const bf16* x;
  int ld, q_off, Hq, Hkv, group, hpc, R, head_chunks;
  const bf16* kp;
  const bf16* vp;
  const int32_t* idx;
  int topk;
  float scale_log2;
  StepRows rows;
  int splits;
  float* part_o;    // (splits, N, Hq, D)
  float* part_lse;  // (splits, N, Hq), log2 domain
  int nblk_max;     // blocks of the longest context (bitmap size)
  int ulist_cap;    // union list capacity = min(R * topk, nblk_max)
};

// Shared memory: [stage 0: K | V][stage 1: K | V] then, for sparse launches, ulist (int), umask (u64), bitmap (u32);
// 1 KB of slack in front, for the 1024-byte alignment of the stages that wgmma's swizzled operands need.
template <int D>
size_t attn_smem_bytes(int stages, bool sparse, int ulist_cap, int nblk_max) {
  size_t b = 1024 + size_t(stages) * 2 * size_t(tile_bytes<D>());
  if (sparse) b += size_t(ulist_cap) * 12 + size_t((nblk_max + 31) / 32) * 4 + 16;
  return b;
}

// Kernel lab: kVer 1 = mma.sync per warp (a warp skips blocks none of its rows sees). kVer 2 = S = Q K^T and O += P V
// on wgmma, one warpgroup per 64 matrix rows; a warpgroup runs a block's MMAs when any of its warps needs the block,
// and a warp that does not adds P = 0. kVer 3 = v2's MMAs in 8-warp CTAs with the two warpgroups a phase apart.
#ifndef SALA_ATTN_WG_MINB
#define SALA_ATTN_WG_MINB 2  // v2's 4-warp CTAs per SM that the register cap aims at (experiments override)
#endif
template <int D, int kWarps, int kVer>
__global__ void __launch_bounds__(kWarps * 32, kVer == 2 && kWarps == 4 ? SALA_ATTN_WG_MINB : 1)
    attn_kernel(AttnParams P) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  static_assert(kVer != 3 || kWarps == 8, "v3 pairs two warpgroups");
  constexpr int kStageBytes = 2 * tile_bytes<D>(), kRing = kVer == 3 ? 3 : 2;  // K | V per stage
  constexpr int kThreads = kWarps * 32;
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ RowTile s_tile;
  __shared__ int s_ok, s_maxpos, s_L;
  __shared__ int s_pos[kWarps * 16];

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (warp == 0) {
    RowTile t;
    const bool ok = find_tile(P.rows, P.R, blockIdx.x, t);
    if (lane == 0) {
      s_ok = ok;
      s_tile = t;
      s_maxpos = -1;
    }
  }
  __syncthreads();
  if (!s_ok) return;
  const RowTile tile = s_tile;
  const int g = blockIdx.y / P.head_chunks, hc = blockIdx.y % P.head_chunks, z = blockIdx.z;
  const int seq = tile.seq;
  const bool sparse = P.idx != nullptr && (P.rows.flags[seq] & kSeqSparse) != 0;
  if (tid < P.R) {
    const int p = tid < tile.nrows ? P.rows.pos[tile.row0 + tid] : -1;
    s_pos[tid] = p;
    atomicMax(&s_maxpos, p);
  }
  __syncthreads();
  const int maxpos = s_maxpos;
  // max_ctx bounds every position (the caller's contract); the clamp keeps a broken bound inside the bitmap
  const int nblk = sparse ? min(maxpos / kPageTokens + 1, P.nblk_max) : maxpos / kPageTokens + 1;
  const int* pt = P.rows.page_table + size_t(P.rows.slot[seq]) * P.rows.pt_stride;

  uint8_t* stage_base = smem + ((1024u - (smem_u32(smem) & 1023u)) & 1023u);
  int* ulist = reinterpret_cast<int*>(stage_base + kRing * kStageBytes);
  unsigned long long* umask = reinterpret_cast<unsigned long long*>(
      stage_base + kRing * kStageBytes + ((size_t(P.ulist_cap) * 4 + 7) & ~size_t(7)));
  uint32_t* bits = reinterpret_cast<uint32_t*>(umask + P.ulist_cap);

  // ---- key blocks of this tile ----
  int L = nblk;
  if (sparse) {
    const int words = (nblk + 31) / 32;
    for (int i = tid; i < words; i += kThreads) bits[i] = 0;
    __syncthreads();
    const int n_entries = tile.nrows * P.topk;
    for (int e = tid; e < n_entries; e += kThreads) {
      const int r = e / P.topk;
      const int b = P.idx[(size_t(tile.row0 + r) * P.Hkv + g) * P.topk + e % P.topk];
      if (b >= 0 && b < nblk && b * kPageTokens <= s_pos[r]) atomicOr(&bits[b >> 5], 1u << (b & 31));
    }
    __syncthreads();
    if (warp == 0) {  // compact the bitmap into the ascending union list
      int acc = 0;
      for (int base = 0; base < words; base += 32) {
        uint32_t w = base + lane < words ? bits[base + lane] : 0u;
        const int c = __popc(w);
        int incl = c;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const int v = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += v;
        }
        int at = acc + incl - c;
        while (w) {
          const int bit = __ffs(int(w)) - 1;
          w &= w - 1;
          ulist[at] = (base + lane) * 32 + bit;
          umask[at] = 0ull;
          ++at;
        }
        acc += __shfl_sync(0xffffffffu, incl, 31);
      }
      if (lane == 0) s_L = acc;
    }
    __syncthreads();
    L = s_L;
    for (int e = tid; e < n_entries; e += kThreads) {
      const int r = e / P.topk;
      const int b = P.idx[(size_t(tile.row0 + r) * P.Hkv + g) * P.topk + e % P.topk];
      if (b >= 0 && b < nblk && b * kPageTokens <= s_pos[r]) {
        int lo = 0, hi = L - 1;  // ulist is ascending and holds b
        while (lo < hi) {
          const int mid = (lo + hi) >> 1;
          if (ulist[mid] < b) lo = mid + 1; else hi = mid;
        }
        atomicOr(&umask[lo], 1ull << r);
      }
    }
    __syncthreads();
  }
  // a short block list is cut into fewer pieces (>= ~4 blocks each); CTAs past them write empty partials
  const int zeff = min(P.splits, max(1, (L + 3) / 4));
  const int it_begin = z < zeff ? int((long long)L * z / zeff) : 0;
  const int it_end = z < zeff ? int((long long)L * (z + 1) / zeff) : 0;

  // ---- this thread's two matrix rows (g, g + 8 of the warp's 16) ----
  const int gq = lane >> 2, tq = lane & 3;
  int rr[2], head[2], prow[2];
  bool rvalid[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = warp * 16 + gq + 8 * i;
    rr[i] = m / P.hpc;
    head[i] = g * P.group + hc * P.hpc + m % P.hpc;
    rvalid[i] = rr[i] < tile.nrows;
    prow[i] = rvalid[i] ? s_pos[rr[i]] : -1;
  }
  int warp_maxpos = max(prow[0], prow[1]);
  // smallest position among the warp's valid rows (rows past the tile hold zero queries and are never stored, so
  // they need no mask)
  int warp_minpos = min(rvalid[0] ? prow[0] : INT_MAX, rvalid[1] ? prow[1] : INT_MAX);
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    warp_maxpos = max(warp_maxpos, __shfl_xor_sync(0xffffffffu, warp_maxpos, o));
    warp_minpos = min(warp_minpos, __shfl_xor_sync(0xffffffffu, warp_minpos, o));
  }

  // the warpgroup's rows (v2, v3): M rows 64 wg .. 64 wg + 63 are tile rows wr0 .. wr1
  const int wg = warp >> 2, wr0 = 64 * wg / P.hpc, wr1 = min((64 * wg + 63) / P.hpc, tile.nrows - 1);
  int wg_maxpos = -1;
  for (int r = wr0; r <= wr1; ++r) wg_maxpos = max(wg_maxpos, s_pos[r]);
  const unsigned long long wg_rows = wr1 >= wr0 ? ((~0ull >> (63 - (wr1 - wr0))) << wr0) : 0ull;

  uint32_t qa[D / 16][4];
  {
    const bf16* q0 = P.x + size_t(tile.row0 + (rvalid[0] ? rr[0] : 0)) * P.ld + P.q_off + size_t(head[0]) * D;
    const bf16* q1 = P.x + size_t(tile.row0 + (rvalid[1] ? rr[1] : 0)) * P.ld + P.q_off + size_t(head[1]) * D;
    load_q_frags<D>(qa, q0, q1, tq, rvalid[0], rvalid[1]);
  }

  float acc_o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) acc_o[n][0] = acc_o[n][1] = acc_o[n][2] = acc_o[n][3] = 0.f;
  float row_m[2] = {kNegInf, kNegInf}, row_l[2] = {0.f, 0.f};

  auto kv_smem = [&](int st) { return smem_u32(stage_base + st * kStageBytes); };  // stage st's K (V follows)
  auto load_block = [&](int it, int st) {
    const int b = sparse ? ulist[it] : it;
    const size_t page = size_t(pt[b]);
    load_kv_page<D, kThreads>(kv_smem(st),
                              P.kp + (page * P.Hkv + g) * kPageTokens * D, P.vp + (page * P.Hkv + g) * kPageTokens * D,
                              b * kPageTokens, maxpos, tid);
  };

  // Per block: which rows see it. active: some row of this warp; wg_active (warpgroup-uniform): some row of the
  // warpgroup (sparse: in its list; dense: at or past the block's first key).
  struct Flags {
    int b;
    bool in0, in1, active, wg_active;
  };
  auto flags = [&](int it) {
    Flags f;
    f.b = sparse ? ulist[it] : it;
    f.in0 = rvalid[0];
    f.in1 = rvalid[1];
    unsigned long long rmask = 0ull;
    if (sparse) {  // sparse tiles have R <= 64 rows
      rmask = umask[it];
      f.in0 = f.in0 && ((rmask >> rr[0]) & 1ull);
      f.in1 = f.in1 && ((rmask >> rr[1]) & 1ull);
    }
    f.active = __any_sync(0xffffffffu, f.in0 || f.in1) && f.b * kPageTokens <= warp_maxpos;
    f.wg_active = f.b * kPageTokens <= wg_maxpos && (!sparse || (rmask & wg_rows) != 0ull);
    return f;
  };

  float s[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
  uint32_t pa[4][4];  // P as the A operand of P V, 16 keys per [kk]

  // S = Q K^T over the block in stage kb, issued on wgmma (the warpgroup together) and committed, not awaited
  auto qk_issue = [&](uint32_t kb) { wgmma_qk_issue<D>(s, qa, kb); };
  // O += P V over the block's V tile at vb, on wgmma, committed, not awaited
  auto pv_issue = [&](uint32_t vb) {
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int h = 0; h < D / 64; ++h)
        wgmma_m64n64k16<1>(*reinterpret_cast<float(*)[8][4]>(&acc_o[8 * h][0]), pa[kk],
                           wgmma_desc_nmajor64(vb + h * kPanelBytes + kk * 2048), true);
    wgmma_commit();
  };
  auto touch_acc = [&] {
#pragma unroll
    for (int h = 0; h < D / 64; ++h) wgmma_touch(*reinterpret_cast<float(*)[8][4]>(&acc_o[8 * h][0]));
  };
  // P V reads pa from registers while in flight: after its wait, pa is "used" so that nothing is placed in those
  // registers before it completes
  auto touch_pa = [&] {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(pa[kk][i])::"memory");
  };

  // Mask, online softmax of S in the log2 domain (row_m is the scaled running max, p = 2^(s scale_log2 - row_m) as
  // one FFMA + EX2), rescale of O; P packed into pa. A warp whose rows do not see the block (its warpgroup does)
  // packs P = 0. v2 / v3 skip the rescale when no row's max moved (most blocks once the running max has settled).
  auto softmax = [&](const Flags& f) {
    if (f.active) {
      // masks only where some row of the warp misses some key of the block
      const bool full = f.b * kPageTokens + kPageTokens - 1 <= warp_minpos &&
                        __all_sync(0xffffffffu, (!rvalid[0] || f.in0) && (!rvalid[1] || f.in1));
      float mx[2] = {kNegInf, kNegInf};
      if (full) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
      } else {
        const int key0 = f.b * kPageTokens + 2 * tq;
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = e >> 1;
            const int key = key0 + j * 8 + (e & 1);
            const bool ok = (i == 0 ? f.in0 : f.in1) && key <= prow[i];
            const float v = ok ? s[j][e] : kNegInf;
            s[j][e] = v;
            mx[i] = fmaxf(mx[i], v);
          }
      }
      float alpha[2], base[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        const float mnew = fmaxf(row_m[i], mx[i] * P.scale_log2);  // scale > 0: max commutes with it
        base[i] = mnew == kNegInf ? 0.f : mnew;
        alpha[i] = fast_exp2(row_m[i] - base[i]);
        row_m[i] = mnew;
      }
      float psum[2] = {0.f, 0.f};
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = fast_exp2(fmaf(s[j][e], P.scale_log2, -base[e >> 1]));
          s[j][e] = p;
          psum[e >> 1] += p;
        }
      row_l[0] = row_l[0] * alpha[0] + psum[0];
      row_l[1] = row_l[1] * alpha[1] + psum[1];
      if (kVer == 1 || __any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          acc_o[n][0] *= alpha[0];
          acc_o[n][1] *= alpha[0];
          acc_o[n][2] *= alpha[1];
          acc_o[n][3] *= alpha[1];
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
  };

  if constexpr (kVer == 3) {
    // Two warpgroups a phase apart over a 3-stage ring (one barrier per block): in step it, warpgroup 0 runs S(it),
    // softmax(it) and issues P V(it); warpgroup 1 runs softmax(it - 1) and P V(it - 1), then issues S(it), which
    // stays in flight across the barrier. So one warpgroup's softmax runs while the other's MMAs do, and the two
    // share every K/V tile (M = 128 rows per load). Block it + 1 is loaded after step it's barrier into the stage
    // of block it - 2; stage (it - 1) % 3 is refilled after step it + 1's barrier, so warpgroup 1 waits for its
    // P V(it - 1) within step it, and warpgroup 0's P V(it) (stage it % 3, refilled after step it + 2's barrier) is
    // awaited at the top of step it + 1. (Loading before the barrier raced: warpgroup 0 could refill the stage that
    // warpgroup 1's P V was still reading.)
    if (it_begin < it_end) load_block(it_begin, 0);
    Flags prev{};
    for (int it = it_begin; it <= it_end; ++it) {
      const int st = (it - it_begin) % kRing;
      cp_async_wait<0>();  // block it, loaded during step it - 1
      fence_proxy_async();
      __syncthreads();
      // after the barrier: every thread is past step it - 1, the last to read stage (it + 1) % 3 (block it - 2)
      if (it + 1 < it_end) load_block(it + 1, (it + 1 - it_begin) % kRing);
      if (wg == 0) {
        wgmma_wait<0>();  // P V(it - 1)
        touch_acc();
        touch_pa();
        if (it < it_end) {
          const Flags f = flags(it);
          if (f.wg_active) {
            qk_issue(kv_smem(st));
            wgmma_wait<0>();
            wgmma_touch(s);
            softmax(f);
            pv_issue(kv_smem(st) + tile_bytes<D>());
          }
        }
      } else {
        if (it > it_begin && prev.wg_active) {
          wgmma_wait<0>();  // S(it - 1)
          wgmma_touch(s);
          touch_acc();
          softmax(prev);
          pv_issue(kv_smem((it - 1 - it_begin) % kRing) + tile_bytes<D>());
        }
        Flags f{};
        if (it < it_end) {
          f = flags(it);
          if (f.wg_active) qk_issue(kv_smem(st));
        }
        if (it < it_end && f.wg_active)
          wgmma_wait<1>();  // P V(it - 1) done, S(it) in flight
        else
          wgmma_wait<0>();
        touch_acc();
        touch_pa();
        prev = f;
      }
    }
    wgmma_wait<0>();
    touch_acc();
    touch_pa();
  } else {
    pipeline2<kVer == 2>(it_begin, it_end, load_block, [&](int it, int st) {
      const Flags f = flags(it);
      if (kVer == 2 ? f.wg_active : f.active) {
        const uint32_t kb = kv_smem(st);
        const uint32_t vb = kb + tile_bytes<D>();
        if constexpr (kVer == 2) {
          qk_issue(kb);
          wgmma_wait<0>();
          wgmma_touch(s);
        } else {
          qk_tile_mma<D>(s, qa, kb);
        }
        softmax(f);
        if constexpr (kVer == 2) {
          pv_issue(vb);
          wgmma_wait<0>();
          touch_acc();
          touch_pa();
        } else {
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            const int key = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
              uint32_t b0, b1, b2, b3;
              ldsm_x4_t(vb + tile_off<D>(key, dp * 2 + (lane >> 4)), b0, b1, b2, b3);
              mma_bf16(acc_o[2 * dp], pa[kk], b0, b1);
              mma_bf16(acc_o[2 * dp + 1], pa[kk], b2, b3);
            }
          }
        }
      }
      __syncthreads();  // this stage is refilled by the next iteration's load
    });
  }

  // ---- epilogue ----
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    row_l[i] += __shfl_xor_sync(0xffffffffu, row_l[i], 1);
    row_l[i] += __shfl_xor_sync(0xffffffffu, row_l[i], 2);
  }
  const int N = P.rows.N;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!rvalid[i]) continue;
    const int row = tile.row0 + rr[i];
    const float inv = row_l[i] > 0.f ? 1.f / row_l[i] : 0.f;
    if (P.splits == 1) {
      bf16* out = P.o + size_t(row) * P.ldo + size_t(head[i]) * D + 2 * tq;
#pragma unroll
      for (int n = 0; n < D / 8; ++n)
        *reinterpret_cast<__nv_bfloat162*>(out + n * 8) =
            __floats2bfloat162_rn(acc_o[n][2 * i] * inv, acc_o[n][2 * i + 1] * inv);
    } else {
      const size_t pi = (size_t(z) * N + row) * P.Hq + head[i];
      float* out = P.part_o + pi * D + 2 * tq;
#pragma unroll
      for (int n = 0; n < D / 8; ++n)
        *reinterpret_cast<float2*>(out + n * 8) = make_float2(acc_o[n][2 * i] * inv, acc_o[n][2 * i + 1] * inv);
      if (tq == 0) P.part_lse[pi] = row_l[i] > 0.f ? row_m[i] + __log2f(row_l[i]) : kNegInf;
    }
  }
}

// One CTA of 4 warps per (row, query head): o = sum_z 2^(lse_z - lse) O_z / sum_z 2^(lse_z - lse) over the splits
// (<= kMaxSplits). The split weights go to shared memory first, so the O loads of different splits are independent
// and empty splits (lse = -inf: no key in their range) cost no load; warp w sums splits w, w + 4, ...; the four
// partial sums meet in shared memory.
constexpr int kMaxSplits = 128;
template <int D>
__global__ void __launch_bounds__(128) attn_combine_kernel(bf16* __restrict__ o, int ldo,
                                                           const float* __restrict__ part_o,
                                                           const float* __restrict__ part_lse, int N, int Hq,
                                                           int splits) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  __shared__ float wgt[kMaxSplits];
  __shared__ float red[4][D];
  __shared__ float s_mx[4], s_sum[4];
  const int w = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int row = w / Hq, h = w % Hq;
  const size_t zs = size_t(N) * Hq;
  const float lz = tid < splits ? part_lse[tid * zs + w] : kNegInf;
  float mx = lz;
#pragma unroll
  for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  if (lane == 0) s_mx[warp] = mx;
  __syncthreads();
  mx = fmaxf(fmaxf(s_mx[0], s_mx[1]), fmaxf(s_mx[2], s_mx[3]));
  const float wl = (lz == kNegInf || mx == kNegInf) ? 0.f : exp2f(lz - mx);
  if (tid < splits) wgt[tid] = wl;
  float sum = wl;
#pragma unroll
  for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if (lane == 0) s_sum[warp] = sum;
  __syncthreads();
  constexpr int kPer = D / 32;  // 4 (D 128: one float4) or 2 (D 64)
  float acc[kPer] = {};
  for (int z = warp; z < splits; z += 4) {
    const float wz = wgt[z];
    if (wz == 0.f) continue;  // warp-uniform
    const float* src = part_o + (z * zs + w) * D + lane * kPer;
    if constexpr (kPer == 4) {
      const float4 v = *reinterpret_cast<const float4*>(src);
      acc[0] += wz * v.x;
      acc[1] += wz * v.y;
      acc[2] += wz * v.z;
      acc[3] += wz * v.w;
    } else {
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc[e] += wz * src[e];
    }
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) red[warp][lane * kPer + e] = acc[e];
  __syncthreads();
  const float total = s_sum[0] + s_sum[1] + s_sum[2] + s_sum[3];
  const float inv = total > 0.f ? 1.f / total : 0.f;
  for (int d = tid; d < D; d += 128)
    o[size_t(row) * ldo + size_t(h) * D + d] = __float2bfloat16_rn((red[0][d] + red[1][d] + red[2][d] + red[3][d]) * inv);
}

// ---- decode: one row per CTA, the four warps split each key block ----------------------------------------------
//
// When every sequence of the step has one row, a row's group of query heads (<= 16) fills one m16 tile, so a CTA
// of the general kernel would leave three warps without rows. Here the CTA is (row, kv head, split) and warp w takes
// keys 16 w .. 16 w + 15 of every block (S: 16 x 16, P V: 16 x D) with its own online-softmax state; the four states
// are merged through shared memory at the end. Sparse rows visit their own idx list (no union needed).
template <int D>
__global__ void __launch_bounds__(128) attn_decode_kernel(AttnParams P) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  constexpr int kThreads = 128;
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ float red_m[4][16], red_l[4][16];
  __shared__ int s_L;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int r = blockIdx.x, g = blockIdx.y, z = blockIdx.z;
  const int seq = P.rows.row_seq[r], pos = P.rows.pos[r];
  const bool sparse = P.idx != nullptr && (P.rows.flags[seq] & kSeqSparse) != 0;
  const int* pt = P.rows.page_table + size_t(P.rows.slot[seq]) * P.rows.pt_stride;
  int* ulist = reinterpret_cast<int*>(smem + 4 * tile_bytes<D>());

  int L = pos / kPageTokens + 1;
  if (sparse) {
    if (warp == 0) {  // the row's valid entries, in list order
      int at = 0;
      const int32_t* row_idx = P.idx + (size_t(r) * P.Hkv + g) * P.topk;
      for (int base = 0; base < P.topk; base += 32) {
        const int b = base + lane < P.topk ? row_idx[base + lane] : -1;
        const bool ok = b >= 0 && b * kPageTokens <= pos;
        const unsigned m = __ballot_sync(0xffffffffu, ok);
        if (ok) ulist[at + __popc(m & ((1u << lane) - 1u))] = b;
        at += __popc(m);
      }
      if (lane == 0) s_L = at;
    }
    __syncthreads();
    L = s_L;
  }
  const int zeff = min(P.splits, max(1, (L + 3) / 4));
  const int it_begin = z < zeff ? int((long long)L * z / zeff) : 0;
  const int it_end = z < zeff ? int((long long)L * (z + 1) / zeff) : 0;

  const int gq = lane >> 2, tq = lane & 3;
  bool hvalid[2];
  int head[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    hvalid[i] = gq + 8 * i < P.group;
    head[i] = g * P.group + gq + 8 * i;
  }
  uint32_t qa[D / 16][4];
  {
    const bf16* q0 = P.x + size_t(r) * P.ld + P.q_off + size_t(hvalid[0] ? head[0] : 0) * D;
    const bf16* q1 = P.x + size_t(r) * P.ld + P.q_off + size_t(hvalid[1] ? head[1] : 0) * D;
    load_q_frags<D>(qa, q0, q1, tq, hvalid[0], hvalid[1]);
  }
  float acc_o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) acc_o[n][0] = acc_o[n][1] = acc_o[n][2] = acc_o[n][3] = 0.f;
  float row_m[2] = {kNegInf, kNegInf}, row_l[2] = {0.f, 0.f};

  auto load_block = [&](int it, int st) {
    const int b = sparse ? ulist[it] : it;
    const size_t page = size_t(pt[b]);
    load_kv_page<D, kThreads>(smem_u32(smem + st * 2 * tile_bytes<D>()), P.kp + (page * P.Hkv + g) * kPageTokens * D,
                              P.vp + (page * P.Hkv + g) * kPageTokens * D, b * kPageTokens, pos, tid);
  };

  pipeline2(it_begin, it_end, load_block, [&](int it, int st) {
    const int b = sparse ? ulist[it] : it;
    if (b * kPageTokens + 16 * warp <= pos) {  // warp-uniform: some of this warp's 16 keys are visible
      const uint32_t kb = smem_u32(smem + st * 2 * tile_bytes<D>());
      const uint32_t vb = kb + tile_bytes<D>();
      float s[2][4];
#pragma unroll
      for (int j = 0; j < 2; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t b0, b1, b2, b3;
        const int key = 16 * warp + (lane >> 4) * 8 + (lane & 7);
        ldsm_x4(kb + tile_off<D>(key, ks * 2 + ((lane >> 3) & 1)), b0, b1, b2, b3);
        mma_bf16(s[0], qa[ks], b0, b1);
        mma_bf16(s[1], qa[ks], b2, b3);
      }
      const int key0 = b * kPageTokens + 16 * warp + 2 * tq;
      float mx[2] = {kNegInf, kNegInf};
#pragma unroll
      for (int j = 0; j < 2; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float v = key0 + j * 8 + (e & 1) <= pos ? s[j][e] * P.scale_log2 : kNegInf;
          s[j][e] = v;
          mx[e >> 1] = fmaxf(mx[e >> 1], v);
        }
      float alpha[2], base[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        const float mnew = fmaxf(row_m[i], mx[i]);
        base[i] = mnew == kNegInf ? 0.f : mnew;
        alpha[i] = fast_exp2(row_m[i] - base[i]);
        row_m[i] = mnew;
      }
      float psum[2] = {0.f, 0.f};
#pragma unroll
      for (int j = 0; j < 2; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = fast_exp2(s[j][e] - base[e >> 1]);
          s[j][e] = p;
          psum[e >> 1] += p;
        }
      row_l[0] = row_l[0] * alpha[0] + psum[0];
      row_l[1] = row_l[1] * alpha[1] + psum[1];
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        acc_o[n][0] *= alpha[0];
        acc_o[n][1] *= alpha[0];
        acc_o[n][2] *= alpha[1];
        acc_o[n][3] *= alpha[1];
      }
      uint32_t pa[4];
      pa[0] = pack_bf16(s[0][0], s[0][1]);
      pa[1] = pack_bf16(s[0][2], s[0][3]);
      pa[2] = pack_bf16(s[1][0], s[1][1]);
      pa[3] = pack_bf16(s[1][2], s[1][3]);
      const int key = 16 * warp + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(vb + tile_off<D>(key, dp * 2 + (lane >> 4)), b0, b1, b2, b3);
        mma_bf16(acc_o[2 * dp], pa, b0, b1);
        mma_bf16(acc_o[2 * dp + 1], pa, b2, b3);
      }
    }
    __syncthreads();
  });

  // ---- merge the four warps' states (the stage buffers are free now) ----
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    row_l[i] += __shfl_xor_sync(0xffffffffu, row_l[i], 1);
    row_l[i] += __shfl_xor_sync(0xffffffffu, row_l[i], 2);
  }
  float* red_o = reinterpret_cast<float*>(smem);  // [4][16][D]
  if (tq == 0) {
    red_m[warp][gq] = row_m[0];
    red_m[warp][gq + 8] = row_m[1];
    red_l[warp][gq] = row_l[0];
    red_l[warp][gq + 8] = row_l[1];
  }
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    float* o0 = red_o + (size_t(warp) * 16 + gq) * D + n * 8 + 2 * tq;
    *reinterpret_cast<float2*>(o0) = make_float2(acc_o[n][0], acc_o[n][1]);
    *reinterpret_cast<float2*>(o0 + 8 * D) = make_float2(acc_o[n][2], acc_o[n][3]);
  }
  __syncthreads();
  constexpr int kPerThread = 16 * D / kThreads;  // D = 128: 16 values of one row
  const int mrow = tid * kPerThread / D, d0 = tid * kPerThread % D;
  if (mrow < P.group) {
    float M = kNegInf;
#pragma unroll
    for (int w = 0; w < 4; ++w) M = fmaxf(M, red_m[w][mrow]);
    float coef[4], Lsum = 0.f;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      coef[w] = red_m[w][mrow] == kNegInf ? 0.f : exp2f(red_m[w][mrow] - M);
      Lsum += coef[w] * red_l[w][mrow];
    }
    const float inv = Lsum > 0.f ? 1.f / Lsum : 0.f;
    const int hd = g * P.group + mrow;
    float outv[kPerThread];
#pragma unroll
    for (int e = 0; e < kPerThread; ++e) {
      float v = 0.f;
#pragma unroll
      for (int w = 0; w < 4; ++w) v += coef[w] * red_o[(size_t(w) * 16 + mrow) * D + d0 + e];
      outv[e] = v * inv;
    }
    if (P.splits == 1) {
      bf16* out = P.o + size_t(r) * P.ldo + size_t(hd) * D + d0;
#pragma unroll
      for (int e = 0; e < kPerThread; e += 2)
        *reinterpret_cast<__nv_bfloat162*>(out + e) = __floats2bfloat162_rn(outv[e], outv[e + 1]);
    } else {
      const size_t pi = (size_t(z) * P.rows.N + r) * P.Hq + hd;
      float* out = P.part_o + pi * D + d0;
#pragma unroll
      for (int e = 0; e < kPerThread; ++e) out[e] = outv[e];
      if (d0 == 0) P.part_lse[pi] = Lsum > 0.f ? M + __log2f(Lsum) : kNegInf;
    }
  }
}

struct AttnPlan {
  bool decode;  // every sequence has one row (and group <= 16): attn_decode_kernel
  int ver;      // the tiled kernel's version (1 mma.sync, 2 wgmma, 3 wgmma with paired warpgroups)
  int warps, M, hpc, R, head_chunks, tiles, splits, nblk_max;
};

int g_warps_override = 0;    // attention_warps_override (benchmarks)
int g_version_override = 0;  // attention_version_override (tests, benchmarks)

// The tiled kernel (kernel lab, H200 numbers from bench_attention): dense launches take v3 (8 warps, the two
// warpgroups a phase apart: 363 TFLOP/s at 32K against v2's 330-353 and v1's 265); launches with sparse sequences
// take v2 with 4 warps (103.5 ms at 128K on random-weight selections against v3's 125 and v2 8 warps' 151: each
// block of a random list serves few rows, so the smaller tile with two CTAs per SM wins; on lists shared by 8 rows v3
// is faster, 39.6 ms against 43.6). v1 takes 8 warps (M = 128) when sequences bring many rows, halving the K/V
// traffic per row.
AttnPlan plan_attention(int N, int S, int Hq, int Hkv, int max_ctx, bool sparse) {
  AttnPlan p{};
  const int group = Hq / Hkv;
  p.decode = N == S && group <= 16;
  p.ver = g_version_override >= 1 && g_version_override <= 3 ? g_version_override : sparse ? 2 : 3;
  p.warps = p.ver == 3 || (p.ver == 1 && N >= 8 * S) ? 8 : 4;
  if (p.ver != 3 && (g_warps_override == 4 || g_warps_override == 8)) p.warps = g_warps_override;
  p.M = 16 * p.warps;
  p.hpc = p.decode ? group : (group < p.M ? group : p.M);
  p.R = p.decode ? 1 : p.M / p.hpc;
  p.head_chunks = group / p.hpc;
  p.tiles = p.decode ? N : detail::row_tiles_upper(N, S, p.R);
  p.nblk_max = (max_ctx + kPageTokens - 1) / kPageTokens;
  const long long ctas = (long long)p.tiles * Hkv * p.head_chunks;
  const long long target = 2LL * sm_count();
  p.splits = 1;
  if (ctas < target) {
    long long z = (target + ctas - 1) / ctas;
    const long long zmax = p.nblk_max / 4 > 1 ? p.nblk_max / 4 : 1;  // at least ~4 key blocks per split
    if (z > zmax) z = zmax;
    if (z > kMaxSplits) z = kMaxSplits;
    p.splits = int(z);
  }
  return p;
}

template <int D, int W, int kVer>
void launch_attn(const AttnParams& prm, const AttnPlan& pl, size_t smem, cudaStream_t s) {
  static bool configured = false;  // per instantiation; the largest request so far is what the attribute needs
  static size_t configured_bytes = 0;
  if (!configured || smem > configured_bytes) {
    SALA_CUDA_CHECK(
        cudaFuncSetAttribute(attn_kernel<D, W, kVer>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured = true;
    configured_bytes = smem;
  }
  detail::launch_pdl(detail::kPdlAttention, attn_kernel<D, W, kVer>,
                     dim3(pl.tiles, prm.Hkv * pl.head_chunks, pl.splits), W * 32, smem, s, prm);
  SALA_CUDA_CHECK_LAUNCH();
}


template <int D>
void run_attention(const AttnParams& prm, const AttnPlan& pl, cudaStream_t s) {
  if (pl.decode) {
    const size_t smem = 4 * size_t(tile_bytes<D>()) + size_t(prm.topk > 0 ? prm.topk : 1) * 4;
    SALA_CUDA_REQUIRE(smem <= 227 * 1024, "attention");
    static size_t configured = 0;
    if (smem > configured) {
      SALA_CUDA_CHECK(cudaFuncSetAttribute(attn_decode_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           int(smem)));
      configured = smem;
    }
    detail::launch_pdl(detail::kPdlAttention, attn_decode_kernel<D>, dim3(prm.rows.N, prm.Hkv, pl.splits), 128, smem, s,
                       prm);
    SALA_CUDA_CHECK_LAUNCH();
  } else {
    const size_t smem = attn_smem_bytes<D>(pl.ver == 3 ? 3 : 2, prm.idx != nullptr, prm.ulist_cap, pl.nblk_max);
    SALA_CUDA_REQUIRE(smem <= 227 * 1024, "attention");
    if (pl.ver == 3)
      launch_attn<D, 8, 3>(prm, pl, smem, s);
    else if (pl.warps == 8)
      pl.ver == 2 ? launch_attn<D, 8, 2>(prm, pl, smem, s) : launch_attn<D, 8, 1>(prm, pl, smem, s);
    else
      pl.ver == 2 ? launch_attn<D, 4, 2>(prm, pl, smem, s) : launch_attn<D, 4, 1>(prm, pl, smem, s);
  }
  if (pl.splits > 1) {
    detail::launch_pdl(detail::kPdlAttention, attn_combine_kernel<D>, prm.rows.N * prm.Hq, 128, 0, s, prm.o, prm.ldo,
                       prm.part_o, prm.part_lse, prm.rows.N, prm.Hq, pl.splits);
    SALA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

// An upper bound for every step of at most N rows (any S, any max_ctx), so one buffer sized for the largest step
// serves all: splits > 1 only when tiles * Hkv * head_chunks < target, i.e. for n < n_cap = target * 128 / Hq rows
// (R / head_chunks <= 128 / group), and then splits * n <= target * R / (Hkv * head_chunks) + n < 2 n_cap.
size_t attention_workspace_bytes(int N, int S, int Hq, int Hkv, int D, int max_ctx) {
  (void)S;
  (void)Hkv;
  (void)max_ctx;
  if (N <= 0 || Hq <= 0) return 0;
  const long long n_cap = (2LL * sm_count() * 128 + Hq - 1) / Hq;
  const long long rows = std::min<long long>(128LL * N, 2 * n_cap + 2);
  return size_t(rows) * size_t(Hq) * (size_t(D) + 1) * sizeof(float);
}

void attention(bf16* o, int ldo, const bf16* x, int ld, int q_off, int Hq, int Hkv, int D, const bf16* k_pages,
               const bf16* v_pages, const int32_t* idx, int topk_total, float scale, int max_ctx,
               const StepRows& rows, void* workspace, cudaStream_t s) {
  SALA_CUDA_REQUIRE(Hq > 0 && Hkv > 0 && Hq % Hkv == 0, "attention");
  SALA_CUDA_REQUIRE(D == 64 || D == 128, "attention");
  SALA_CUDA_REQUIRE(max_ctx > 0, "attention");
  SALA_CUDA_REQUIRE(idx == nullptr || topk_total > 0, "attention");
  SALA_CUDA_REQUIRE(ld % 2 == 0 && q_off % 2 == 0 && ldo % 2 == 0, "attention");
  if (rows.N == 0) return;
  const AttnPlan pl = plan_attention(rows.N, rows.S, Hq, Hkv, max_ctx, idx != nullptr);
  const int group = Hq / Hkv;
  SALA_CUDA_REQUIRE(group % pl.hpc == 0 && pl.M % pl.hpc == 0, "attention");
  SALA_CUDA_REQUIRE(idx == nullptr || pl.R <= 64, "attention");  // the 64-bit row masks of sparse tiles
  SALA_CUDA_REQUIRE(!pl.decode || rows.N == rows.S, "attention");
  SALA_CUDA_REQUIRE(pl.splits == 1 || (workspace != nullptr && reinterpret_cast<uintptr_t>(workspace) % 16 == 0),
                    "attention");
  SALA_CUDA_REQUIRE(pl.splits == 1 || size_t(pl.splits) * rows.N * Hq * (size_t(D) + 1) * sizeof(float) <=
                                          attention_workspace_bytes(rows.N, rows.S, Hq, Hkv, D, max_ctx),
                    "attention");
  AttnParams prm{};
  prm.o = o;
  prm.ldo = ldo;
  prm.x = x;
  prm.ld = ld;
  prm.q_off = q_off;
  prm.Hq = Hq;
  prm.Hkv = Hkv;
  prm.group = group;
  prm.hpc = pl.hpc;
  prm.R = pl.R;
  prm.head_chunks = pl.head_chunks;
  prm.kp = k_pages;
  prm.vp = v_pages;
  prm.idx = idx;
  prm.topk = topk_total;
  prm.scale_log2 = scale * 1.4426950408889634f;
  prm.rows = rows;
  prm.splits = pl.splits;
  prm.part_o = static_cast<float*>(workspace);
  prm.part_lse = prm.part_o + size_t(pl.splits) * rows.N * Hq * D;
  prm.nblk_max = pl.nblk_max;
  {
    const long long cap = (long long)pl.R * (topk_total > 0 ? topk_total : 1);
    prm.ulist_cap = int(cap < pl.nblk_max ? cap : pl.nblk_max);
  }
  if (D == 128)
    run_attention<128>(prm, pl, s);
  else
    run_attention<64>(prm, pl, s);
}

void attention_warps_override(int warps) { g_warps_override = warps; }
void attention_version_override(int version) { g_version_override = version; }

}  // namespace sala::cuda
