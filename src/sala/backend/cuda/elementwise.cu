// Elementwise kernels of the CUDA backend (kernels.h): embedding, residual add + RMSNorm, per-head q/k RMSNorm + RoPE,
// SwiGLU, sigmoid gates, whole-row RMSNorm. The math is that of the CPU ops (backend/cpu/ops.cpp, backend/cpu/rope.cpp)
// with bf16 activations: inputs widened to fp32, all arithmetic in fp32 (mean of squares in fp32, eps inside the
// sqrt), one rounding to bf16 at the store. Row kernels use one block per row; the vector paths (16-byte loads) are
// taken only when every width, stride and pointer allows them, the scalar paths otherwise.
#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "sala/backend/cuda/activation.cuh"
#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"

namespace sala::cuda {

namespace {

constexpr int kRowThreads = 256;

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

__device__ __forceinline__ float bf(bf16 x) { return __bfloat162float(x); }

// 4 bf16 <-> 4 floats through one 8-byte access.
struct alignas(8) Bf4 {
  __nv_bfloat162 a, b;
};
__device__ __forceinline__ float4 load_bf4(const bf16* p) {
  const Bf4 v = *reinterpret_cast<const Bf4*>(p);
  const float2 x = __bfloat1622float2(v.a), y = __bfloat1622float2(v.b);
  return make_float4(x.x, x.y, y.x, y.y);
}
__device__ __forceinline__ void store_bf4(bf16* p, float4 f) {
  Bf4 v;
  v.a = __floats2bfloat162_rn(f.x, f.y);
  v.b = __floats2bfloat162_rn(f.z, f.w);
  *reinterpret_cast<Bf4*>(p) = v;
}

__device__ __forceinline__ float block_sum(float v) {
  using Reduce = cub::BlockReduce<float, kRowThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ float total;
  const float s = Reduce(tmp).Sum(v);
  if (threadIdx.x == 0) total = s;
  __syncthreads();
  return total;
}

// ---- embed --------------------------------------------------------------------------------------------------------

template <int VEC>
__global__ void embed_kernel(float* __restrict__ h, const int32_t* __restrict__ tok, const bf16* __restrict__ table,
                             float scale, int hidden) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  const int r = blockIdx.x;
  const bf16* e = table + size_t(tok[r]) * hidden;
  float* hr = h + size_t(r) * hidden;
  for (int i = threadIdx.x * VEC; i < hidden; i += kRowThreads * VEC) {
    if constexpr (VEC == 4) {
      float4 v = load_bf4(e + i);
      v.x *= scale, v.y *= scale, v.z *= scale, v.w *= scale;
      *reinterpret_cast<float4*>(hr + i) = v;
    } else {
      hr[i] = bf(e[i]) * scale;
    }
  }
}

// ---- add_rmsnorm --------------------------------------------------------------------------------------------------

// Each thread re-reads only the elements of h it wrote itself, so the second pass needs no barrier for them.
template <int VEC>
__global__ void add_rmsnorm_kernel(float* __restrict__ h, const bf16* __restrict__ a, int lda, float a_scale,
                                   bf16* __restrict__ out, int ldo, const bf16* __restrict__ w, float eps,
                                   float post_scale, int hidden) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  const int r = blockIdx.x;
  float* hr = h + size_t(r) * hidden;
  const bf16* ar = a ? a + size_t(r) * lda : nullptr;
  float ss = 0.f;
  for (int i = threadIdx.x * VEC; i < hidden; i += kRowThreads * VEC) {
    if constexpr (VEC == 4) {
      float4 x = *reinterpret_cast<const float4*>(hr + i);
      if (ar) {
        const float4 y = load_bf4(ar + i);
        x.x += a_scale * y.x, x.y += a_scale * y.y, x.z += a_scale * y.z, x.w += a_scale * y.w;
        *reinterpret_cast<float4*>(hr + i) = x;
      }
      ss += x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
    } else {
      float x = hr[i];
      if (ar) {
        x += a_scale * bf(ar[i]);
        hr[i] = x;
      }
      ss += x * x;
    }
  }
  if (!out) return;  // uniform over the block: no thread reaches the barrier below
  const float inv = 1.0f / sqrtf(block_sum(ss) / float(hidden) + eps);
  bf16* orow = out + size_t(r) * ldo;
  for (int i = threadIdx.x * VEC; i < hidden; i += kRowThreads * VEC) {
    if constexpr (VEC == 4) {
      const float4 x = *reinterpret_cast<const float4*>(hr + i), g = load_bf4(w + i);
      store_bf4(orow + i, make_float4((x.x * inv) * g.x * post_scale, (x.y * inv) * g.y * post_scale,
                                      (x.z * inv) * g.z * post_scale, (x.w * inv) * g.w * post_scale));
    } else {
      orow[i] = __float2bfloat16((hr[i] * inv) * bf(w[i]) * post_scale);
    }
  }
}

// ---- rmsnorm_rows (bf16 in place) ---------------------------------------------------------------------------------

template <int VEC>
__global__ void rmsnorm_rows_kernel(bf16* __restrict__ x, int ldx, const bf16* __restrict__ w, float eps, int width,
                                    const bf16* __restrict__ g, int ldg) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  bf16* xr = x + size_t(blockIdx.x) * ldx;
  const bf16* gr = g ? g + size_t(blockIdx.x) * ldg : nullptr;
  float ss = 0.f;
  for (int i = threadIdx.x * VEC; i < width; i += kRowThreads * VEC) {
    if constexpr (VEC == 4) {
      const float4 v = load_bf4(xr + i);
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    } else {
      const float v = bf(xr[i]);
      ss += v * v;
    }
  }
  const float inv = 1.0f / sqrtf(block_sum(ss) / float(width) + eps);
  for (int i = threadIdx.x * VEC; i < width; i += kRowThreads * VEC) {
    if constexpr (VEC == 4) {
      const float4 v = load_bf4(xr + i), wv = load_bf4(w + i);
      float4 y = make_float4((v.x * inv) * wv.x, (v.y * inv) * wv.y, (v.z * inv) * wv.z, (v.w * inv) * wv.w);
      if (gr) {
        const float4 gv = load_bf4(gr + i);
        y = make_float4(
            detail::times_sigmoid(detail::round_bf16(y.x), gv.x), detail::times_sigmoid(detail::round_bf16(y.y), gv.y),
            detail::times_sigmoid(detail::round_bf16(y.z), gv.z), detail::times_sigmoid(detail::round_bf16(y.w), gv.w));
      }
      store_bf4(xr + i, y);
    } else {
      float y = (bf(xr[i]) * inv) * bf(w[i]);
      if (gr) y = detail::times_sigmoid(detail::round_bf16(y), bf(gr[i]));
      xr[i] = __float2bfloat16(y);
    }
  }
}

// ---- qk_norm_rope -------------------------------------------------------------------------------------------------

constexpr int kRopeThreads = 256;    // 8 warps, one head at a time each
constexpr int kMaxPairsPerLane = 4;  // D <= 256

// head_blocks blocks per row (several for decode-sized steps, whose one block per row would walk 64 heads with 8
// warps one after another): each computes the row's cos/sin (half of them) into shared memory, then each warp takes
// whole heads. Lane l owns the rotate-half pairs (p, p + half) for p in {V l + 32 V m + e : e < V} (V = 2: bf16x2
// accesses, when D % 4 == 0 and the rows are 4-byte aligned; V = 1 otherwise), held in registers between the norm and
// the rotation.
template <int V>
__global__ void __launch_bounds__(kRopeThreads)
    qk_norm_rope_kernel(bf16* __restrict__ x, int ld, int q_off, int Hq, int k_off, int Hkv, int D,
                        const bf16* __restrict__ q_norm, const bf16* __restrict__ k_norm, float eps,
                        const float* __restrict__ inv_freq, const float* __restrict__ inv_ext, float mscale,
                        const int32_t* __restrict__ pos, const int32_t* __restrict__ row_seq,
                        const uint32_t* __restrict__ flags, int head_blocks) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  constexpr int M = kMaxPairsPerLane / V;
  extern __shared__ float cs[];  // cos (half), sin (half)
  const int r = blockIdx.x / head_blocks, hb = blockIdx.x % head_blocks, half = D / 2;
  float* sn = cs + half;
  if (inv_freq) {
    const float p = float(pos[r]);
    const float* ext = nullptr;
    if (inv_ext) ext = (flags[row_seq[r]] & kSeqRopeLong) ? inv_ext + half : inv_ext;
    for (int i = threadIdx.x; i < half; i += kRopeThreads) {
      const float ang = ext ? (p * ext[i]) * inv_freq[i] : p * inv_freq[i];
      cs[i] = float(cos(double(ang))) * mscale;
      sn[i] = float(sin(double(ang))) * mscale;
    }
  }
  __syncthreads();
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  bf16* xr = x + size_t(r) * ld;
  for (int hh = hb * (kRopeThreads / 32) + warp; hh < Hq + Hkv; hh += head_blocks * (kRopeThreads / 32)) {
    const bool is_q = hh < Hq;
    bf16* xh = xr + (is_q ? q_off + hh * D : k_off + (hh - Hq) * D);
    const bf16* nw = is_q ? q_norm : k_norm;
    float a[M][V], b[M][V];
    float ss = 0.f;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const int p = V * lane + 32 * V * m;
      if constexpr (V == 2) {
        float2 u = make_float2(0.f, 0.f), v = u;
        if (p < half) {
          u = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(xh + p));
          v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(xh + p + half));
        }
        a[m][0] = u.x, a[m][1] = u.y, b[m][0] = v.x, b[m][1] = v.y;
      } else {
        a[m][0] = p < half ? bf(xh[p]) : 0.f;
        b[m][0] = p < half ? bf(xh[p + half]) : 0.f;
      }
#pragma unroll
      for (int e = 0; e < V; ++e) ss += a[m][e] * a[m][e] + b[m][e] * b[m][e];
    }
    float inv = 1.f;
    if (nw) {
#pragma unroll
      for (int o = 16; o > 0; o /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      inv = 1.0f / sqrtf(ss / float(D) + eps);
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const int p0 = V * lane + 32 * V * m;
      if (p0 >= half) continue;
      float u[V], v[V];
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const int p = p0 + e;
        u[e] = a[m][e], v[e] = b[m][e];
        if (nw) {
          u[e] = (u[e] * inv) * bf(nw[p]);
          v[e] = (v[e] * inv) * bf(nw[p + half]);
        }
        if (inv_freq) {
          const float c = cs[p], sv = sn[p];
          const float u2 = u[e] * c - v[e] * sv, v2 = v[e] * c + u[e] * sv;
          u[e] = u2, v[e] = v2;
        }
      }
      if constexpr (V == 2) {
        *reinterpret_cast<__nv_bfloat162*>(xh + p0) = __floats2bfloat162_rn(u[0], u[1]);
        *reinterpret_cast<__nv_bfloat162*>(xh + p0 + half) = __floats2bfloat162_rn(v[0], v[1]);
      } else {
        xh[p0] = __float2bfloat16(u[0]);
        xh[p0 + half] = __float2bfloat16(v[0]);
      }
    }
  }
}

// ---- silu_mul / mul_sigmoid ---------------------------------------------------------------------------------------

// Grids of the 2-D elementwise kernels: `bpr` blocks per row, rows along x (no 65535 limit on the row count).
// kPairs: the gate|up rows interleaved, (gate i, up i) one bf16x2 (VEC = 4: four pairs in two 8-byte loads); else the
// gate half then the up half.
template <int VEC, bool kPairs>
__global__ void silu_mul_kernel(bf16* __restrict__ out, const bf16* __restrict__ gu, int inter, int bpr) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  const int r = blockIdx.x / bpr, b = blockIdx.x % bpr;
  const bf16* g = gu + size_t(r) * 2 * inter;
  const bf16* u = g + inter;
  bf16* o = out + size_t(r) * inter;
  for (int i = (b * kRowThreads + threadIdx.x) * VEC; i < inter; i += bpr * kRowThreads * VEC) {
    if constexpr (kPairs && VEC == 4) {
      const float4 a = load_bf4(g + 2 * i), c = load_bf4(g + 2 * i + 4);  // (g0 u0 g1 u1) (g2 u2 g3 u3)
      store_bf4(o + i, make_float4(detail::silu_times(a.x, a.y), detail::silu_times(a.z, a.w),
                                   detail::silu_times(c.x, c.y), detail::silu_times(c.z, c.w)));
    } else if constexpr (kPairs) {
      o[i] = __float2bfloat16(detail::silu_times(bf(g[2 * i]), bf(g[2 * i + 1])));
    } else if constexpr (VEC == 4) {
      const float4 a = load_bf4(g + i), b = load_bf4(u + i);
      store_bf4(o + i, make_float4(detail::silu_times(a.x, b.x), detail::silu_times(a.y, b.y),
                                   detail::silu_times(a.z, b.z), detail::silu_times(a.w, b.w)));
    } else {
      o[i] = __float2bfloat16(detail::silu_times(bf(g[i]), bf(u[i])));
    }
  }
}

template <int VEC>
__global__ void mul_sigmoid_kernel(bf16* __restrict__ x, int ldx, const bf16* __restrict__ g, int ldg, int width,
                                   int bpr) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  const int r = blockIdx.x / bpr, b = blockIdx.x % bpr;
  bf16* xr = x + size_t(r) * ldx;
  const bf16* gr = g + size_t(r) * ldg;
  for (int i = (b * kRowThreads + threadIdx.x) * VEC; i < width; i += bpr * kRowThreads * VEC) {
    if constexpr (VEC == 4) {
      const float4 a = load_bf4(xr + i), b = load_bf4(gr + i);
      store_bf4(xr + i, make_float4(detail::times_sigmoid(a.x, b.x), detail::times_sigmoid(a.y, b.y),
                                    detail::times_sigmoid(a.z, b.z), detail::times_sigmoid(a.w, b.w)));
    } else {
      xr[i] = __float2bfloat16(detail::times_sigmoid(bf(xr[i]), bf(gr[i])));
    }
  }
}

// Blocks per row for the 2-D elementwise kernels: enough to cover a row once, at most 64.
int row_blocks(int width, int vec) {
  const int per = kRowThreads * vec;
  const int b = (width + per - 1) / per;
  return b < 1 ? 1 : (b > 64 ? 64 : b);
}

}  // namespace

void embed(float* h, const int32_t* tok, const bf16* table, float scale, int N, int hidden, cudaStream_t s) {
  SALA_CUDA_REQUIRE(N >= 0 && hidden > 0, "embed");
  if (N == 0) return;
  if (hidden % 4 == 0 && aligned(h, 16) && aligned(table, 8))
    detail::launch_pdl(detail::kPdlElementwise, embed_kernel<4>, N, kRowThreads, 0, s, h, tok, table, scale, hidden);
  else
    detail::launch_pdl(detail::kPdlElementwise, embed_kernel<1>, N, kRowThreads, 0, s, h, tok, table, scale, hidden);
  SALA_CUDA_CHECK_LAUNCH();
}

void add_rmsnorm(float* h, const bf16* a, int lda, float a_scale, bf16* out, int ldo, const bf16* w, float eps,
                 float post_scale, int N, int hidden, cudaStream_t s) {
  SALA_CUDA_REQUIRE(N >= 0 && hidden > 0, "add_rmsnorm");
  SALA_CUDA_REQUIRE(!a || lda >= hidden, "add_rmsnorm");
  SALA_CUDA_REQUIRE(!out || (ldo >= hidden && w), "add_rmsnorm");
  if (N == 0 || (!a && !out)) return;
  const bool vec = hidden % 4 == 0 && aligned(h, 16) && (!a || (lda % 4 == 0 && aligned(a, 8))) &&
                   (!out || (ldo % 4 == 0 && aligned(out, 8) && aligned(w, 8)));
  if (vec)
    detail::launch_pdl(detail::kPdlElementwise, add_rmsnorm_kernel<4>, N, kRowThreads, 0, s, h, a, lda, a_scale, out,
                       ldo, w, eps, post_scale, hidden);
  else
    detail::launch_pdl(detail::kPdlElementwise, add_rmsnorm_kernel<1>, N, kRowThreads, 0, s, h, a, lda, a_scale, out,
                       ldo, w, eps, post_scale, hidden);
  SALA_CUDA_CHECK_LAUNCH();
}

void qk_norm_rope(bf16* x, int ld, int q_off, int Hq, int k_off, int Hkv, int D, const bf16* q_norm,
                  const bf16* k_norm, float eps, const RopeArgs& rope, const StepRows& rows, cudaStream_t s) {
  SALA_CUDA_REQUIRE(D > 0 && D % 2 == 0 && D / 2 <= 32 * kMaxPairsPerLane, "qk_norm_rope");
  SALA_CUDA_REQUIRE(Hq >= 0 && Hkv >= 0 && q_off >= 0 && k_off >= 0, "qk_norm_rope");
  SALA_CUDA_REQUIRE(!rope.inv_freq || rows.pos, "qk_norm_rope");
  SALA_CUDA_REQUIRE(!rope.inv_ext || (rope.inv_freq && rows.row_seq && rows.flags), "qk_norm_rope");
  if (rows.N == 0 || Hq + Hkv == 0) return;
  if (!rope.inv_freq && !q_norm && !k_norm) return;
  const size_t shmem = size_t(D) * sizeof(float);
  constexpr int kWarps = kRopeThreads / 32;
  const int head_blocks = rows.N < 256 ? (Hq + Hkv + kWarps - 1) / kWarps : 1;  // a warp per head when few rows
  const unsigned grid = unsigned(int64_t(rows.N) * head_blocks);
  if (D % 4 == 0 && ld % 2 == 0 && q_off % 2 == 0 && k_off % 2 == 0 && aligned(x, 4))
    detail::launch_pdl(detail::kPdlElementwise, qk_norm_rope_kernel<2>, grid, kRopeThreads, shmem, s, x, ld, q_off, Hq,
                       k_off, Hkv, D, q_norm, k_norm, eps, rope.inv_freq, rope.inv_ext, rope.mscale, rows.pos,
                       rows.row_seq, rows.flags, head_blocks);
  else
    detail::launch_pdl(detail::kPdlElementwise, qk_norm_rope_kernel<1>, grid, kRopeThreads, shmem, s, x, ld, q_off, Hq,
                       k_off, Hkv, D, q_norm, k_norm, eps, rope.inv_freq, rope.inv_ext, rope.mscale, rows.pos,
                       rows.row_seq, rows.flags, head_blocks);
  SALA_CUDA_CHECK_LAUNCH();
}

namespace {
template <bool kPairs>
void launch_silu_mul(bf16* out, const bf16* gu, int N, int inter, cudaStream_t s) {
  SALA_CUDA_REQUIRE(N >= 0 && inter > 0, kPairs ? "silu_mul_pairs" : "silu_mul");
  if (N == 0) return;
  if (inter % 4 == 0 && aligned(out, 8) && aligned(gu, 8)) {
    const int bpr = row_blocks(inter, 4);
    detail::launch_pdl(detail::kPdlElementwise, silu_mul_kernel<4, kPairs>, unsigned(int64_t(N) * bpr), kRowThreads, 0,
                       s, out, gu, inter, bpr);
  } else {
    const int bpr = row_blocks(inter, 1);
    detail::launch_pdl(detail::kPdlElementwise, silu_mul_kernel<1, kPairs>, unsigned(int64_t(N) * bpr), kRowThreads, 0,
                       s, out, gu, inter, bpr);
  }
  SALA_CUDA_CHECK_LAUNCH();
}
}  // namespace

void silu_mul(bf16* out, const bf16* gu, int N, int inter, cudaStream_t s) {
  launch_silu_mul<false>(out, gu, N, inter, s);
}
void silu_mul_pairs(bf16* out, const bf16* gu, int N, int inter, cudaStream_t s) {
  launch_silu_mul<true>(out, gu, N, inter, s);
}

void mul_sigmoid(bf16* x, int ldx, const bf16* g, int ldg, int N, int width, cudaStream_t s) {
  SALA_CUDA_REQUIRE(N >= 0 && width > 0 && ldx >= width && ldg >= width, "mul_sigmoid");
  if (N == 0) return;
  if (width % 4 == 0 && ldx % 4 == 0 && ldg % 4 == 0 && aligned(x, 8) && aligned(g, 8)) {
    const int bpr = row_blocks(width, 4);
    detail::launch_pdl(detail::kPdlElementwise, mul_sigmoid_kernel<4>, unsigned(int64_t(N) * bpr), kRowThreads, 0, s, x,
                       ldx, g, ldg, width, bpr);
  } else {
    const int bpr = row_blocks(width, 1);
    detail::launch_pdl(detail::kPdlElementwise, mul_sigmoid_kernel<1>, unsigned(int64_t(N) * bpr), kRowThreads, 0, s, x,
                       ldx, g, ldg, width, bpr);
  }
  SALA_CUDA_CHECK_LAUNCH();
}

void rmsnorm_rows(bf16* x, int ldx, const bf16* w, float eps, int N, int width, cudaStream_t s, const bf16* g,
                  int ldg) {
  SALA_CUDA_REQUIRE(N >= 0 && width > 0 && ldx >= width && w, "rmsnorm_rows");
  SALA_CUDA_REQUIRE(!g || ldg >= width, "rmsnorm_rows");
  if (N == 0) return;
  if (width % 4 == 0 && ldx % 4 == 0 && aligned(x, 8) && aligned(w, 8) && (!g || (ldg % 4 == 0 && aligned(g, 8))))
    detail::launch_pdl(detail::kPdlElementwise, rmsnorm_rows_kernel<4>, N, kRowThreads, 0, s, x, ldx, w, eps, width, g,
                       ldg);
  else
    detail::launch_pdl(detail::kPdlElementwise, rmsnorm_rows_kernel<1>, N, kRowThreads, 0, s, x, ldx, w, eps, width, g,
                       ldg);
  SALA_CUDA_CHECK_LAUNCH();
}

}  // namespace sala::cuda
