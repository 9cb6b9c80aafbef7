// Lightning attention (constant-decay linear attention, fp32 state) over the sequences of one step (kernels.h).
// Same function as backend/cpu/lightning.cpp: S_h <- γ_h S_h + k^T v per token, o = scale · q S_h, the current token
// included. Only non-negative powers of γ are ever formed (γ^n ≤ 1: SALA head 0 decays 0.43 per token).
//
// Two kernels, one per (sequence, head, slice of the value dimension); the slice of the state lives on chip for the
// whole sequence and is read and written once:
//
// * recurrent (decode): 256 threads own a 128 x 32 slice, thread (tx, ty) the 4 columns 4tx.. and the rows ty, ty+32,
//   ..., so every state access is a coalesced float4. Per token: s = γ s + k_i v_j, acc_j += q_i s, then a reduction
//   over the 32 row groups (shuffles, then shared memory). It takes any row count (a token loop).
// * chunked (prefill): 64-token chunks, 4 warps, BV value columns. Warp w owns query rows 16w.. of the chunk and key
//   rows 32w.. of the state (as mma.sync accumulators, fp32). Per chunk:
//     O = γ^{i+1} (Q S_prev) + ((Q K^T) ⊙ Γ) V,  Γ[i][j] = γ^{i-j} (j ≤ i);   S = γ^C S + K^T (diag(γ^{C-1-j}) V)
//   on bf16 tensor cores with fp32 accumulation. Q, K, V are exact in bf16; the fp32 operands (S_prev, the decayed
//   scores, the decayed V) are split into hi + lo bf16 parts and multiplied twice, so every product keeps about 16
//   mantissa bits: the state stays within ~1e-5 of the fp32 recurrence over thousands of tokens. Q, K, V tiles are
//   loaded with cp.async one chunk ahead (two stages); padded rows (past the sequence) and key dims (past D) are
//   zero-filled, which makes their contributions exactly zero.
#include <cstdint>

#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/attn_common.cuh"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"
#include "sala/backend/cuda/lightning_paths.h"
#include "sala/backend/cuda/util.h"

namespace sala::cuda {

namespace {

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

__device__ __forceinline__ float bf(bf16 x) { return __bfloat162float(x); }

// ---- recurrent kernel ---------------------------------------------------------------------------------------------

constexpr int kRecCols = 32, kRecThreads = 256, kRecRows = 4;  // D <= 32 * kRecRows

__global__ void __launch_bounds__(kRecThreads)
    lightning_recurrent_kernel(bf16* __restrict__ o, int ldo, const bf16* __restrict__ x, int ld, int q_off,
                               int k_off, int v_off, float* __restrict__ state, int64_t state_stride,
                               const float* __restrict__ log_decay, float scale, int group, int D,
                               const int32_t* __restrict__ cu, const int32_t* __restrict__ slot,
                               const uint32_t* __restrict__ flags) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  __shared__ float sq[32 * kRecRows], sk[32 * kRecRows], sv[kRecCols];
  __shared__ float4 part[kRecThreads / 32][8];
  const int s = blockIdx.z, h = blockIdx.y, c0 = blockIdx.x * kRecCols;
  const int tid = threadIdx.x, tx = tid % 8, ty = tid / 8, warp = tid / 32, lane = tid % 32;
  const int r0 = cu[s], T = cu[s + 1] - r0;
  const bool fresh = (flags[s] & kSeqFresh) != 0;
  if (T == 0 && !fresh) return;
  float* S = state + int64_t(slot[s]) * state_stride + size_t(h) * D * D;
  const int c = c0 + 4 * tx;
  const bool col_ok = c < D;  // D % 8 == 0: the 4 columns are all in or all out
  float st[kRecRows][4];
#pragma unroll
  for (int m = 0; m < kRecRows; ++m) {
    const int i = ty + 32 * m;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (!fresh && col_ok && i < D) v = *reinterpret_cast<const float4*>(S + size_t(i) * D + c);
    st[m][0] = v.x, st[m][1] = v.y, st[m][2] = v.z, st[m][3] = v.w;
  }
  const float gamma = float(exp(double(log_decay[h])));
  const int hk = h / group;
  for (int t = 0; t < T; ++t) {
    const bf16* xr = x + size_t(r0 + t) * ld;
    __syncthreads();  // the previous token's reads of sq, sk, sv and part are done
    for (int i = tid; i < D; i += kRecThreads) {
      sq[i] = bf(xr[q_off + h * D + i]);
      sk[i] = bf(xr[k_off + hk * D + i]);
    }
    if (tid < kRecCols) sv[tid] = c0 + tid < D ? bf(xr[v_off + hk * D + c0 + tid]) : 0.f;
    __syncthreads();
    const float v0 = sv[4 * tx], v1 = sv[4 * tx + 1], v2 = sv[4 * tx + 2], v3 = sv[4 * tx + 3];
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma unroll
    for (int m = 0; m < kRecRows; ++m) {
      const int i = ty + 32 * m;
      if (i < D) {
        const float ki = sk[i], qi = sq[i];
        st[m][0] = gamma * st[m][0] + ki * v0;
        st[m][1] = gamma * st[m][1] + ki * v1;
        st[m][2] = gamma * st[m][2] + ki * v2;
        st[m][3] = gamma * st[m][3] + ki * v3;
        a0 += qi * st[m][0], a1 += qi * st[m][1], a2 += qi * st[m][2], a3 += qi * st[m][3];
      }
    }
    // lanes l, l^8, l^16, l^24 hold the same columns (ty = 4 warp + l / 8)
#pragma unroll
    for (int off = 8; off < 32; off *= 2) {
      a0 += __shfl_xor_sync(0xffffffffu, a0, off);
      a1 += __shfl_xor_sync(0xffffffffu, a1, off);
      a2 += __shfl_xor_sync(0xffffffffu, a2, off);
      a3 += __shfl_xor_sync(0xffffffffu, a3, off);
    }
    if (lane < 8) part[warp][lane] = make_float4(a0, a1, a2, a3);
    __syncthreads();
    if (tid < 8 && c0 + 4 * tid < D) {
      float4 sum = part[0][tid];
#pragma unroll
      for (int w = 1; w < kRecThreads / 32; ++w) {
        const float4 p = part[w][tid];
        sum.x += p.x, sum.y += p.y, sum.z += p.z, sum.w += p.w;
      }
      bf16* orow = o + size_t(r0 + t) * ldo + h * D + c0 + 4 * tid;
      orow[0] = __float2bfloat16(sum.x * scale);
      orow[1] = __float2bfloat16(sum.y * scale);
      orow[2] = __float2bfloat16(sum.z * scale);
      orow[3] = __float2bfloat16(sum.w * scale);
    }
  }
#pragma unroll
  for (int m = 0; m < kRecRows; ++m) {
    const int i = ty + 32 * m;
    if (col_ok && i < D)
      *reinterpret_cast<float4*>(S + size_t(i) * D + c) = make_float4(st[m][0], st[m][1], st[m][2], st[m][3]);
  }
}

// ---- chunked tensor-core kernel -----------------------------------------------------------------------------------

constexpr int kC = 64;         // chunk (tokens)
constexpr int kDP = 128;       // key / query dims, padded (D <= 128)
constexpr int kQS = kDP + 8;   // smem row stride (elements) of Q and K tiles: rows 16 B apart mod 128, no conflicts
constexpr int kChunkThreads = 128;

// attn_common.cuh's primitives with this file's operand forms (fragment arrays, bf16 pointers)
using detail::smem_u32;
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
  detail::ldsm_x4(smem_u32(p), r[0], r[1], r[2], r[3]);
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16* p) {
  detail::ldsm_x4_t(smem_u32(p), r[0], r[1], r[2], r[3]);
}
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  detail::mma_bf16(d, a, b0, b1);  // d += a b, m16n8k16, bf16 in, fp32 accumulate
}
__device__ __forceinline__ void cp_async16(bf16* dst, const bf16* src, bool ok) {
  detail::cp_async16(smem_u32(dst), src, ok);
}
using detail::cp_async_commit;
__device__ __forceinline__ void cp_async_wait_all() { detail::cp_async_wait<0>(); }

__device__ __forceinline__ uint32_t as_u32(__nv_bfloat162 v) { return *reinterpret_cast<uint32_t*>(&v); }
// (a, b) -> hi = bf16x2(a, b), lo = bf16x2(a - hi.a, b - hi.b): hi + lo carries ~16 mantissa bits of each value.
__device__ __forceinline__ void split2(float a, float b, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  const float2 hf = __bfloat1622float2(h);
  hi = as_u32(h);
  lo = as_u32(__floats2bfloat162_rn(a - hf.x, b - hf.y));
}

template <int BV>
constexpr size_t chunk_smem_bytes() {
  constexpr int VS = BV + 8;
  return size_t(2 * kC * kQS * 2 + 2 * kC * VS + 2 * kC * VS + 2 * kDP * VS) * sizeof(bf16) +
         size_t(kC + 1) * sizeof(float);
}

template <int BV>
__global__ void __launch_bounds__(kChunkThreads)
    lightning_chunk_kernel(bf16* __restrict__ o, int ldo, const bf16* __restrict__ x, int ld, int q_off, int k_off,
                           int v_off, float* __restrict__ state, int64_t state_stride,
                           const float* __restrict__ log_decay, float scale, int group, int D,
                           const int32_t* __restrict__ cu, const int32_t* __restrict__ slot,
                           const uint32_t* __restrict__ flags) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  constexpr int VS = BV + 8, NB = BV / 8, KS = kDP / 16;
  static_assert(BV % 16 == 0 && kDP == 32 * (kChunkThreads / 32), "warp w owns state rows 32w..32w+31");
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem);  // [2][kC][kQS]
  bf16* sK = sQ + 2 * kC * kQS;              // [2][kC][kQS]
  bf16* sV = sK + 2 * kC * kQS;              // [2][kC][VS]
  bf16* sVh = sV + 2 * kC * VS;              // [kC][VS]  decayed V, hi
  bf16* sVl = sVh + kC * VS;                 //           and lo
  bf16* sSh = sVl + kC * VS;                 // [kDP][VS] S_prev, hi
  bf16* sSl = sSh + kDP * VS;                //           and lo
  float* pw = reinterpret_cast<float*>(sSl + kDP * VS);  // [kC + 1] γ^n

  const int s = blockIdx.z, h = blockIdx.y, col0 = blockIdx.x * BV;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int mi = lane / 8, rr = lane % 8;  // ldmatrix: which 8x8 matrix this lane addresses, and which row of it
  const int r0 = cu[s], T = cu[s + 1] - r0;
  const bool fresh = (flags[s] & kSeqFresh) != 0;
  if (T == 0 && !fresh) return;
  float* S = state + int64_t(slot[s]) * state_stride + size_t(h) * D * D;
  const int hk = h / group;
  const bf16* qbase = x + q_off + h * D;
  const bf16* kbase = x + k_off + hk * D;
  const bf16* vbase = x + v_off + hk * D + col0;

  if (tid <= kC) pw[tid] = float(exp(double(log_decay[h]) * double(tid)));  // as the CPU: exp(g n) in double

  // State accumulators: sacc[mt][nt][e] is S[32 warp + 16 mt + g + 8 (e / 2)][col0 + 8 nt + 2 t4 + e % 2].
  float sacc[2][NB][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < NB; ++nt)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int row = 32 * warp + 16 * mt + g + 8 * hf, col = col0 + 8 * nt + 2 * t4;
        float2 v = make_float2(0.f, 0.f);
        if (!fresh && row < D && col < D) v = *reinterpret_cast<const float2*>(S + size_t(row) * D + col);
        sacc[mt][nt][2 * hf] = v.x;
        sacc[mt][nt][2 * hf + 1] = v.y;
      }

  const int nchunks = (T + kC - 1) / kC;
  auto load_chunk = [&](int c, int stage) {
    const int rbase = r0 + c * kC, cn = min(kC, T - c * kC);
    bf16* qd = sQ + stage * kC * kQS;
    bf16* kd = sK + stage * kC * kQS;
    bf16* vd = sV + stage * kC * VS;
    for (int idx = tid; idx < kC * (kDP / 8); idx += kChunkThreads) {
      const int j = idx / (kDP / 8), p = (idx % (kDP / 8)) * 8;
      const bool ok = j < cn && p < D;
      const size_t off = size_t(rbase + (ok ? j : 0)) * ld + (ok ? p : 0);
      cp_async16(qd + j * kQS + p, qbase + off, ok);
      cp_async16(kd + j * kQS + p, kbase + off, ok);
    }
    for (int idx = tid; idx < kC * (BV / 8); idx += kChunkThreads) {
      const int j = idx / (BV / 8), p = (idx % (BV / 8)) * 8;
      const bool ok = j < cn && col0 + p < D;
      cp_async16(vd + j * VS + p, vbase + size_t(rbase + (ok ? j : 0)) * ld + (ok ? p : 0), ok);
    }
    cp_async_commit();
  };

  if (nchunks > 0) load_chunk(0, 0);
  for (int c = 0; c < nchunks; ++c) {
    const int stage = c & 1, cn = min(kC, T - c * kC);
    cp_async_wait_all();
    __syncthreads();  // chunk c is in shared memory; every warp is done with chunk c - 1 (its stage, sS*, sV*)
    if (c + 1 < nchunks) load_chunk(c + 1, stage ^ 1);
    const bf16* qs = sQ + stage * kC * kQS;
    const bf16* ks = sK + stage * kC * kQS;
    const bf16* vs = sV + stage * kC * VS;

    // Phase A: S_prev (hi, lo) and the decayed V (hi, lo) into shared memory.
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < NB; ++nt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int row = 32 * warp + 16 * mt + g + 8 * hf, col = 8 * nt + 2 * t4;
          uint32_t hi, lo;
          split2(sacc[mt][nt][2 * hf], sacc[mt][nt][2 * hf + 1], hi, lo);
          *reinterpret_cast<uint32_t*>(sSh + row * VS + col) = hi;
          *reinterpret_cast<uint32_t*>(sSl + row * VS + col) = lo;
        }
    for (int idx = tid; idx < kC * (BV / 2); idx += kChunkThreads) {
      const int j = idx / (BV / 2), p = (idx % (BV / 2)) * 2;
      const float w = j < cn ? pw[cn - 1 - j] : 0.f;
      const float2 v = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(vs + j * VS + p));
      uint32_t hi, lo;
      split2(v.x * w, v.y * w, hi, lo);
      *reinterpret_cast<uint32_t*>(sVh + j * VS + p) = hi;
      *reinterpret_cast<uint32_t*>(sVl + j * VS + p) = lo;
    }
    __syncthreads();

    // Phase B, per warp: query rows 16 warp .. 16 warp + 15 of the chunk.
    uint32_t qa[KS][4];
#pragma unroll
    for (int k = 0; k < KS; ++k)
      if (16 * k < D) ldsm_x4(qa[k], qs + (16 * warp + lane % 16) * kQS + 16 * k + (lane / 16) * 8);

    // (a) inter-chunk: oacc = γ^{i+1} (Q S_prev)
    float oacc[NB][4];
#pragma unroll
    for (int nt = 0; nt < NB; ++nt) oacc[nt][0] = oacc[nt][1] = oacc[nt][2] = oacc[nt][3] = 0.f;
    if (!(fresh && c == 0)) {
#pragma unroll
      for (int k = 0; k < KS; ++k) {
        if (16 * k >= D) continue;
#pragma unroll
        for (int np = 0; np < NB / 2; ++np) {
          const int off = (16 * k + (mi % 2) * 8 + rr) * VS + 16 * np + (mi / 2) * 8;
          uint32_t bh[4], bl[4];
          ldsm_x4_t(bh, sSh + off);
          ldsm_x4_t(bl, sSl + off);
          mma(oacc[2 * np], qa[k], bh[0], bh[1]);
          mma(oacc[2 * np + 1], qa[k], bh[2], bh[3]);
          mma(oacc[2 * np], qa[k], bl[0], bl[1]);
          mma(oacc[2 * np + 1], qa[k], bl[2], bl[3]);
        }
      }
      const float d0 = pw[16 * warp + g + 1], d1 = pw[16 * warp + g + 9];
#pragma unroll
      for (int nt = 0; nt < NB; ++nt) {
        oacc[nt][0] *= d0, oacc[nt][1] *= d0;
        oacc[nt][2] *= d1, oacc[nt][3] *= d1;
      }
    }

    // (b) scores P = Q K^T for the key tiles up to the warp's last row, masked and decayed: P[i][j] γ^{i-j}, j <= i.
    float pacc[8][4];
#pragma unroll
    for (int jt = 0; jt < 8; ++jt) pacc[jt][0] = pacc[jt][1] = pacc[jt][2] = pacc[jt][3] = 0.f;
#pragma unroll
    for (int k = 0; k < KS; ++k) {
      if (16 * k >= D) continue;
#pragma unroll
      for (int jp = 0; jp < 4; ++jp) {
        if (jp > warp) continue;
        uint32_t b[4];
        ldsm_x4(b, ks + (16 * jp + (mi / 2) * 8 + rr) * kQS + 16 * k + (mi % 2) * 8);
        mma(pacc[2 * jp], qa[k], b[0], b[1]);
        mma(pacc[2 * jp + 1], qa[k], b[2], b[3]);
      }
    }
    const int i0 = 16 * warp + g, i1 = i0 + 8;
#pragma unroll
    for (int jt = 0; jt < 8; ++jt) {
      if (jt / 2 > warp) continue;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e < 2 ? i0 : i1, j = 8 * jt + 2 * t4 + (e & 1);
        pacc[jt][e] = j <= i ? pacc[jt][e] * pw[i - j] : 0.f;
      }
    }

    // (c) intra-chunk: oacc += P V (P as the A operand straight from its accumulators, hi + lo)
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (kk > warp) continue;
      uint32_t ah[4], al[4];
      split2(pacc[2 * kk][0], pacc[2 * kk][1], ah[0], al[0]);
      split2(pacc[2 * kk][2], pacc[2 * kk][3], ah[1], al[1]);
      split2(pacc[2 * kk + 1][0], pacc[2 * kk + 1][1], ah[2], al[2]);
      split2(pacc[2 * kk + 1][2], pacc[2 * kk + 1][3], ah[3], al[3]);
#pragma unroll
      for (int np = 0; np < NB / 2; ++np) {
        uint32_t b[4];
        ldsm_x4_t(b, vs + (16 * kk + (mi % 2) * 8 + rr) * VS + 16 * np + (mi / 2) * 8);
        mma(oacc[2 * np], ah, b[0], b[1]);
        mma(oacc[2 * np + 1], ah, b[2], b[3]);
        mma(oacc[2 * np], al, b[0], b[1]);
        mma(oacc[2 * np + 1], al, b[2], b[3]);
      }
    }

    // (d) o = scale * oacc for the rows inside the sequence
    {
      const size_t rb = size_t(r0 + c * kC);
#pragma unroll
      for (int nt = 0; nt < NB; ++nt) {
        const int col = col0 + 8 * nt + 2 * t4;
        if (col >= D) continue;
        if (i0 < cn)
          *reinterpret_cast<__nv_bfloat162*>(o + (rb + i0) * ldo + h * D + col) =
              __floats2bfloat162_rn(oacc[nt][0] * scale, oacc[nt][1] * scale);
        if (i1 < cn)
          *reinterpret_cast<__nv_bfloat162*>(o + (rb + i1) * ldo + h * D + col) =
              __floats2bfloat162_rn(oacc[nt][2] * scale, oacc[nt][3] * scale);
      }
    }

    // (e) state: S = γ^cn S + K^T Ṽ, Ṽ[j] = γ^{cn-1-j} V[j] (hi + lo); warp w: key rows 32 w .. 32 w + 31
    const float dc = pw[cn];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < NB; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) sacc[mt][nt][e] *= dc;
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (16 * kk >= cn) continue;
      uint32_t bh[NB / 2][4], bl[NB / 2][4];
#pragma unroll
      for (int np = 0; np < NB / 2; ++np) {
        const int off = (16 * kk + (mi % 2) * 8 + rr) * VS + 16 * np + (mi / 2) * 8;
        ldsm_x4_t(bh[np], sVh + off);
        ldsm_x4_t(bl[np], sVl + off);
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const int d0 = 32 * warp + 16 * mt;
        if (d0 >= D) continue;
        uint32_t a[4];
        ldsm_x4_t(a, ks + (16 * kk + (mi / 2) * 8 + rr) * kQS + d0 + (mi % 2) * 8);
#pragma unroll
        for (int np = 0; np < NB / 2; ++np) {
          mma(sacc[mt][2 * np], a, bh[np][0], bh[np][1]);
          mma(sacc[mt][2 * np + 1], a, bh[np][2], bh[np][3]);
          mma(sacc[mt][2 * np], a, bl[np][0], bl[np][1]);
          mma(sacc[mt][2 * np + 1], a, bl[np][2], bl[np][3]);
        }
      }
    }
  }

#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < NB; ++nt)
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const int row = 32 * warp + 16 * mt + g + 8 * hf, col = col0 + 8 * nt + 2 * t4;
        if (row < D && col < D)
          *reinterpret_cast<float2*>(S + size_t(row) * D + col) =
              make_float2(sacc[mt][nt][2 * hf], sacc[mt][nt][2 * hf + 1]);
      }
}

template <int BV>
void launch_chunk(bf16* o, int ldo, const bf16* x, int ld, int q_off, int k_off, int v_off, float* state,
                  int64_t state_stride, const float* log_decay, float scale, int H, int group, int D,
                  const StepRows& rows, cudaStream_t s) {
  constexpr size_t shmem = chunk_smem_bytes<BV>();
  // Above 48 KiB a kernel needs the opt-in, once per process (one device: the engine runs on one GPU per process).
  static const bool opted_in = [] {
    SALA_CUDA_CHECK(cudaFuncSetAttribute(lightning_chunk_kernel<BV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(shmem)));
    return true;
  }();
  (void)opted_in;
  const dim3 grid(unsigned((D + BV - 1) / BV), unsigned(H), unsigned(rows.S));
  detail::launch_pdl(detail::kPdlLightning, lightning_chunk_kernel<BV>, grid, kChunkThreads, shmem, s, o, ldo, x, ld,
                     q_off, k_off, v_off, state, state_stride, log_decay, scale, group, D, rows.cu_seqlens, rows.slot,
                     rows.flags);
  SALA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void lightning_path(LightningPath path, bf16* o, int ldo, const bf16* x, int ld, int q_off, int k_off, int v_off,
                    float* state, int64_t state_stride, const float* log_decay, float scale, int H, int Hkv, int D,
                    const StepRows& rows, cudaStream_t s) {
  SALA_CUDA_REQUIRE(D > 0 && D % 8 == 0 && D <= kDP, "lightning");
  SALA_CUDA_REQUIRE(H > 0 && Hkv > 0 && H % Hkv == 0 && H <= 65535 && rows.S <= 65535, "lightning");
  SALA_CUDA_REQUIRE(aligned(state, 16) && state_stride % 4 == 0 && state_stride >= int64_t(H) * D * D, "lightning");
  SALA_CUDA_REQUIRE(ldo >= H * D && ld > 0 && q_off >= 0 && k_off >= 0 && v_off >= 0, "lightning");
  SALA_CUDA_REQUIRE(rows.cu_seqlens && rows.slot && rows.flags, "lightning");
  if (rows.S == 0) return;
  const int group = H / Hkv;
  const bool chunk_ok = ld % 8 == 0 && q_off % 8 == 0 && k_off % 8 == 0 && v_off % 8 == 0 && aligned(x, 16) &&
                        ldo % 2 == 0 && aligned(o, 4);
  if (path == LightningPath::Auto) {
    // 32 value columns per CTA, or 16 when that leaves SMs idle (one long sequence: 2.44 vs 2.62 ms at 32K tokens on
    // an H200; with 8 sequences 32 columns win, 1.49 vs 2.42 ms).
    const int64_t ctas32 = int64_t(rows.S) * H * ((D + 31) / 32);
    if (rows.N == rows.S || !chunk_ok)
      path = LightningPath::Recurrent;
    else
      path = ctas32 < sm_count() ? LightningPath::Chunk16 : LightningPath::Chunk32;
  }
  SALA_CUDA_REQUIRE(path == LightningPath::Recurrent || chunk_ok, "lightning");
  switch (path) {
    case LightningPath::Recurrent: {
      const dim3 grid(unsigned((D + kRecCols - 1) / kRecCols), unsigned(H), unsigned(rows.S));
      detail::launch_pdl(detail::kPdlLightning, lightning_recurrent_kernel, grid, kRecThreads, 0, s, o, ldo, x, ld,
                         q_off, k_off, v_off, state, state_stride, log_decay, scale, group, D, rows.cu_seqlens,
                         rows.slot, rows.flags);
      SALA_CUDA_CHECK_LAUNCH();
      break;
    }
    case LightningPath::Chunk16:
      launch_chunk<16>(o, ldo, x, ld, q_off, k_off, v_off, state, state_stride, log_decay, scale, H, group, D, rows, s);
      break;
    case LightningPath::Chunk64:
      launch_chunk<64>(o, ldo, x, ld, q_off, k_off, v_off, state, state_stride, log_decay, scale, H, group, D, rows, s);
      break;
    default:
      launch_chunk<32>(o, ldo, x, ld, q_off, k_off, v_off, state, state_stride, log_decay, scale, H, group, D, rows, s);
      break;
  }
}

void lightning(bf16* o, int ldo, const bf16* x, int ld, int q_off, int k_off, int v_off, float* state,
               int64_t state_stride, const float* log_decay, float scale, int H, int Hkv, int D, const StepRows& rows,
               cudaStream_t s) {
  lightning_path(LightningPath::Auto, o, ldo, x, ld, q_off, k_off, v_off, state, state_stride, log_decay, scale, H,
                 Hkv, D, rows, s);
}

}  // namespace sala::cuda
