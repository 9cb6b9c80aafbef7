// infllmv2_select (kernels.h): InfLLM-V2 block selection for the rows of sparse sequences, with the semantics of
// cpu::infllmv2_select (stage1_visible_windows incl. the §4.9 off-by-one, K2 log-sum-exp, head-group sum, NaN -> 0,
// max-pooling over K1 windows 4b-1 .. 4b+3 clipped to the existing windows, init + local blocks forced, top-k with
// ties to the lower block, ascending, -1 padded, only blocks <= the row's own).
//
// Three kernels, on the tensor cores where the FLOPs are (wgmma m64n64k16 for a 4-warp CTA = one warpgroup by default;
// mma.sync m16n8k16 per warp in versions 1-2; bf16 -> fp32):
//   lse:    CTA = (4-row tile of one sequence, kv head, K2 split); warp w takes row w with its group's query heads as
//           the 16 matrix rows (padded when the group is smaller); K2 windows, 64 per tile, are gathered from their
//           pages by cp.async (two stages); per (row, head) an online max / sum of 2^(s log2e q.K2) over the visible
//           windows -> partial (m, l) per split.
//   scores: same CTA shape over K1 tiles of 64 windows (16 pages x 4); combines the lse partials, scores
//           p = 2^(scale log2e q.K1 - lse2) for visible windows, sums the 16 rows of the warp (the heads) with
//           shuffles, and max-pools the 64 window sums (plus the last one of the previous tile) onto the tile's 16
//           blocks -> fp32 block scores (N, Hkv, max_blocks) in the workspace. A K1 split that does not start at tile
//           0 first runs the tile before it only to carry its last window.
//   topk:   CTA = (row, kv head), 512 threads: force init/local blocks to +inf, radix-select (4 passes of 8 bits on
//           an order-preserving key) the topk-th largest score, then every block above it and the lowest-indexed
//           ones equal to it are written ascending: each thread owns a contiguous run of blocks, and two block scans
//           (ties seen before the run, picks before the run) place its picks.
// Rows whose sequence lacks kSeqSparse are skipped by all three (their idx rows are left as they are).
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cstdint>

#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/attn_common.cuh"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"
#include "sala/backend/cuda/util.h"
#include "sala/backend/cuda/wgmma.cuh"

namespace sala::cuda {

namespace {

using namespace detail;

// Rows per stage-1 CTA, one per warp (kernel lab: v1/v3 = 4, v2/v4 = 16). Every row of a CTA shares each K1/K2 tile
// it loads, so 16 rows cut the L2 traffic to a quarter, but on the H200 v2 measured 7% slower than v1 at 32K and
// 128K (bench_attention): the kernels are bound by issue and latency (exp2, shuffles, the MMA chains), not by L2.
// SelectArgs::stage1_version forces a version.
constexpr int kRowsFew = 4, kRowsMany = 16;
constexpr int kTopkThreads = 512;
constexpr float kLog2e = 1.4426950408889634f;

struct S1Params {
  const bf16* x;
  int ld, q_off, Hq, Hkv, group;
  const bf16* k1;
  const bf16* k2;
  float scale_log2;
  StepRows rows;
  int max_blocks;
  int splits_lse, splits_score;
  float* blk;     // (N, Hkv, max_blocks)
  float2* lse;    // (splits_lse, N, Hq): (m, l) in the log2 domain
};

// Per-CTA setup shared by the two stage-1 kernels.
struct S1Row {
  bool valid;        // this warp's row exists
  int row, pos, n1, n2, q_blk;
  bool hvalid[2];    // the thread's two matrix rows are real heads
  int head[2];
};

template <int D>
__device__ __forceinline__ void load_q(uint32_t (&qa)[D / 16][4], const S1Params& P, const S1Row& R) {
  const int tq = threadIdx.x & 3;
  const bf16* q0 = P.x + size_t(R.valid ? R.row : 0) * P.ld + P.q_off + size_t(R.hvalid[0] ? R.head[0] : 0) * D;
  const bf16* q1 = P.x + size_t(R.valid ? R.row : 0) * P.ld + P.q_off + size_t(R.hvalid[1] ? R.head[1] : 0) * D;
  load_q_frags<D>(qa, q0, q1, tq, R.hvalid[0], R.hvalid[1]);
}

// s = Q K^T on wgmma (awaited): every warp of the warpgroup calls it (its 16 rows are the warpgroup's rows 16 w ..),
// whether or not its own rows need the tile. s must hold initialised values (they are overwritten).
template <int D>
__device__ __forceinline__ void qk_tile_wg(float (&s)[8][4], const uint32_t (&qa)[D / 16][4], uint32_t kb) {
  wgmma_qk_issue<D>(s, qa, kb);
  wgmma_wait<0>();
  wgmma_touch(s);
}

// Finds the CTA's tile; false (for the whole CTA) when past the end or the sequence is dense.
template <int kRows>
__device__ __forceinline__ bool s1_setup(const S1Params& P, RowTile& tile, S1Row& R, int& n1_tot, int& n2_tot) {
  __shared__ RowTile s_tile;
  __shared__ int s_ok;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (warp == 0) {
    RowTile t;
    bool ok = find_tile(P.rows, kRows, blockIdx.x, t);
    if (ok) ok = (P.rows.flags[t.seq] & kSeqSparse) != 0;
    if (lane == 0) {
      s_ok = ok;
      s_tile = t;
    }
  }
  __syncthreads();
  if (!s_ok) return false;
  tile = s_tile;
  const int g = blockIdx.y;
  const int last = P.rows.pos[P.rows.cu_seqlens[tile.seq + 1] - 1];
  n1_tot = complete_windows(last, 32, 16);
  n2_tot = complete_windows(last, 128, 64);
  const int call_len = P.rows.call_len[tile.seq];
  R.valid = warp < tile.nrows;
  R.row = tile.row0 + warp;
  R.pos = R.valid ? P.rows.pos[R.row] : -1;
  R.n1 = R.valid ? min(visible_windows(R.pos, call_len, 16), n1_tot) : 0;
  R.n2 = R.valid ? min(visible_windows(R.pos, call_len, 64), n2_tot) : 0;
  R.q_blk = R.valid ? R.pos / kPageTokens : -1;
  const int gq = lane >> 2;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int hr = gq + 8 * i;
    R.hvalid[i] = R.valid && hr < P.group;
    R.head[i] = g * P.group + hr;
  }
  return true;
}

template <int kRows>
__device__ __forceinline__ int cta_max(int v, int* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  int m = red[0];
  for (int w = 1; w < kRows; ++w) m = max(m, red[w]);
  __syncthreads();
  return m;
}

#ifndef SALA_S1_WG_MINB
#define SALA_S1_WG_MINB 1  // CTAs per SM that v3's register cap aims at (1: no cap; experiments override)
#endif
template <int D, int kRows, bool kWg>
__global__ void __launch_bounds__(kRows * 32, kWg && kRows == 4 ? SALA_S1_WG_MINB : 1) stage1_lse_kernel(S1Params P) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  constexpr int kS1Threads = kRows * 32;
  __shared__ __align__(1024) uint8_t tiles[2][kPageTokens * D * 2];
  __shared__ int red[kRows];
  RowTile tile;
  S1Row R;
  int n1_tot, n2_tot;
  if (!s1_setup<kRows>(P, tile, R, n1_tot, n2_tot)) return;
  const int tid = threadIdx.x, lane = tid & 31, tq = lane & 3, g = blockIdx.y, z = blockIdx.z;
  const int max_n2 = cta_max<kRows>(R.n2, red);
  const int T = (max_n2 + 63) / 64;
  const int t_begin = T * z / P.splits_lse, t_end = T * (z + 1) / P.splits_lse;
  const int* pt = P.rows.page_table + size_t(P.rows.slot[tile.seq]) * P.rows.pt_stride;

  uint32_t qa[D / 16][4];
  load_q<D>(qa, P, R);
  float m[2] = {kNegInf, kNegInf}, l[2] = {0.f, 0.f};

  auto load = [&](int t, int st) {
    const uint32_t dst = smem_u32(tiles[st]);
    for (int c = tid; c < 64 * (D / 8); c += kS1Threads) {
      const int r = c / (D / 8), ch = c % (D / 8), w = t * 64 + r;
      const bool ok = w < max_n2;
      const bf16* src = P.k2 + ((size_t(ok ? pt[w] : 0) * P.Hkv + g) * D + ch * 8);
      cp_async16(dst + tile_off<D>(r, ch), src, ok);
    }
    cp_async_commit();
  };
  float s[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
  pipeline2<kWg>(t_begin, t_end, load, [&](int t, int st) {
    if constexpr (kWg) qk_tile_wg<D>(s, qa, smem_u32(tiles[st]));
    if (R.n2 > t * 64) {  // warp-uniform
      if constexpr (!kWg) qk_tile_mma<D>(s, qa, smem_u32(tiles[st]));
      const bool full = (t + 1) * 64 <= R.n2;  // warp-uniform
      float mx[2] = {kNegInf, kNegInf};
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int w = t * 64 + j * 8 + 2 * tq + (e & 1);
          const float v = full || w < R.n2 ? s[j][e] * P.scale_log2 : kNegInf;
          s[j][e] = v;
          mx[e >> 1] = fmaxf(mx[e >> 1], v);
        }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        const float mnew = fmaxf(m[i], mx[i]);  // finite: the tile holds at least one visible window
        l[i] *= fast_exp2(m[i] - mnew);
        m[i] = mnew;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) l[e >> 1] += fast_exp2(s[j][e] - m[e >> 1]);
    }
    __syncthreads();
  });
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    if (tq == 0 && R.hvalid[i])
      P.lse[(size_t(z) * P.rows.N + R.row) * P.Hq + R.head[i]] = make_float2(m[i], l[i]);
  }
}

// kWg (v3, v4): the product on wgmma, and the head sum as a reduce-scatter over the 8 lanes that share a column
// pair (14 shuffles where the butterfly all-reduce takes 48), leaving each lane two finished window sums.
template <int D, int kRows, bool kWg>
__global__ void __launch_bounds__(kRows * 32, kWg && kRows == 4 ? SALA_S1_WG_MINB : 1) stage1_score_kernel(S1Params P) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  constexpr int kS1Threads = kRows * 32;
  __shared__ __align__(1024) uint8_t tiles[2][kPageTokens * D * 2];
  __shared__ float cs[kRows][65];  // [0] = last window of the previous tile, [1 + i] = window 64 t + i
  __shared__ int red[kRows];
  RowTile tile;
  S1Row R;
  int n1_tot, n2_tot;
  if (!s1_setup<kRows>(P, tile, R, n1_tot, n2_tot)) return;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, tq = lane & 3, g = blockIdx.y, z = blockIdx.z;
  const int max_qblk = cta_max<kRows>(R.q_blk, red);
  const int max_n1 = cta_max<kRows>(R.n2 > 0 ? R.n1 : 0, red);  // windows any row needs from memory
  const int T = (max_qblk + 1 + 15) / 16;                    // tiles covering blocks 0 .. max_qblk
  const int t_first = T * z / P.splits_score, t_end = T * (z + 1) / P.splits_score;
  const int t_begin = t_first > 0 ? t_first - 1 : 0;        // the tile before only carries its last window
  const int* pt = P.rows.page_table + size_t(P.rows.slot[tile.seq]) * P.rows.pt_stride;

  // the row's log-sum-exp (log2 domain) over the visible K2 windows, from the lse kernel's split partials
  float lse2[2] = {0.f, 0.f};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!R.hvalid[i] || R.n2 == 0) continue;
    float M = kNegInf;
    for (int zz = 0; zz < P.splits_lse; ++zz)
      M = fmaxf(M, P.lse[(size_t(zz) * P.rows.N + R.row) * P.Hq + R.head[i]].x);
    float L = 0.f;
    for (int zz = 0; zz < P.splits_lse; ++zz) {
      const float2 v = P.lse[(size_t(zz) * P.rows.N + R.row) * P.Hq + R.head[i]];
      if (v.y > 0.f) L += v.y * exp2f(v.x - M);
    }
    lse2[i] = M + __log2f(L);
  }

  uint32_t qa[D / 16][4];
  load_q<D>(qa, P, R);
  if (lane == 0) cs[warp][0] = kNegInf;
  __syncwarp();

  auto load = [&](int t, int st) {
    const uint32_t dst = smem_u32(tiles[st]);
    for (int c = tid; c < 64 * (D / 8); c += kS1Threads) {
      const int r = c / (D / 8), ch = c % (D / 8), w = t * 64 + r;
      const bool ok = w < max_n1;
      const bf16* src = P.k1 + (((size_t(ok ? pt[w >> 2] : 0) * P.Hkv + g) * 4 + (w & 3)) * D + ch * 8);
      cp_async16(dst + tile_off<D>(r, ch), src, ok);
    }
    cp_async_commit();
  };
  float s[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
  pipeline2<kWg>(t_begin, t_end, load, [&](int t, int st) {
    const bool active = R.n2 > 0 && R.n1 > t * 64;  // warp-uniform
    if constexpr (kWg) qk_tile_wg<D>(s, qa, smem_u32(tiles[st]));
    // v[j][e]: the thread's two heads' probabilities of window 64 t + 8 j + 2 tq + e
    float v[8][2];
    if (active) {
      if constexpr (!kWg) qk_tile_mma<D>(s, qa, smem_u32(tiles[st]));
      const bool full = (t + 1) * 64 <= R.n1;  // warp-uniform: every window of the tile visible (all but the last)
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int w = t * 64 + j * 8 + 2 * tq + e;
          float x = 0.f;
          if (full || w < R.n1) {
            if (R.hvalid[0]) x += fast_exp2(s[j][e] * P.scale_log2 - lse2[0]);
            if (R.hvalid[1]) x += fast_exp2(s[j][e + 2] * P.scale_log2 - lse2[1]);
          }
          v[j][e] = x;
        }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j][0] = v[j][1] = 0.f;
    }
    if constexpr (kWg) {
      // sum over the 8 lanes of a column pair (lane bits 2-4), each step halving what a lane holds: after it, lane
      // (gq, tq) holds windows 64 t + 8 gq + 2 tq + {0, 1}
      float a8[8], a4[4], a2[2];
      bool up = (lane & 16) != 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float send = up ? v[i >> 1][i & 1] : v[4 + (i >> 1)][i & 1];
        const float keep = up ? v[4 + (i >> 1)][i & 1] : v[i >> 1][i & 1];
        a8[i] = keep + __shfl_xor_sync(0xffffffffu, send, 16);
      }
      up = (lane & 8) != 0;
#pragma unroll
      for (int i = 0; i < 4; ++i)
        a4[i] = (up ? a8[i + 4] : a8[i]) + __shfl_xor_sync(0xffffffffu, up ? a8[i] : a8[i + 4], 8);
      up = (lane & 4) != 0;
#pragma unroll
      for (int i = 0; i < 2; ++i)
        a2[i] = (up ? a4[i + 2] : a4[i]) + __shfl_xor_sync(0xffffffffu, up ? a4[i] : a4[i + 2], 4);
      const int gq = lane >> 2;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int w = t * 64 + gq * 8 + 2 * tq + e;
        float x = a2[e];
        if (x != x) x = 0.f;  // the reference zeroes NaN stage-1 scores
        cs[warp][1 + gq * 8 + 2 * tq + e] = w < n1_tot ? x : kNegInf;
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float x = v[j][e];
          x += __shfl_xor_sync(0xffffffffu, x, 4);
          x += __shfl_xor_sync(0xffffffffu, x, 8);
          x += __shfl_xor_sync(0xffffffffu, x, 16);
          v[j][e] = x;
        }
      if (lane < 4) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int w = t * 64 + j * 8 + 2 * tq + e;
            float x = v[j][e];
            if (x != x) x = 0.f;  // the reference zeroes NaN stage-1 scores
            cs[warp][1 + j * 8 + 2 * tq + e] = w < n1_tot ? x : kNegInf;
          }
      }
    }
    __syncwarp();
    if (t >= t_first && R.valid && lane < 16) {
      const int b = t * 16 + lane;
      if (b <= R.q_blk && b < P.max_blocks) {
        float v = cs[warp][4 * lane];
#pragma unroll
        for (int k = 1; k < 5; ++k) v = fmaxf(v, cs[warp][4 * lane + k]);
        P.blk[(size_t(R.row) * P.Hkv + g) * P.max_blocks + b] = v;
      }
    }
    __syncwarp();
    if (lane == 0) cs[warp][0] = cs[warp][64];
    __syncthreads();
  });
}

__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__global__ void __launch_bounds__(kTopkThreads) topk_kernel(int32_t* __restrict__ idx, const float* __restrict__ blk,
                                                            int max_blocks, int K, int local_blocks, int init_blocks,
                                                            int Hkv, StepRows rows) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  using Scan = cub::BlockScan<int, kTopkThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_krem;
  const int r = blockIdx.x, g = blockIdx.y, tid = threadIdx.x;
  if ((rows.flags[rows.row_seq[r]] & kSeqSparse) == 0) return;
  const int q_blk = rows.pos[r] / kPageTokens, nb = q_blk + 1;
  int32_t* out = idx + (size_t(r) * Hkv + g) * K;
  if (nb <= K) {
    for (int j = tid; j < K; j += kTopkThreads) out[j] = j < nb ? j : -1;
    return;
  }
  const float* sc = blk + (size_t(r) * Hkv + g) * max_blocks;
  const int local_lo = q_blk - local_blocks;
  auto key = [&](int b) -> uint32_t {
    const bool forced = b < init_blocks || b >= local_lo;
    return forced ? 0xff800000u : order_key(sc[b]);  // order_key(+inf)
  };

  uint32_t prefix = 0, mask = 0;
  int krem = K;
  for (int shift = 24; shift >= 0; shift -= 8) {
    if (tid < 256) hist[tid] = 0;
    __syncthreads();
    for (int b = tid; b < nb; b += kTopkThreads) {
      const uint32_t k = key(b);
      if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255], 1);
    }
    __syncthreads();
    if (tid < 32) {  // digits from 255 down: lane l holds 255 - 8 l - j, j = 0..7
      int cnt[8], sum = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        cnt[j] = hist[255 - 8 * tid - j];
        sum += cnt[j];
      }
      int incl = sum;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (tid >= o) incl += v;
      }
      const unsigned hit = __ballot_sync(0xffffffffu, incl >= krem);
      if (tid == __ffs(int(hit)) - 1) {
        int c = incl - sum;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          if (c + cnt[j] >= krem) {
            s_prefix = prefix | (uint32_t(255 - 8 * tid - j) << shift);
            s_krem = krem - c;
            break;
          }
          c += cnt[j];
        }
      }
    }
    __syncthreads();
    prefix = s_prefix;
    krem = s_krem;
    mask |= 255u << shift;
    __syncthreads();
  }
  // prefix = the K-th largest key; take all keys above it and the krem lowest-indexed equal to it. Each thread owns
  // a contiguous run of blocks, so two scans (ties, then picks) give every pick its place in the ascending list.
  const uint32_t thr = prefix;
  const int per = (nb + kTopkThreads - 1) / kTopkThreads, b0 = min(nb, tid * per), b1 = min(nb, b0 + per);
  int n_gt = 0, n_eq = 0;
  for (int b = b0; b < b1; ++b) {
    const uint32_t k = key(b);
    n_gt += k > thr;
    n_eq += k == thr;
  }
  int eq_before;
  Scan(scan_tmp).ExclusiveSum(n_eq, eq_before);
  __syncthreads();
  const int take_eq = max(0, min(n_eq, krem - eq_before));
  int at;
  Scan(scan_tmp).ExclusiveSum(n_gt + take_eq, at);
  for (int b = b0, eq_taken = 0; b < b1; ++b) {
    const uint32_t k = key(b);
    if (k > thr || (k == thr && eq_taken++ < take_eq)) out[at++] = b;
  }
}

struct SelectPlan {
  int version, rows_per_cta, tiles, max_blocks, splits_lse, splits_score;
};

// Stage-1 versions (kernel lab): v1 4-row CTAs on mma.sync, v2 16-row CTAs on mma.sync, v3 4-row CTAs on wgmma
// (one warpgroup), v4 16-row CTAs on wgmma (four warpgroups sharing each tile).
constexpr int kStage1Default = 3;

SelectPlan plan_select(int N, int S, int Hkv, int max_ctx, int version) {
  SelectPlan p{};
  p.version = version >= 1 && version <= 4 ? version : kStage1Default;
  p.rows_per_cta = p.version % 2 == 0 ? kRowsMany : kRowsFew;
  p.tiles = row_tiles_upper(N, S, p.rows_per_cta);
  p.max_blocks = (max_ctx + kPageTokens - 1) / kPageTokens;
  const long long ctas = (long long)p.tiles * Hkv;
  // target CTAs and the most splits: the lse splits keep partials (at most 64, the workspace bound below); the score
  // splits write their own blocks and only re-read one tile each, so decode rows at long contexts (1M: 1024 K1 tiles
  // per row) take up to 256 of them, filling the GPU four CTAs deep
  auto splits = [&](int tiles_max, long long target, long long cap) {
    if (ctas >= target) return 1;
    long long z = (target + ctas - 1) / ctas;
    const long long zmax = tiles_max / 2 > 1 ? tiles_max / 2 : 1;  // at least ~2 tiles per split
    if (z > zmax) z = zmax;
    if (z > cap) z = cap;
    return int(z);
  };
  const int n2_max = max_ctx >= 128 ? (max_ctx - 128) / 64 + 1 : 0;
  p.splits_lse = splits((n2_max + 63) / 64, 2LL * sm_count(), 64);
  p.splits_score = splits((p.max_blocks + 15) / 16, 4LL * sm_count(), 256);
  return p;
}

template <int D, int kRows, bool kWg>
void launch_stage1(const S1Params& prm, const SelectPlan& pl, cudaStream_t s) {
  detail::launch_pdl(detail::kPdlSelect, stage1_lse_kernel<D, kRows, kWg>, dim3(pl.tiles, prm.Hkv, pl.splits_lse),
                     kRows * 32, 0, s, prm);
  SALA_CUDA_CHECK_LAUNCH();
  detail::launch_pdl(detail::kPdlSelect, stage1_score_kernel<D, kRows, kWg>, dim3(pl.tiles, prm.Hkv, pl.splits_score),
                     kRows * 32, 0, s, prm);
  SALA_CUDA_CHECK_LAUNCH();
}

template <int D>
void launch_select(const S1Params& prm, const SelectPlan& pl, int32_t* idx, const SelectArgs& a, cudaStream_t s) {
  switch (pl.version) {
    case 1: launch_stage1<D, kRowsFew, false>(prm, pl, s); break;
    case 2: launch_stage1<D, kRowsMany, false>(prm, pl, s); break;
    case 3: launch_stage1<D, kRowsFew, true>(prm, pl, s); break;
    default: launch_stage1<D, kRowsMany, true>(prm, pl, s); break;
  }
  detail::launch_pdl(detail::kPdlSelect, topk_kernel, dim3(prm.rows.N, prm.Hkv), kTopkThreads, 0, s, idx, prm.blk,
                     pl.max_blocks, a.topk_total, a.local_blocks, a.init_blocks, prm.Hkv, prm.rows);
  SALA_CUDA_CHECK_LAUNCH();
}

// Block scores (N, Hkv, ceil(max_ctx / 64)) fp32, then the K2 lse partials: (splits_lse, n, Hq) float2 for the
// step's n rows. An upper bound for every step of at most N rows (any S, either CTA height R): splits_lse > 1 only
// when tiles * Hkv < target, and then splits_lse <= target / (tiles Hkv) + 1 with tiles >= n / R, so splits_lse * n <=
// R target / Hkv + n.
size_t select_lse_rows_bound(int N, int Hkv) {
  const long long cap = 1LL * kRowsMany * 2 * sm_count() / Hkv + 1;
  return size_t(N) + size_t(std::min<long long>(64LL * N, 2 * cap));
}
size_t select_blk_bytes(int N, int Hkv, int max_blocks) {
  return (size_t(N) * Hkv * max_blocks * sizeof(float) + 255) & ~size_t(255);
}

}  // namespace

size_t select_workspace_bytes(int N, int S, int Hq, int Hkv, int max_ctx) {
  (void)S;
  if (N <= 0 || Hkv <= 0) return 0;
  const int max_blocks = (max_ctx + kPageTokens - 1) / kPageTokens;
  return select_blk_bytes(N, Hkv, max_blocks) + select_lse_rows_bound(N, Hkv) * Hq * sizeof(float2);
}

void infllmv2_select(int32_t* idx, const bf16* x, int ld, int q_off, int Hq, int Hkv, int D, const bf16* k1,
                     const bf16* k2, const SelectArgs& a, int max_ctx, const StepRows& rows, void* workspace,
                     cudaStream_t s) {
  SALA_CUDA_REQUIRE(Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && Hq / Hkv <= 16, "infllmv2_select");
  SALA_CUDA_REQUIRE(D == 64 || D == 128, "infllmv2_select");
  SALA_CUDA_REQUIRE(a.block == kPageTokens && a.stride == 16, "infllmv2_select");  // the K1/K2 page layout
  SALA_CUDA_REQUIRE(a.topk_total > 0 && a.local_blocks >= 0 && a.init_blocks >= 0, "infllmv2_select");
  SALA_CUDA_REQUIRE(max_ctx > 0 && ld % 2 == 0 && q_off % 2 == 0, "infllmv2_select");
  SALA_CUDA_REQUIRE(workspace != nullptr && reinterpret_cast<uintptr_t>(workspace) % 16 == 0, "infllmv2_select");
  SALA_CUDA_REQUIRE(k1 != nullptr && k2 != nullptr, "infllmv2_select");
  if (rows.N == 0) return;
  const SelectPlan pl = plan_select(rows.N, rows.S, Hkv, max_ctx, a.stage1_version);
  S1Params prm{};
  prm.x = x;
  prm.ld = ld;
  prm.q_off = q_off;
  prm.Hq = Hq;
  prm.Hkv = Hkv;
  prm.group = Hq / Hkv;
  prm.k1 = k1;
  prm.k2 = k2;
  prm.scale_log2 = a.scale * kLog2e;
  prm.rows = rows;
  prm.max_blocks = pl.max_blocks;
  prm.splits_lse = pl.splits_lse;
  prm.splits_score = pl.splits_score;
  prm.blk = static_cast<float*>(workspace);
  const size_t blk_bytes = select_blk_bytes(rows.N, Hkv, pl.max_blocks);
  SALA_CUDA_REQUIRE(size_t(pl.splits_lse) * rows.N <= select_lse_rows_bound(rows.N, Hkv), "infllmv2_select");
  prm.lse = reinterpret_cast<float2*>(static_cast<uint8_t*>(workspace) + blk_bytes);
  if (D == 128)
    launch_select<128>(prm, pl, idx, a, s);
  else
    launch_select<64>(prm, pl, idx, a, s);
}

}  // namespace sala::cuda
