#include "sala/backend/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include <omp.h>

#include "sala/core/dtype.h"
#include "sala/core/error.h"

namespace sala::cpu {

namespace {

typedef float v8 __attribute__((vector_size(32)));
// The helpers below are inlined into each target clone; their by-value v8 never crosses an ABI boundary (the warning
// is off for the whole file: template instantiations are checked at its end).
#pragma GCC diagnostic ignored "-Wpsabi"

// Weights are read in their stored dtype and widened to fp32 in registers. bf16 and f16 widen exactly, so every
// product and sum below sees the same fp32 values as with fp32 copies of the weights: the results are bitwise equal.
struct WF32 {
  using T = float;
  static float one(const float* p) { return *p; }
};
struct WBF16 {
  using T = uint16_t;
  static float one(const uint16_t* p) { return bf16_to_f32(*p); }
};
struct WF16 {
  using T = uint16_t;
  static float one(const uint16_t* p) { return f16_to_f32(*p); }
};

__attribute__((always_inline)) inline v8 load8(const float* p) {
  v8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <class W>
__attribute__((always_inline)) inline v8 wload8(const typename W::T* p) {
  if constexpr (std::is_same_v<W, WF32>) {
    return load8(p);
  } else if constexpr (std::is_same_v<W, WBF16>) {
    uint16_t h[8];
    __builtin_memcpy(h, p, sizeof h);
    v8 v;
    for (int j = 0; j < 8; ++j) v[j] = bf16_to_f32(h[j]);
    return v;
  } else {
    v8 v;
    for (int j = 0; j < 8; ++j) v[j] = W::one(p + j);
    return v;
  }
}
__attribute__((always_inline)) inline float hsum(v8 a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// 8 independent partial sums let the compiler vectorise the reduction without -ffast-math.
template <class W>
__attribute__((always_inline)) inline float dot_w(const typename W::T* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += W::one(a + i + j) * b[i + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += W::one(a + i) * b[i];
  return s;
}

// y[t][o0..o0+3] for tokens t0..t0+2: a 4 weight rows x 3 tokens register tile (12 accumulators), so each 8-float
// step does 12 FMAs for 7 loads; the single-row dot() above does 1 FMA for 2.
template <class W>
__attribute__((always_inline)) inline void tile_4x3(float* y, int64_t ldy, const float* x, int64_t ldx,
                                                    const typename W::T* w, int64_t o0, int64_t t0, int64_t in) {
  v8 acc[4][3];
  for (auto& r : acc)
    for (auto& a : r) a = v8{};
  const float* xr[3] = {x + t0 * ldx, x + (t0 + 1) * ldx, x + (t0 + 2) * ldx};
  const typename W::T* wr[4] = {w + o0 * in, w + (o0 + 1) * in, w + (o0 + 2) * in, w + (o0 + 3) * in};
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    const v8 x0 = load8(xr[0] + i), x1 = load8(xr[1] + i), x2 = load8(xr[2] + i);
    for (int r = 0; r < 4; ++r) {
      const v8 wv = wload8<W>(wr[r] + i);
      acc[r][0] += wv * x0;
      acc[r][1] += wv * x1;
      acc[r][2] += wv * x2;
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) {
      float s = hsum(acc[r][c]);
      for (int64_t k = i; k < in; ++k) s += W::one(wr[r] + k) * xr[c][k];
      y[(t0 + c) * ldy + o0 + r] = s;
    }
}

// Threads for a matmul of T rows over a weight of `bytes`: with few rows (decode) the work is reading the weight once,
// so threads are added per 256 KiB of it: one thread streams only 5-8 GB/s (the H200 host: 8 GB/s on 1 thread, 81 on
// 16), so a thread's share takes ~40 us, several times the wake-up it costs; per MiB, 16 threads read at 2.8-4.4x
// the floor. With many rows the work is arithmetic and every thread helps once the multiply-adds pass kParallelWork.
inline int matmul_threads(int64_t T, int64_t bytes) {
  const int max = omp_get_max_threads();
  if (T >= 8) return T * (bytes / 2) > kParallelWork ? max : 1;
  return int(std::clamp<int64_t>(bytes >> 18, 1, max));
}

// Output rows in blocks of 4 are split across threads; each block walks the tokens 3 at a time, so a weight row
// is read once per 3 tokens from cache and once per call from memory.
template <class W>
__attribute__((always_inline)) inline void matmul_body(float* y, int64_t ldy, const float* x, int64_t ldx,
                                                       const typename W::T* w, int64_t T, int64_t in, int64_t out) {
  const int64_t ob = out / 4, t3 = T / 3 * 3;
  const int nt = matmul_threads(T, in * out * int64_t(sizeof(typename W::T)));
  // guided, not static: on a VM a thread that loses its vCPU for a while stalls a static split (H200 host, sala-100m
  // decode on 16 threads: static 31 tok/s, guided 70; equal on 2 to 8 threads). Each output row is computed by one
  // thread either way, so the results do not depend on the schedule.
#pragma omp parallel for schedule(guided) num_threads(nt) if (nt > 1)
  for (int64_t b = 0; b <= ob; ++b) {
    const int64_t o0 = b * 4, o1 = std::min(out, o0 + 4);
    if (o0 >= o1) continue;
    if (o1 - o0 == 4)
      for (int64_t t = 0; t < t3; t += 3) tile_4x3<W>(y, ldy, x, ldx, w, o0, t, in);
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t t = (o1 - o0 == 4 ? t3 : 0); t < T; ++t) y[t * ldy + o] = dot_w<W>(w + o * in, x + t * ldx, in);
  }
}

// target_clones adds a Haswell (AVX2 + FMA) clone picked at load time where the CPU has it (templates cannot carry
// the attribute, so one plain function per weight dtype).
#define SALA_CLONES __attribute__((target_clones("arch=haswell", "default")))
SALA_CLONES void matmul_f32(float* y, int64_t ldy, const float* x, int64_t ldx, const float* w, int64_t T, int64_t in,
                            int64_t out) {
  matmul_body<WF32>(y, ldy, x, ldx, w, T, in, out);
}
SALA_CLONES void matmul_bf16(float* y, int64_t ldy, const float* x, int64_t ldx, const uint16_t* w, int64_t T,
                             int64_t in, int64_t out) {
  matmul_body<WBF16>(y, ldy, x, ldx, w, T, in, out);
}
SALA_CLONES void matmul_f16(float* y, int64_t ldy, const float* x, int64_t ldx, const uint16_t* w, int64_t T,
                            int64_t in, int64_t out) {
  matmul_body<WF16>(y, ldy, x, ldx, w, T, in, out);
}
SALA_CLONES float dot_f32(const float* a, const float* b, int64_t n) { return dot_w<WF32>(a, b, n); }
#undef SALA_CLONES

}  // namespace

float dot(const float* a, const float* b, int64_t n) { return dot_f32(a, b, n); }

void matmul(float* y, const float* x, const float* w, int64_t T, int64_t in, int64_t out) {
  matmul_f32(y, out, x, in, w, T, in, out);
}

void matmul_w(float* y, int64_t ldy, const float* x, int64_t ldx, const void* w, DType wt, int64_t T, int64_t in,
              int64_t out) {
  switch (wt) {
    case DType::F32: return matmul_f32(y, ldy, x, ldx, static_cast<const float*>(w), T, in, out);
    case DType::BF16: return matmul_bf16(y, ldy, x, ldx, static_cast<const uint16_t*>(w), T, in, out);
    case DType::F16: return matmul_f16(y, ldy, x, ldx, static_cast<const uint16_t*>(w), T, in, out);
    default: break;
  }
  fail("matmul: weights of dtype {} are not supported (F32, BF16, F16)", dtype_name(wt));
}

void rmsnorm(float* y, const float* x, const float* w, int64_t rows, int64_t n, float eps) {
#pragma omp parallel for schedule(static) if (rows * n > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
    float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
    float* yr = y + r * n;
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * inv) * w[i];
  }
}

void silu_mul(float* out, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void mul_sigmoid(float* x, const float* g, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) x[i] *= 1.0f / (1.0f + std::exp(-g[i]));
}

void axpy(float* y, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}


}  // namespace sala::cpu
