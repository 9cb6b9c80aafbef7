// gemv versions 4 and 5 (gemm.h): the decode product y (N, out) = x (N, in) · w^T for 1 <= N <= kGemvMmaMaxRows on
// the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate). At batch 32 the CUDA-core gemv does 32 FMAs per
// weight element loaded and is compute-bound (~18 µs of FMAs for o_proj, whose 33.5 MB read at the copy rate is
// 7.8 µs); cuBLASLt's kernels for M = 32 leave most SMs idle on the short products (o_proj 19 µs, H200 profile).
// Here the weight is still one stream, read once, and the tensor cores do the arithmetic.
//
// Layout. A warp owns two m16 tiles of weight rows (32 rows; for SwiGLU 16 gate rows and their 16 up rows) and the
// NT n8 tiles of x rows, and walks its K range in chunks of 32: lane (g = lane / 4, t = lane % 4) loads 16 bytes of
// rows g and g + 8 at k = 8 t .. 8 t + 7 of the chunk, and 16 bytes of x row g of each n tile at the same k. The
// mma's k order is a permutation of the chunk's (elements 0-3 of each 16-byte piece feed the first k16 step, 4-7 the
// second); A and B use the same one, so every product is summed once and the weight loads stay 16-byte vectors with
// no shared memory. The x rows (N x in x 2 bytes) are read by the 8 warps of a CTA at the same k and stay in L1.
//
// Split K. A CTA (8 warps, 256 rows) covers a K range; `split` CTAs of one cluster cover the row tile's whole K
// range, and their fp32 sums meet in distributed shared memory, each CTA adding the split partials of its share of
// the rows in cluster-rank order (deterministic, no atomics, no global workspace). v4 picks the smallest split that
// puts a CTA on every SM, v5 half of it (fewer, longer CTAs); Gemm's tuner times both against the rest.
//
// gemv_silu's epilogue (kSilu 1: gate rows p, up rows p + out / 2; 2: interleaved 2 p, 2 p + 1) rounds as the plain
// product followed by silu_mul does; the split of a silu product equals the plain one's (same row tiles, same K), so
// the two agree bitwise.
#include <cooperative_groups.h>

#include <cstdint>
#include <type_traits>

#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/gemm.h"
#include "sala/backend/cuda/gemv_common.cuh"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"

namespace sala::cuda {

namespace {

namespace cg = cooperative_groups;
constexpr int kWarps = detail::kGemvWarps;
constexpr int kRowsPerCta = kWarps * 32;  // weight rows of a CTA (silu: 128 gate|up pairs)
constexpr int kUnroll = 4;                // chunks of 32 k in flight per lane: 16 loads of 16 bytes
constexpr int kMaxSplit = 8;              // the portable cluster size

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// NT n8 tiles of x rows (N <= 8 NT). kSilu as in gemv.cu. Grid (split, row tiles), clusters of split along x.
template <int NT, bool F32, int kSilu>
__global__ void __launch_bounds__(kWarps * 32, 1)
    gemv_mma_kernel(void* __restrict__ y, int ldy, const bf16* __restrict__ x, int ldx, const bf16* __restrict__ w,
                    int N, int in, int out, int split) {
  detail::pdl_begin();  // launch.cuh: nothing is read before it
  static_assert(!kSilu || !F32, "a silu pair is stored bf16");
  constexpr int kCols = NT * 8 + 1;  // +1: the column stores of a row tile fall in distinct banks
  __shared__ float part[kRowsPerCta][kCols];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int outs = kSilu ? out / 2 : out;
  const int q = blockIdx.x, tile = blockIdx.y;
  // local row of (m tile, half h): plain: the warp's 32 rows in order; silu: gate pairs at 0..127, their ups at 128..
  const auto local = [&](int mt, int h) {
    return kSilu ? mt * (kRowsPerCta / 2) + warp * 16 + g + 8 * h : warp * 32 + mt * 16 + g + 8 * h;
  };
  const uint4* wr[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      int r;
      if constexpr (kSilu) {
        const int p = min(tile * (kRowsPerCta / 2) + warp * 16 + g + 8 * h, outs - 1);
        r = kSilu == 2 ? 2 * p + mt : p + mt * outs;
      } else {
        r = min(tile * kRowsPerCta + local(mt, h), out - 1);
      }
      wr[mt][h] = reinterpret_cast<const uint4*>(w + size_t(r) * in) + t;
    }
  const uint4* xr[NT];
  bool xin[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const int n = nt * 8 + g;
    xin[nt] = n < N;
    xr[nt] = reinterpret_cast<const uint4*>(x + size_t(min(n, N - 1)) * ldx) + t;
  }
  float acc[2][NT][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;

  // U chunks from chunk c: the weight loads first (all in flight), then per chunk the x loads and 2 x 2 x NT mmas
  const auto run = [&](auto u_const, int c) {
    constexpr int U = decltype(u_const)::value;
    uint4 wv[U][2][2];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) wv[u][mt][h] = detail::ld_stream(wr[mt][h] + 4 * (c + u));
#pragma unroll
    for (int u = 0; u < U; ++u) {
      uint4 xv[NT];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) xv[nt] = xin[nt] ? __ldg(xr[nt] + 4 * (c + u)) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const uint32_t a0[4] = {wv[u][mt][0].x, wv[u][mt][1].x, wv[u][mt][0].y, wv[u][mt][1].y};
        const uint32_t a1[4] = {wv[u][mt][0].z, wv[u][mt][1].z, wv[u][mt][0].w, wv[u][mt][1].w};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          mma_bf16(acc[mt][nt], a0, xv[nt].x, xv[nt].y);
          mma_bf16(acc[mt][nt], a1, xv[nt].z, xv[nt].w);
        }
      }
    }
  };
  const int chunks = in / 32;
  const int c0 = int((long long)chunks * q / split), c1 = int((long long)chunks * (q + 1) / split);
  int c = c0;
  for (; c + kUnroll <= c1; c += kUnroll) run(std::integral_constant<int, kUnroll>{}, c);
  for (; c < c1; ++c) run(std::integral_constant<int, 1>{}, c);

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

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    SALA_CUDA_CHECK(cudaGetDevice(&dev));
    SALA_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
    return v;
  }();
  return n;
}

template <int NT, int kSilu>
void launch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int version,
            cudaStream_t s) {
  const int outs = kSilu ? out / 2 : out, rows = kSilu ? kRowsPerCta / 2 : kRowsPerCta;
  const int tiles = (outs + rows - 1) / rows, chunks = in / 32;
  int split = 1;  // v4: the smallest split (power of two, <= 8) that fills the SMs, each CTA keeping >= 8 chunks
  while (split < kMaxSplit && tiles * split < sm_count() && chunks / (2 * split) >= 2 * kUnroll) split *= 2;
  if (version == 5) split = split > 1 ? split / 2 : 1;
  const dim3 grid{unsigned(split), unsigned(tiles)};
  if (f32) {
    if constexpr (!kSilu)
      detail::launch_pdl_cluster(detail::kPdlGemv, unsigned(split), gemv_mma_kernel<NT, true, 0>, grid, kWarps * 32, 0,
                                 s, y, ldy, x, ldx, w, N, in, out, split);
  } else {
    detail::launch_pdl_cluster(detail::kPdlGemv, unsigned(split), gemv_mma_kernel<NT, false, kSilu>, grid, kWarps * 32,
                               0, s, y, ldy, x, ldx, w, N, in, out, split);
  }
}

template <int kSilu>
void dispatch(void* y, bool f32, int ldy, const bf16* x, int ldx, const bf16* w, int N, int in, int out, int version,
              cudaStream_t s) {
  switch ((N + 7) / 8) {
    case 1: launch<1, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s); break;
    case 2: launch<2, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s); break;
    case 3: launch<3, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s); break;
    default: launch<4, kSilu>(y, f32, ldy, x, ldx, w, N, in, out, version, s); break;
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
