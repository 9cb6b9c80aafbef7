// gemv versions 4 and 5 (gemm.h): the decode product y (N, out) = x (N, in) · w^T for 1 <= N <= kGemvMmaMaxRows on
// the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate). At batch 32 the CUDA-core gemv does 32 FMAs per
// weight element loaded and is compute-bound (~18 µs of FMAs for o_proj, whose 33.5 MB read at the copy rate is
// 7.8 µs); cuBLASLt's kernels for M = 32 leave most SMs idle on the short products (o_proj 19 µs, H200 profile).
// Here the weight is still one stream, read once, and the tensor cores do the arithmetic.
//
// Layout. A CTA's 256 weight rows (silu: 128 gate rows and their 128 up rows) and the x rows pass through a 5-deep
// cp.async pipeline in shared memory, one chunk of 32 k a stage (16 KB of weights: 64 KB of the stream in flight per
// CTA in steady state, two CTAs an SM). A warp owns two m16 tiles of those rows and the NT n8 tiles of x rows: lane (g = lane / 4,
// t = lane % 4) reads 16 bytes of rows g and g + 8 at k = 8 t .. 8 t + 7 of the chunk, and 16 bytes of x row g of
// each n tile at the same k (conflict-free: a quarter-warp reads 128 consecutive bytes). The mma's k order is a
// permutation of the chunk's (elements 0-3 of each 16-byte piece feed the first k16 step, 4-7 the second); A and B
// use the same one, so every product is summed once, without ldmatrix. A first form that loaded the weights straight
// into registers (no shared memory) passed the tests but ran 1.5-3.5x slower than cuBLASLt at N = 32 (H200, 2026-12-01:
// with one CTA an SM, nothing overlapped a warp's load latency with its math).
// Split K. A CTA (8 warps, 256 rows) covers a K range; `split` CTAs of one cluster cover the row tile's whole K
// range, and their fp32 sums meet in distributed shared memory, each CTA adding the split partials of its share of
// the rows in cluster-rank order (deterministic, no atomics, no global workspace). v4 picks the smallest split that
// fills every CTA slot (two an SM), v5 half of it (fewer, longer CTAs); Gemm's tuner times both against the rest.
//
// gemv_silu's epilogue (kSilu 1: gate rows p, up rows p + out / 2; 2: interleaved 2 p, 2 p + 1) rounds as the plain
// product followed by silu_mul does; the split of a silu product equals the plain one's (same row tiles, same K), so
// the two agree bitwise.
#include <cooperative_groups.h>

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
constexpr int kRowsPerCta = kWarps * 32;  // weight rows of a CTA (silu: 128 gate|up pairs)
constexpr int kMaxN = 32;                 // x rows a stage holds (kGemvMmaMaxRows)
constexpr int kStages = 5;                // chunks of 32 k in flight per CTA: 5 x 16 KB of weights
constexpr int kMaxSplit = 8;              // the portable cluster size
// a stage: the CTA's 256 weight rows and the x rows over one chunk of 32 k, 64 bytes (four 16-byte pieces) a row
constexpr int kStageW = kRowsPerCta * 4, kStageX = kMaxN * 4;  // in uint4
constexpr size_t kSmemBytes = size_t(kStages) * (kStageW + kStageX) * 16;
static_assert(kStageW % (kWarps * 32) == 0 && kStageX <= kWarps * 32, "a stage's copy: whole passes of the CTA");

// NT n8 tiles of x rows (N <= 8 NT). kSilu as in gemv.cu. Grid (split, row tiles), clusters of split along x.
template <int NT, bool F32, int kSilu>
__global__ void __launch_bounds__(kWarps * 32, 2)
    gemv_mma_kernel(void* __restrict__ y, int ldy, const bf16* __restrict__ x, int ldx, const bf16* __restrict__ w,
                    int N, int in, int out, int split) {
  if (!SALA_GEMV_MMA_PREWAIT) detail::pdl_begin();  // launch.cuh: nothing is read before it
  static_assert(!kSilu || !F32, "a silu pair is stored bf16");
  constexpr int kCols = NT * 8 + 1;  // +1: the epilogue's reads of consecutive rows fall in distinct banks
  extern __shared__ uint4 smem[];
  uint4* sw = smem;                                     // [kStages][kRowsPerCta][4]
  uint4* sx = smem + size_t(kStages) * kStageW;         // [kStages][kMaxN][4]
  auto part = reinterpret_cast<float(*)[kCols]>(smem);  // after the loop: the CTA's fp32 sums [kRowsPerCta][kCols]
  static_assert(sizeof(float) * kRowsPerCta * kCols <= kSmemBytes, "the partial sums reuse the stages");
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int outs = kSilu ? out / 2 : out;
  const int q = blockIdx.x, tile = blockIdx.y;
  // local row of (m tile, half h): plain: the warp's 32 rows in order; silu: gate pairs at 0..127, their ups at 128..
  const auto local = [&](int mt, int h) {
    return kSilu ? mt * (kRowsPerCta / 2) + warp * 16 + g + 8 * h : warp * 32 + mt * 16 + g + 8 * h;
  };
  // the copy of a stage: thread i moves 16-byte pieces i, i + 256, ... of the weight rows (4 a row), then of x
  const uint4* wsrc[kStageW / (kWarps * 32)];
#pragma unroll
  for (int j = 0; j < kStageW / (kWarps * 32); ++j) {
    const int e = threadIdx.x + j * kWarps * 32, lr = e / 4;
    int r;
    if constexpr (kSilu) {
      const int p = min(tile * (kRowsPerCta / 2) + lr % (kRowsPerCta / 2), outs - 1), half = lr / (kRowsPerCta / 2);
      r = kSilu == 2 ? 2 * p + half : p + half * outs;
    } else {
      r = min(tile * kRowsPerCta + lr, out - 1);
    }
    wsrc[j] = reinterpret_cast<const uint4*>(w + size_t(r) * in) + e % 4;
  }
  const int xe = threadIdx.x;  // threads 0..127: x row xe / 4, piece xe % 4 (rows past N: zeros)
  const bool xcopy = xe < kStageX, xvalid = xe / 4 < N;
  const uint4* xsrc = reinterpret_cast<const uint4*>(x + size_t(min(xe / 4, N - 1)) * ldx) + xe % 4;
  const int chunks = in / 32;
  const int c0 = int((long long)chunks * q / split), c1 = int((long long)chunks * (q + 1) / split), nc = c1 - c0;
  // chunk c0 + i into stage i % kStages: its weight pieces, its x pieces (nothing past the range)
  const auto load_w = [&](int i) {
    if (i >= nc) return;
#pragma unroll
    for (int j = 0; j < kStageW / (kWarps * 32); ++j)
      detail::cp_async16(detail::smem_u32(sw + size_t(i % kStages) * kStageW + threadIdx.x + j * kWarps * 32),
                         wsrc[j] + 4 * (c0 + i), true);
  };
  const auto load_x = [&](int i) {
    if (i < nc && xcopy)
      detail::cp_async16(detail::smem_u32(sx + (i % kStages) * kStageX + xe), xsrc + 4 * (c0 + i), xvalid);
  };
  const auto load = [&](int i) {  // both, as one commit group (an empty one past the range)
    load_w(i);
    load_x(i);
    detail::cp_async_commit();
  };
  float acc[2][NT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;
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
      default: detail::cp_async_wait<kStages - 2>(); break;
    }
    static_assert(kStages - 2 == 3, "the cases above");
#else
    detail::cp_async_wait<kStages - 2>();
#endif
    __syncthreads();  // ... everyone's; and chunk i - 1's stage is free again
    load(i + kStages - 1);
    const uint4* ws = sw + size_t(i % kStages) * kStageW;
    const uint4* xs = sx + (i % kStages) * kStageX;
    uint4 xv[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) xv[nt] = xs[(nt * 8 + g) * 4 + t];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      const uint4 w0 = ws[local(mt, 0) * 4 + t], w1 = ws[local(mt, 1) * 4 + t];
      const uint32_t a0[4] = {w0.x, w1.x, w0.y, w1.y}, a1[4] = {w0.z, w1.z, w0.w, w1.w};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        detail::mma_bf16(acc[mt][nt], a0, xv[nt].x, xv[nt].y);
        detail::mma_bf16(acc[mt][nt], a1, xv[nt].z, xv[nt].w);
      }
    }
  }
  detail::cp_async_wait<0>();
  __syncthreads();  // the stages are read: their memory takes the partial sums

  // the accumulators (c0, c1: row g, x rows 2 t, 2 t + 1; c2, c3: row g + 8) into this CTA's partial sums
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        part[local(mt, h)][nt * 8 + 2 * t] = acc[mt][nt][2 * h];
        part[local(mt, h)][nt * 8 + 2 * t + 1] = acc[mt][nt][2 * h + 1];
      }
  cg::cluster_group cluster = cg::this_cluster();
  if (split > 1)
    cluster.sync();  // every CTA's partials written (and visible across the cluster)
  else
    __syncthreads();
  // this CTA's share of the output rows, each summed over the cluster's partials in rank order; rows fastest, so the
  // stores of a warp fall on consecutive addresses of a y row
  const int rows = kSilu ? kRowsPerCta / 2 : kRowsPerCta;
  const int r0 = rows * q / split, r1 = rows * (q + 1) / split, share = r1 - r0;
  for (int i = threadIdx.x; i < share * N; i += kWarps * 32) {
    const int r = r0 + i % share, n = i / share;
    const int orow = tile * rows + r;
    if (orow >= outs) continue;
    float v = 0.f, u = 0.f;
    for (int k = 0; k < split; ++k) {
      const float(*pk)[kCols] = split > 1 ? cluster.map_shared_rank(part, k) : part;
      v += pk[r][n];
      if constexpr (kSilu) u += pk[r + kRowsPerCta / 2][n];
    }
    if constexpr (kSilu)
      detail::store_silu(y, size_t(n) * ldy + orow, v, u);
    else
      detail::store_row<F32>(y, size_t(n) * ldy + orow, v);
  }
  if (split > 1) cluster.sync();  // no CTA leaves while another still reads its shared memory
}

// One instantiation's launch; its shared memory (over the default 48 KB) is allowed once per device.
template <int NT, bool F32, int kSilu>
void launch_kernel(dim3 grid, int split, cudaStream_t s, void* y, int ldy, const bf16* x, int ldx, const bf16* w, int N,
                   int in, int out) {
  static std::atomic<uint64_t> sized{0};  // a bit per device ordinal (the first 64)
  int dev = 0;
  SALA_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (!(sized.load() & bit)) {
    SALA_CUDA_CHECK(cudaFuncSetAttribute(gemv_mma_kernel<NT, F32, kSilu>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(kSmemBytes)));
    sized.fetch_or(bit);
  }
  detail::launch_pdl_cluster(detail::kPdlGemv, unsigned(split), gemv_mma_kernel<NT, F32, kSilu>, grid, kWarps * 32,
                             kSmemBytes, s, y, ldy, x, ldx, w, N, in, out, split);
}

template <int NT, int kSilu>
void launch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int version,
            cudaStream_t s) {
  const int outs = kSilu ? out / 2 : out, rows = kSilu ? kRowsPerCta / 2 : kRowsPerCta;
  const int tiles = (outs + rows - 1) / rows, chunks = in / 32;
  // v4: the smallest split (power of two, <= 8) that fills the CTA slots (two an SM), each CTA keeping >= 8 chunks
  int split = 1;
  while (split < kMaxSplit && tiles * split < 2 * sm_count() && chunks / (2 * split) >= 8) split *= 2;
  if (version == 5) split = split > 1 ? split / 2 : 1;
  const dim3 grid{unsigned(split), unsigned(tiles)};
  if (f32) {
    if constexpr (!kSilu) launch_kernel<NT, true, 0>(grid, split, s, y, ldy, x, ldx, w, N, in, out);
  } else {
    launch_kernel<NT, false, kSilu>(grid, split, s, y, ldy, x, ldx, w, N, in, out);
  }
}

template <int kSilu>
void dispatch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int version,
              cudaStream_t s) {
  switch ((N + 7) / 8) {
    case 1:
      launch<1, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s);
      break;
    case 2:
      launch<2, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s);
      break;
    case 3:
      launch<3, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s);
      break;
    default:
      launch<4, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s);
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
