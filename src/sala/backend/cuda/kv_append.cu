// kv_append (kernels.h): the step's k and v rows into the paged cache, then the K1 / K2 windows they complete.
//   1. one CTA per row copies its Hkv*D keys and values into page page_table[slot][pos / 64] at pos % 64.
//   2. one CTA per (row, tier) whose position closes a window (K1: pos = 16 w + 31, K2: pos = 64 w + 127) sums the
//      window's bf16 keys from the pages in fp32, key by key in position order, and stores bf16(sum / kernel): the
//      same additions in the same order as cpu::CompressedKeys::append, so the fp32 means are bit-identical to the
//      CPU's on the same bf16 keys. Runs after (1) on the stream, so keys of this step's rows are in place; windows
//      reaching back into earlier steps read the keys those steps wrote.
// Only complete windows are written; the pools' other entries are left as they are.
#include <cstdint>

#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/launch.cuh"

namespace sala::cuda {

namespace {

constexpr int kThreads = 128;

template <int VEC>
__global__ void __launch_bounds__(kThreads) kv_write_kernel(bf16* __restrict__ kp, bf16* __restrict__ vp,
                                                            const bf16* __restrict__ x, int ld, int k_off, int v_off,
                                                            int Hkv, int D, StepRows rows) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  const int r = blockIdx.x;
  const int s = rows.row_seq[r], p = rows.pos[r];
  const int page = rows.page_table[size_t(rows.slot[s]) * rows.pt_stride + p / kPageTokens];
  const int within = p % kPageTokens;
  const bf16* xr = x + size_t(r) * ld;
  const int n = Hkv * D;
  for (int e = threadIdx.x * VEC; e < n; e += kThreads * VEC) {
    const int h = e / D, d = e % D;  // VEC divides D, so a vector never straddles two heads
    const size_t dst = ((size_t(page) * Hkv + h) * kPageTokens + within) * D + d;
    if constexpr (VEC == 8) {
      *reinterpret_cast<uint4*>(kp + dst) = *reinterpret_cast<const uint4*>(xr + k_off + e);
      *reinterpret_cast<uint4*>(vp + dst) = *reinterpret_cast<const uint4*>(xr + v_off + e);
    } else {
      kp[dst] = xr[k_off + e];
      vp[dst] = xr[v_off + e];
    }
  }
}

// blockIdx.y = 0: K1 (kernel 32, stride 16, 4 windows per page), 1: K2 (kernel 128, stride 64, 1 per page).
__global__ void __launch_bounds__(kThreads) kv_compress_kernel(bf16* __restrict__ k1, bf16* __restrict__ k2,
                                                               const bf16* __restrict__ kp, int Hkv, int D,
                                                               StepRows rows) {
  detail::pdl_begin();  // launch.cuh: nothing of the stream is touched before it
  const int r = blockIdx.x, tier = blockIdx.y;
  const int p = rows.pos[r];
  const int stride = tier == 0 ? 16 : 64, kernel = 2 * stride;
  if (p + 1 < kernel || (p + 1) % stride != 0) return;  // this row closes no window of this tier
  const int w = (p + 1 - kernel) / stride;
  const int first = w * stride;
  const int* pt = rows.page_table + size_t(rows.slot[rows.row_seq[r]]) * rows.pt_stride;
  const int n = Hkv * D;
  for (int e = threadIdx.x; e < n; e += kThreads) {
    const int h = e / D, d = e % D;
    float sum = 0.f;
    for (int j = 0; j < kernel; j += kPageTokens) {  // kernel is 32 or a multiple of 64: page-aligned runs
      const int q0 = first + j;
      const int page = pt[q0 / kPageTokens];
      const bf16* src = kp + ((size_t(page) * Hkv + h) * kPageTokens + q0 % kPageTokens) * D + d;
      const int len = kernel - j < kPageTokens ? kernel - j : kPageTokens;
      // K1 windows start at multiples of 16 and may cross one page boundary (start 48 in a page)
      const int in_page = kPageTokens - q0 % kPageTokens;
      if (len <= in_page) {
        for (int t = 0; t < len; ++t) sum += __bfloat162float(src[size_t(t) * D]);
      } else {
        for (int t = 0; t < in_page; ++t) sum += __bfloat162float(src[size_t(t) * D]);
        const int page2 = pt[q0 / kPageTokens + 1];
        const bf16* src2 = kp + ((size_t(page2) * Hkv + h) * kPageTokens) * D + d;
        for (int t = 0; t < len - in_page; ++t) sum += __bfloat162float(src2[size_t(t) * D]);
      }
    }
    const bf16 mean = __float2bfloat16_rn(sum / float(kernel));
    if (tier == 0)
      k1[((size_t(pt[w / 4]) * Hkv + h) * 4 + w % 4) * D + d] = mean;
    else
      k2[(size_t(pt[w]) * Hkv + h) * D + d] = mean;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void kv_append(bf16* k_pages, bf16* v_pages, bf16* k1, bf16* k2, const bf16* x, int ld, int k_off, int v_off, int Hkv,
               int D, const StepRows& rows, cudaStream_t s) {
  SALA_CUDA_REQUIRE(Hkv > 0 && D > 0 && rows.N >= 0, "kv_append");
  SALA_CUDA_REQUIRE((k1 == nullptr) == (k2 == nullptr), "kv_append");
  if (rows.N == 0) return;
  const bool vec = D % 8 == 0 && ld % 8 == 0 && k_off % 8 == 0 && v_off % 8 == 0 && aligned16(x) &&
                   aligned16(k_pages) && aligned16(v_pages);
  if (vec)
    detail::launch_pdl(detail::kPdlKvAppend, kv_write_kernel<8>, rows.N, kThreads, 0, s, k_pages, v_pages, x, ld, k_off,
                       v_off, Hkv, D, rows);
  else
    detail::launch_pdl(detail::kPdlKvAppend, kv_write_kernel<1>, rows.N, kThreads, 0, s, k_pages, v_pages, x, ld, k_off,
                       v_off, Hkv, D, rows);
  SALA_CUDA_CHECK_LAUNCH();
  if (k1) {
    detail::launch_pdl(detail::kPdlKvAppend, kv_compress_kernel, dim3(rows.N, 2), kThreads, 0, s, k1, k2, k_pages, Hkv,
                       D, rows);
    SALA_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace sala::cuda
