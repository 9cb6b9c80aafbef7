// gemv versions 4-12 (gemm.h): the decode product y (N, out) = x (N, in) · w^T for 1 <= N <= kGemvMmaMaxRows on
// the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate). At batch 32 the CUDA-core gemv does 32 FMAs per
// weight element loaded and is compute-bound (~18 µs of FMAs for o_proj, whose 33.5 MB read at the copy rate is
// 7.8 µs); cuBLASLt's kernels for M = 32 leave most SMs idle on the short products (o_proj 19 µs, H200 profile).
// Here the weight is still one stream, read once, and the tensor cores do the arithmetic.
//
// Layout. A CTA's weight rows (silu: the gate rows of its pairs, then their up rows) and the x rows pass through a
// cp.async pipeline in shared memory (Tile: 64 rows x 128 k for versions 4-6, 32 x 256 for 7-9, 128 x 128 for 10-12;
// a row's piece of a stage is 256 or 512 contiguous bytes). Lane (g = lane / 4, t = lane % 4)
// reads 16 bytes of rows g and g + 8 of an m16 tile at k = 8 t .. 8 t + 7 of a 32-k piece, and 16 bytes of x row g of
// each n8 tile at the same k. The mma's k order is a permutation of the piece's (elements 0-3 of each 16-byte read
// feed the first k16 step, 4-7 the second); A and B use the same one, so every product is summed once, without
// ldmatrix. A first form that loaded the weights straight into registers (no shared memory) passed the tests but ran
// 1.5-3.5x slower than cuBLASLt at N = 32 (H200, 2026-12-01: with one CTA an SM, nothing overlapped a warp's load
// latency with its math). The pipelined form over 256 x 32 tiles then ran at 1.7-2.5 TB/s, under the CUDA-core gemv's
// 4 TB/s even at N = 1: 64-byte pieces of 256 rows at a time. Over 128 x 64, 64 x 128 and 32 x 256 tiles (kernel lab,
// bench/results/2026-12-01-issue8-gemv-mma-tiles-h200.txt) the longer pieces stream at 3.5-4 TB/s; 128 x 64 never
// won a shape and is gone with 256 x 32.
// Split K. A CTA (8 warps) covers a K range; `split` CTAs of one cluster cover the row tile's whole K
// range, and their fp32 sums meet in distributed shared memory, each CTA adding the split partials of its share of
// the rows in cluster-rank order (deterministic, no atomics, no global workspace). Versions 4, 7 and 10 pick the
// smallest split that fills every CTA slot (two an SM; one for 128 x 128), 5, 8 and 11 half of it, 6, 9 and 12 a
// quarter (fewer, longer CTAs: the halves won most shapes in the lab); Gemm's tuner times them against the rest.
//
// gemv_silu's epilogue (kSilu 1: gate rows p, up rows p + out / 2; 2: interleaved 2 p, 2 p + 1) rounds as the plain
// product followed by silu_mul does; the split of a silu product equals the plain one's (same row tiles, same K), so
// the two agree bitwise.
#include <cooperative_groups.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/attn_common.cuh"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/gemm.h"
#include "sala/backend/cuda/gemv_common.cuh"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"
#include "sala/backend/cuda/util.h"

// Where the PDL wait goes (launch.cuh). 0 (default): first. 1: after the prologue's weight copies, which may then
// overlap the kernel before (gemv.cu's SALA_GEMV_PREWAIT for the CUDA-core versions); not yet run on a GPU.
#ifndef SALA_GEMV_MMA_PREWAIT
#define SALA_GEMV_MMA_PREWAIT 0
#endif

namespace sala::cuda {

namespace {

namespace cg = cooperative_groups;
constexpr int kWarps = detail::kGemvWarps;
constexpr int kMaxN = 32;     // x rows a stage holds (kGemvMmaMaxRows)
constexpr int kMaxSplit = 8;  // the portable cluster size

// A CTA's tile: kRows weight rows (silu: kRows / 2 gate|up pairs) by kK k a stage (versions 4-6: 64 x 128, 7-9:
// 32 x 256, 16 KB of weights a stage; 10-12: 128 x 128, 32 KB, which reads x once per 128 weight rows instead of 64;
// 256 x 32 and 128 x 64 lost in the lab). A stage holds kP 16-byte pieces of each row. Its units (an m16 tile by a
// 32-k piece) go kU to a warp: all of one m tile where a row has kU or more pieces (kGroups warps then share a tile,
// each over its own pieces, their sums added at the end), else kU m tiles of the one piece. Rows of 128 bytes or
// more are stored with the two 64-byte halves of each 128-byte segment of odd rows swapped (piece ^ 4), so the eight
// lanes of a quarter-warp (rows g, g + 1, pieces t) read distinct banks.
template <int kRows, int kK>
struct Tile {
  static constexpr int kP = kK / 8, kMt = kRows / 16, kKq = kK / 32, kU = kMt * kKq / kWarps;
  static constexpr bool kSameMt = kKq > 1;
  static constexpr int kGroups = kSameMt ? kKq / kU : 1;
  static constexpr int kStageW = kRows * kP, kStageX = kMaxN * kP;  // in uint4
  static constexpr size_t kStageBytes = size_t(kStageW + kStageX) * 16;
  // stages in flight: up to 5 within ~110 KB of shared memory, so that two CTAs fit an SM; a stage too large for
  // three of them that way gets up to 5 in ~220 KB, one CTA an SM
  static constexpr int kTwo = int(110 * 1024 / kStageBytes), kOne = int(220 * 1024 / kStageBytes);
  static constexpr int kCtasPerSm = kTwo >= 3 ? 2 : 1;
  static constexpr int kStages = kTwo >= 3 ? (kTwo < 5 ? kTwo : 5) : (kOne < 5 ? kOne : 5);
  static constexpr size_t kSmem = size_t(kStages) * kStageBytes;
  static_assert(kMt * kKq % kWarps == 0 && kU >= 2 && (kSameMt ? kKq % kU == 0 : kMt == kU * kWarps),
                "whole units a warp: one m tile's pieces, or kU m tiles of one piece");
  static_assert(kStageW % (kWarps * 32) == 0, "a stage's weight copy: whole passes of the CTA");
  static_assert(kStages >= 3 && kStages - 2 <= 3 && kSmem * kCtasPerSm <= 220 * 1024, "the wait cases below");
  __device__ static int swz(int row, int piece) { return kP >= 8 ? piece ^ ((row & 1) << 2) : piece; }
};

// NT n8 tiles of x rows (N <= 8 NT). kSilu as in gemv.cu. Grid (split, row tiles), clusters of split along x.
template <int kRows, int kK, int NT, bool F32, int kSilu>
__global__ void __launch_bounds__(kWarps * 32, (Tile<kRows, kK>::kCtasPerSm))
    gemv_mma_kernel(void* __restrict__ y, int ldy, const bf16* __restrict__ x, int ldx, const bf16* __restrict__ w,
                    int N, int in, int out, int split) {
  using T = Tile<kRows, kK>;
  constexpr int kP = T::kP, kStages = T::kStages, kU = T::kU;
  if (!SALA_GEMV_MMA_PREWAIT) detail::pdl_begin();  // launch.cuh: nothing is read before it
  static_assert(!kSilu || !F32, "a silu pair is stored bf16");
  // +1: the epilogue's reads of consecutive rows fall in distinct banks (when a CTA's share is >= 32 rows; smaller
  // shares and the fragment stores conflict 2-4 ways, once per CTA)
  constexpr int kCols = NT * 8 + 1;
  extern __shared__ uint4 smem[];
  uint4* sw = smem;                                       // [kStages][kRows][kP]
  uint4* sx = smem + size_t(kStages) * T::kStageW;        // [kStages][kMaxN][kP]
  auto part = reinterpret_cast<float(*)[kRows][kCols]>(smem);  // after the loop: [kGroups][kRows][kCols] fp32 sums
  static_assert(sizeof(float) * T::kGroups * kRows * kCols <= T::kSmem, "the partial sums reuse the stages");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int outs = kSilu ? out / 2 : out;
  const int q = blockIdx.x, tile = blockIdx.y;
  // the warp's units u (m tile mt0 + u or mt0, 32-k piece kq0 or kq0 + u of the stage) and its group among the warps
  // of its m tile
  const int mt0 = T::kSameMt ? warp % T::kMt : kU * warp;
  const int kq0 = T::kSameMt ? kU * (warp / T::kMt) : 0;
  const int grp = T::kSameMt ? warp / T::kMt : 0;
  // the copy of a stage: thread i moves pieces i, i + 256, ... of the weight rows (kP a row: always piece i % kP),
  // then of the x rows; a local row is a weight row (plain: in order; silu: gate rows, then their up rows)
  const int cp = threadIdx.x % kP;
  const uint4* wsrc[T::kStageW / (kWarps * 32)];
  int wdst[T::kStageW / (kWarps * 32)];
#pragma unroll
  for (int j = 0; j < T::kStageW / (kWarps * 32); ++j) {
    const int lr = (threadIdx.x + j * kWarps * 32) / kP;
    int r;
    if constexpr (kSilu) {
      const int p = min(tile * (kRows / 2) + lr % (kRows / 2), outs - 1), half = lr / (kRows / 2);
      r = kSilu == 2 ? 2 * p + half : p + half * outs;
    } else {
      r = min(tile * kRows + lr, out - 1);
    }
    wsrc[j] = reinterpret_cast<const uint4*>(w + size_t(r) * in) + cp;
    wdst[j] = lr * kP + T::swz(lr, cp);
  }
  constexpr int kXPieces = NT * 8 * kP, kXPasses = (kXPieces + kWarps * 32 - 1) / (kWarps * 32);
  const int chunks = (in + kK - 1) / kK;
  const int c0 = int((long long)chunks * q / split), c1 = int((long long)chunks * (q + 1) / split), nc = c1 - c0;
  // chunk c0 + i into stage i % kStages (nothing past the range; pieces past `in` and x rows past N: zeros)
  const auto load_w = [&](int i) {
    if (i >= nc) return;
    const int k = (c0 + i) * kK + cp * 8;
#pragma unroll
    for (int j = 0; j < T::kStageW / (kWarps * 32); ++j)
      detail::cp_async16(detail::smem_u32(sw + size_t(i % kStages) * T::kStageW + wdst[j]),
                         wsrc[j] + (c0 + i) * kP, k < in);
  };
  const auto load_x = [&](int i) {
    if (i >= nc) return;
    const int k = (c0 + i) * kK + cp * 8;
#pragma unroll
    for (int j = 0; j < kXPasses; ++j) {
      const int n = (threadIdx.x + j * kWarps * 32) / kP;
      if (kXPieces % (kWarps * 32) == 0 || n < NT * 8)
        detail::cp_async16(detail::smem_u32(sx + (i % kStages) * T::kStageX + n * kP + T::swz(n, cp)),
                           x + size_t(min(n, N - 1)) * ldx + k, n < N && k < in);
    }
  };
  const auto load = [&](int i) {  // both, as one commit group (an empty one past the range)
    load_w(i);
    load_x(i);
    detail::cp_async_commit();
  };
  constexpr int kAcc = T::kSameMt ? 1 : kU;  // accumulator sets: one per m tile of the warp
  float acc[kAcc][NT][4];
#pragma unroll
  for (int a = 0; a < kAcc; ++a)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[a][nt][i] = 0.f;
  // The prologue: kStages - 1 chunks, a commit group each. In the pre-wait form the weights' groups go first, before
  // the PDL wait (they are constant), and the x pieces of all of them follow as one group after it.
#if SALA_GEMV_MMA_PREWAIT
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) load_w(i), detail::cp_async_commit();
  detail::pdl_begin();
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) load_x(i);
  detail::cp_async_commit();
#else
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) load(i);
#endif
  for (int i = 0; i < nc; ++i) {
    // chunk i has landed (this thread's copies): groups after its own may still be in flight, kStages - 2 of them
    // (pre-wait form: while i < kStages - 2 the x group of the prologue comes after, so only i)
#if SALA_GEMV_MMA_PREWAIT
    switch (min(i, kStages - 2)) {
      case 0: detail::cp_async_wait<0>(); break;
      case 1: detail::cp_async_wait<1>(); break;
      case 2: detail::cp_async_wait<2>(); break;
      default: detail::cp_async_wait<3>(); break;
    }
#else
    detail::cp_async_wait<kStages - 2>();
#endif
    __syncthreads();  // ... everyone's; and chunk i - 1's stage is free again
    load(i + kStages - 1);
    const uint4* ws = sw + size_t(i % kStages) * T::kStageW;
    const uint4* xs = sx + (i % kStages) * T::kStageX;
    uint4 xv[NT];
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int mt = T::kSameMt ? mt0 : mt0 + u, pc = (T::kSameMt ? kq0 + u : kq0) * 4 + t;
      if (u == 0 || T::kSameMt)  // one piece for both units where they share it
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) xv[nt] = xs[(nt * 8 + g) * kP + T::swz(g, pc)];
      const int l0 = mt * 16 + g, l1 = l0 + 8;
      const uint4 w0 = ws[l0 * kP + T::swz(l0, pc)], w1 = ws[l1 * kP + T::swz(l1, pc)];
      const uint32_t a0[4] = {w0.x, w1.x, w0.y, w1.y}, a1[4] = {w0.z, w1.z, w0.w, w1.w};
      auto& ac = acc[T::kSameMt ? 0 : u];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        detail::mma_bf16(ac[nt], a0, xv[nt].x, xv[nt].y);
        detail::mma_bf16(ac[nt], a1, xv[nt].z, xv[nt].w);
      }
    }
  }
  detail::cp_async_wait<0>();
  __syncthreads();  // the stages are read: their memory takes the partial sums

  // the accumulators (c0, c1: row g, x rows 2 t, 2 t + 1; c2, c3: row g + 8) into this CTA's partial sums
#pragma unroll
  for (int a = 0; a < kAcc; ++a)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int l = (mt0 + a) * 16 + g + 8 * h;
        part[grp][l][nt * 8 + 2 * t] = acc[a][nt][2 * h];
        part[grp][l][nt * 8 + 2 * t + 1] = acc[a][nt][2 * h + 1];
      }
  cg::cluster_group cluster = cg::this_cluster();
  if (split > 1)
    cluster.sync();  // every CTA's partials written (and visible across the cluster)
  else
    __syncthreads();
  // this CTA's share of the output rows, each summed over the cluster's partials in rank order (and, within a rank,
  // over its warp groups in order); rows fastest, so the stores of a warp fall on consecutive addresses of a y row
  const int rows = kSilu ? kRows / 2 : kRows;
  const int r0 = rows * q / split, r1 = rows * (q + 1) / split, share = r1 - r0;
  for (int i = threadIdx.x; i < share * N; i += kWarps * 32) {
    const int r = r0 + i % share, n = i / share;
    const int orow = tile * rows + r;
    if (orow >= outs) continue;
    float v = 0.f, u = 0.f;
    for (int k = 0; k < split; ++k) {
      const float(*pk)[kRows][kCols] = split > 1 ? cluster.map_shared_rank(part, k) : part;
#pragma unroll
      for (int gi = 0; gi < T::kGroups; ++gi) {
        v += pk[gi][r][n];
        if constexpr (kSilu) u += pk[gi][r + kRows / 2][n];
      }
    }
    if constexpr (kSilu)
      detail::store_silu(y, size_t(n) * ldy + orow, v, u);
    else
      detail::store_row<F32>(y, size_t(n) * ldy + orow, v);
  }
  if (split > 1) cluster.sync();  // no CTA leaves while another still reads its shared memory
}

// One instantiation's launch; its shared memory (over the default 48 KB) is allowed once per device.
template <int kRows, int kK, int NT, bool F32, int kSilu>
void launch_kernel(dim3 grid, int split, cudaStream_t s, void* y, int ldy, const bf16* x, int ldx, const bf16* w, int N,
                   int in, int out) {
  constexpr size_t smem = Tile<kRows, kK>::kSmem;
  const auto kernel = gemv_mma_kernel<kRows, kK, NT, F32, kSilu>;
  static std::atomic<uint64_t> sized{0};  // a bit per device ordinal (the first 64)
  int dev = 0;
  SALA_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (!(sized.load() & bit)) {
    SALA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    sized.fetch_or(bit);
  }
  detail::launch_pdl_cluster(detail::kPdlGemv, unsigned(split), kernel, grid, kWarps * 32, smem, s, y, ldy, x, ldx, w,
                             N, in, out, split);
}

template <int kRows, int kK, int NT, int kSilu>
void launch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int shift,
            cudaStream_t s) {
  const int outs = kSilu ? out / 2 : out, rows = kSilu ? kRows / 2 : kRows;
  const int tiles = (outs + rows - 1) / rows, chunks = (in + kK - 1) / kK;
  // the smallest split (power of two, <= 8) that fills the CTA slots (kCtasPerSm an SM), each CTA keeping >= 8
  // chunks; then that over 2^shift (fewer, longer CTAs)
  const int slots = Tile<kRows, kK>::kCtasPerSm * sm_count();
  int split = 1;
  while (split < kMaxSplit && tiles * split < slots && chunks / (2 * split) >= 8) split *= 2;
  split = std::max(1, split >> shift);
  const dim3 grid{unsigned(split), unsigned(tiles)};
  if (f32) {
    if constexpr (!kSilu) launch_kernel<kRows, kK, NT, true, 0>(grid, split, s, y, ldy, x, ldx, w, N, in, out);
  } else {
    launch_kernel<kRows, kK, NT, false, kSilu>(grid, split, s, y, ldy, x, ldx, w, N, in, out);
  }
}

template <int kRows, int kK, int kSilu>
void dispatch_nt(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int shift,
                 cudaStream_t s) {
  switch ((N + 7) / 8) {
    case 1:
      launch<kRows, kK, 1, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, shift, s);
      break;
    case 2:
      launch<kRows, kK, 2, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, shift, s);
      break;
    case 3:
      launch<kRows, kK, 3, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, shift, s);
      break;
    default:
      launch<kRows, kK, 4, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, shift, s);
      break;
  }
}

template <int kSilu>
void dispatch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int version,
              cudaStream_t s) {
  const int shift = (version - 4) % 3;  // the split: full, half, a quarter
  switch ((version - 4) / 3) {
    case 0:
      dispatch_nt<64, 128, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, shift, s);
      break;
    case 1:
      dispatch_nt<32, 256, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, shift, s);
      break;
    default:
      dispatch_nt<128, 128, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, shift, s);
      break;
  }
}

}  // namespace

void detail::gemv_mma(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out,
                      int silu, int version, cudaStream_t s) {
  SALA_CUDA_REQUIRE(gemv_supported(x, ldx, w, N, in, version) && version >= 4 && out > 0, "gemv_mma");
  if (silu == 2)
    dispatch<2>(y, false, ldy, x, ldx, w, N, in, out, version, s);
  else if (silu == 1)
    dispatch<1>(y, false, ldy, x, ldx, w, N, in, out, version, s);
  else
    dispatch<0>(y, f32, ldy, x, ldx, w, N, in, out, version, s);
  SALA_CUDA_CHECK_LAUNCH();
}

}  // namespace sala::cuda
