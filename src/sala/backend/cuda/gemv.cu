// gemv (gemm.h) versions 1-3: y (N, out) = x (N, in) · w^T for decode-sized N (<= kGemvMaxRows) on the CUDA cores
// (versions 4-12, the tensor-core form for up to 32 rows: gemv_mma.cu).
//
// At one to a few rows the product is a stream over the weight (2 in out bytes) with almost no arithmetic, and the
// fastest cuBLASLt kernels for it reach 72-88% of the copy bandwidth at SALA's shapes (bench_gemm_lightning). Here each
// warp owns one output row: its lanes read the row in 16-byte chunks (8 bf16, coalesced 512 bytes per warp and load),
// eight loads in flight per lane, with a cache hint that keeps the weight stream out of L1 so the x rows (read by every
// warp, a few KiB) stay there. Each chunk's 8 products per x row accumulate in fp32; the 32 lane sums meet by shuffles.
// Launched as a programmatic dependent (launch.cuh; SALA_GEMV_PREWAIT below). Three versions (kernel lab): v1 a row per
// warp, v2 two rows per warp with their loads interleaved (both without shared memory or barriers: a warp finishes when
// its rows do), v3 four warps per row (split along in, summed in shared memory); Gemm's tuning times all three.
// gemv_silu is the same product over a fused gate|up matrix whose epilogue stores silu(gate) * up (SwiGLU) instead of
// the two halves: a warp (v3: a CTA) sums a gate row and its up row together, and decode saves the silu_mul launch.
// Tried and slower (bench/results, 2026-12-01): 16 loads a lane in flight; a programmatic dependent launch prefetching
// the weights; each row's walk starting at a row-dependent offset (so that the warps in flight read different offsets
// of their 32 KB rows): 2-7% slower at every shape, down_proj included.
#include <cstdint>

#include "sala/backend/cuda/activation.cuh"
#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/gemm.h"
#include "sala/backend/cuda/gemv_common.cuh"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"

namespace sala::cuda {

namespace {

constexpr int kWarps = detail::kGemvWarps, kUnroll = 8;
using detail::ld_stream;
using detail::store_row;
using detail::store_silu;
// Where the programmatic-dependent-launch wait goes (launch.cuh). 0 (default): first, as in every other kernel; the
// H200 decode tests passed that way with PDL on (SALA_CUDA_PDL=-1). 1: after the first weight loads (the weights are
// constant), so those overlap the kernel before. With __ldg for x and the next kernel let launch before the wait,
// that form raced (results differing run to run); so it now reads x by coherent loads (ld_act) and lets the next
// kernel launch only after its wait. That form passed the GPU suite on the H200 (45e82f7) but was only 0.2% faster
// (bench/results/2026-12-01-issue8-pdl-default-h200.md), so the default stays 0.
#ifndef SALA_GEMV_PREWAIT
#define SALA_GEMV_PREWAIT 0
#endif

// The x rows: written by the kernel before this one, which a programmatic dependent launch (launch.cuh) may still be
// running when this one starts. With the wait after the first weight loads, a coherent load, not ld.global.nc
// (__ldg): the non-coherent path promises the data fixed for the kernel's whole lifetime, which a dependent launch
// breaks, and with __ldg in that form decode results differed from run to run on the H200; volatile keeps these
// after the wait in program order.
__device__ __forceinline__ uint4 ld_act(const uint4* p) {
#if SALA_GEMV_PREWAIT
  uint4 v;
  asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
#else
  return __ldg(p);  // after the wait at the kernel's top
#endif
}

// The PDL wait inside the kernel (idempotent). In the pre-wait form the next kernel is let launch only after it, as
// every other kernel does (launch.cuh): never three grids in flight.
__device__ __forceinline__ void waited() {
  if (SALA_GEMV_PREWAIT)
    detail::pdl_begin();
  else
    detail::pdl_wait();
}

// a . b over the 8 bf16 of two 16-byte chunks, added to acc (fp32 products, the order fixed per chunk).
__device__ __forceinline__ float dot8(float acc, const uint4& a, const uint4& b) {
  const uint32_t av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    acc = fmaf(__uint_as_float(av[i] << 16), __uint_as_float(bv[i] << 16), acc);
    acc = fmaf(__uint_as_float(av[i] & 0xffff0000u), __uint_as_float(bv[i] & 0xffff0000u), acc);
  }
  return acc;
}

// RPW rows per warp, their loads interleaved (RPW = 2: sixteen 16-byte loads in flight per lane). kSilu: the warp's
// rows are RPW / 2 gate rows p and their up rows, p + out / 2 (kSilu 1) or, with rows interleaved, 2 p and 2 p + 1
// (kSilu 2: the plain v2's access pattern), and y (N, out / 2) gets silu(gate) * up.
template <int N, bool F32, int RPW, int kSilu>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(void* __restrict__ y, int ldy, const bf16* __restrict__ x,
                                                           int ldx, const bf16* __restrict__ w, int in, int out) {
  if (!SALA_GEMV_PREWAIT) detail::pdl_begin();  // launch.cuh
  static_assert(!kSilu || (RPW % 2 == 0 && !F32), "a silu pair is a gate row and its up row, stored bf16");
  constexpr int kOuts = kSilu ? RPW / 2 : RPW;  // output rows of a warp
  const int lane = threadIdx.x & 31;
  const int outs = kSilu ? out / 2 : out;
  const int o0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kOuts;
  if (o0 >= outs) return;  // warp-uniform
  const int chunks = in / 8;
  const uint4* wr[RPW];
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int p = min(o0 + i % kOuts, outs - 1);
    const int r = kSilu == 2 ? 2 * p + i / kOuts : p + (kSilu ? (i / kOuts) * outs : 0);
    wr[i] = reinterpret_cast<const uint4*>(w + size_t(r) * in);
  }
  float acc[RPW][N];
#pragma unroll
  for (int i = 0; i < RPW; ++i)
#pragma unroll
    for (int n = 0; n < N; ++n) acc[i][n] = 0.f;
  int c = lane;
  for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
    uint4 wv[RPW][kUnroll];
#pragma unroll
    for (int i = 0; i < RPW; ++i)
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[i][u] = ld_stream(wr[i] + c + 32 * u);
    if (c == lane) waited();  // the weights are constant: their first loads may overlap the kernel before
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int n = 0; n < N; ++n) {
        const uint4 xv = ld_act(reinterpret_cast<const uint4*>(x + size_t(n) * ldx) + c + 32 * u);
#pragma unroll
        for (int i = 0; i < RPW; ++i) acc[i][n] = dot8(acc[i][n], wv[i][u], xv);
      }
  }
  waited();  // (returns at once when the loop above waited) before the tail's x loads and the stores
  for (; c < chunks; c += 32) {
    uint4 wv[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) wv[i] = ld_stream(wr[i] + c);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      const uint4 xv = ld_act(reinterpret_cast<const uint4*>(x + size_t(n) * ldx) + c);
#pragma unroll
      for (int i = 0; i < RPW; ++i) acc[i][n] = dot8(acc[i][n], wv[i], xv);
    }
  }
#pragma unroll
  for (int i = 0; i < RPW; ++i)
#pragma unroll
    for (int n = 0; n < N; ++n)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[i][n] += __shfl_xor_sync(0xffffffffu, acc[i][n], o);
#pragma unroll
  for (int i = 0; i < kOuts; ++i) {
    const int row = o0 + i;
#pragma unroll
    for (int n = 0; n < N; ++n)
      if (lane == n && row < outs) {
        if constexpr (kSilu)
          store_silu(y, size_t(n) * ldy + row, acc[i][n], acc[i + kOuts][n]);
        else
          store_row<F32>(y, size_t(n) * ldy + row, acc[i][n]);
      }
  }
}

// v3: kSplit warps per row, each over a contiguous quarter of the row's chunks; the partial sums meet in shared
// memory. For short, wide products (down_proj: 4096 rows of 16384) whose one-warp rows leave the GPU with too few
// warps, each walking 64 chunks per lane in series. kSilu: the CTA's two rows are gate row p and up row p + out / 2
// (kSilu 2, rows interleaved: 2 p and 2 p + 1).
constexpr int kSplit = 4;
template <int N, bool F32, int kSilu>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_split_kernel(void* __restrict__ y, int ldy, const bf16* __restrict__ x, int ldx, const bf16* __restrict__ w,
                      int in, int out) {
  if (!SALA_GEMV_PREWAIT) detail::pdl_begin();  // launch.cuh
  constexpr int kRowsPerCta = kWarps / kSplit;
  static_assert(!kSilu || (kRowsPerCta == 2 && !F32), "a silu pair is a gate row and its up row, stored bf16");
  __shared__ float part[kWarps][N];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row = kSilu == 1 ? blockIdx.x + (warp / kSplit) * (out / 2) : blockIdx.x * kRowsPerCta + warp / kSplit;
  const int q = warp % kSplit;
  const int chunks = in / 8, c0 = int((long long)chunks * q / kSplit), c1 = int((long long)chunks * (q + 1) / kSplit);
  float acc[N];
#pragma unroll
  for (int n = 0; n < N; ++n) acc[n] = 0.f;
  if (row < out) {  // warp-uniform; no early return: the barrier below is the CTA's
    const uint4* wr = reinterpret_cast<const uint4*>(w + size_t(row) * in);
    int c = c0 + lane;
    for (; c + 32 * (kUnroll - 1) < c1; c += 32 * kUnroll) {
      uint4 wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[u] = ld_stream(wr + c + 32 * u);
      if (c == c0 + lane) waited();  // as in gemv_kernel
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int n = 0; n < N; ++n)
          acc[n] = dot8(acc[n], wv[u], ld_act(reinterpret_cast<const uint4*>(x + size_t(n) * ldx) + c + 32 * u));
    }
    waited();  // before the tail's x loads, when the loop above did not run
    for (; c < c1; c += 32) {
      const uint4 wv = ld_stream(wr + c);
#pragma unroll
      for (int n = 0; n < N; ++n)
        acc[n] = dot8(acc[n], wv, ld_act(reinterpret_cast<const uint4*>(x + size_t(n) * ldx) + c));
    }
  }
  waited();  // every thread, before the stores (returns at once where the loop above waited)
#pragma unroll
  for (int n = 0; n < N; ++n) {
    float v = acc[n];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == n) part[warp][n] = v;
  }
  __syncthreads();
  const auto row_sum = [&](int r, int n) {
    float v = 0.f;
#pragma unroll
    for (int k = 0; k < kSplit; ++k) v += part[r * kSplit + k][n];
    return v;
  };
  const int t = threadIdx.x;
  if constexpr (kSilu) {  // one thread per x row
    if (t < N) store_silu(y, size_t(t) * ldy + blockIdx.x, row_sum(0, t), row_sum(1, t));
  } else {  // one thread per (row of the CTA, x row)
    const int r = t / N, n = t % N, orow = blockIdx.x * kRowsPerCta + r;
    if (t < kRowsPerCta * N && orow < out) store_row<F32>(y, size_t(n) * ldy + orow, row_sum(r, n));
  }
}

template <int N, int RPW, int kSilu>
void launch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int in, int out, cudaStream_t s) {
  const int outs = kSilu ? out / 2 : out, per_cta = kWarps * (kSilu ? RPW / 2 : RPW);
  const unsigned grid = unsigned((outs + per_cta - 1) / per_cta);
  if (f32) {
    if constexpr (!kSilu)
      detail::launch_pdl(detail::kPdlGemv, gemv_kernel<N, true, RPW, 0>, grid, kWarps * 32, 0, s, y, ldy, x, ldx, w, in,
                         out);
  } else {
    detail::launch_pdl(detail::kPdlGemv, gemv_kernel<N, false, RPW, kSilu>, grid, kWarps * 32, 0, s, y, ldy, x, ldx, w,
                       in, out);
  }
}

// Versions: 1 a row (silu: a gate|up pair) per warp, 2 two rows (pairs) per warp, 3 kSplit warps per row.
template <int N, int kSilu>
void launch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int in, int out, int version,
            cudaStream_t s) {
  if (version == 3) {
    constexpr int kRowsPerCta = kWarps / kSplit;
    const unsigned grid = unsigned(kSilu ? out / 2 : (out + kRowsPerCta - 1) / kRowsPerCta);
    if (kSilu || !f32)
      detail::launch_pdl(detail::kPdlGemv, gemv_split_kernel<N, false, kSilu>, grid, kWarps * 32, 0, s, y, ldy, x, ldx,
                         w, in, out);
    else
      detail::launch_pdl(detail::kPdlGemv, gemv_split_kernel<N, true, 0>, grid, kWarps * 32, 0, s, y, ldy, x, ldx, w,
                         in, out);
  } else if (version == 2) {
    launch<N, kSilu ? 4 : 2, kSilu>(y, f32, ldy, x, ldx, w, in, out, s);
  } else {
    launch<N, kSilu ? 2 : 1, kSilu>(y, f32, ldy, x, ldx, w, in, out, s);
  }
}

template <int kSilu>
void dispatch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int version,
              cudaStream_t s) {
  switch (N) {
    case 1: launch<1, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
    case 2: launch<2, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
    case 3: launch<3, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
    case 4: launch<4, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
    case 5: launch<5, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
    case 6: launch<6, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
    case 7: launch<7, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
    default: launch<8, kSilu>(y, f32, ldy, x, ldx, w, in, out, version, s); break;
  }
}

}  // namespace

bool gemv_supported(const void* x, int ldx, const void* w, int N, int in, int version) {
  const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool mma = version >= 4;
  return version >= 1 && version <= kGemvVersions && N >= 1 && N <= (mma ? kGemvMmaMaxRows : kGemvMaxRows) && in > 0 &&
         in % (mma ? 32 : 8) == 0 && ldx % 8 == 0 && a16(x) && a16(w);
}

void gemv(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, cudaStream_t s,
          int version) {
  SALA_CUDA_REQUIRE(gemv_supported(x, ldx, w, N, in, version) && out > 0 && ldy >= out && ldx >= in, "gemv");
  if (version >= 4) return detail::gemv_mma(y, f32, ldy, x, ldx, w, N, in, out, 0, version, s);
  dispatch<0>(y, f32, ldy, x, ldx, w, N, in, out, version, s);
  SALA_CUDA_CHECK_LAUNCH();
}

void gemv_silu(bf16* m, int ldm, const bf16* x, int ldx, const bf16* w, int N, int in, int out, cudaStream_t s,
               int version, bool pairs) {
  SALA_CUDA_REQUIRE(gemv_supported(x, ldx, w, N, in, version) && out > 0 && out % 2 == 0 && ldm >= out / 2 && ldx >= in,
                    "gemv_silu");
  if (version >= 4) return detail::gemv_mma(m, false, ldm, x, ldx, w, N, in, out, pairs ? 2 : 1, version, s);
  if (pairs)
    dispatch<2>(m, false, ldm, x, ldx, w, N, in, out, version, s);
  else
    dispatch<1>(m, false, ldm, x, ldx, w, N, in, out, version, s);
  SALA_CUDA_CHECK_LAUNCH();
}

}  // namespace sala::cuda
