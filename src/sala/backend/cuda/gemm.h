// sala::cuda::Gemm: the dense projections of the CUDA backend on cuBLASLt. y (N, out) = x (N, in) · w^T with w
// row-major (out, in) as in Hugging Face checkpoints (torch.nn.Linear), x and y row-major with row strides ldx / ldy
// (a y may be a column slice of a wider buffer), bf16 operands, fp32 accumulation; the output is bf16 (activations)
// or fp32 (the logits). One cuBLASLt handle and one workspace per object; a matmul descriptor, the three layouts and
// the heuristic's algorithm are built once per shape (sizes, strides, output type, pointer alignments) and cached.
// Products of at most 64 rows (decode: bound by the weight read) are tuned at their first call outside a graph
// capture: the heuristic's candidates (up to 8) are timed on the call's own operands and the fastest is kept (the
// call synchronises its stream once for that); the result is the chosen algorithm's, computed last. The choice is
// shared by every Gemm of the process (a second backend runs the same kernels, so its products agree bitwise).
// That timing also runs each version of sala's own gemv (below) that applies (N <= kGemvMaxRows or
// kGemvMmaMaxRows, 16-byte aligned rows), so a decode product takes whichever is fastest on this card for this shape.
// Every cuBLASLt status is checked: a failure throws sala::Error naming the call and the shape.
// Not for concurrent use from several host threads or streams (the workspace is shared).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>

namespace sala::cuda {

inline constexpr int kGemvMaxRows = 8;      // versions 1-3 (CUDA cores)
inline constexpr int kGemvMmaMaxRows = 32;  // versions 4-12 (tensor cores)

// gemv.cu, gemv_mma.cu: y (N, out) = x (N, in) · w^T streaming w once (the decode product). y is bf16, or fp32 when
// f32. Requires gemv_supported for the version (else throws).
// version (kernel lab): 1 a row per warp, 2 two rows per warp (loads interleaved), 3 four warps per row (N <= 8, in a
// multiple of 8); 4-12 tensor cores over CTA tiles of 64 x 128 (4-6), 32 x 256 (7-9) or 128 x 128 (10-12) rows x k a
// stage, split K across a cluster to fill the SMs (4, 7, 10), half that split (5, 8, 11) or a quarter (6, 9, 12)
// (N <= 32, in a multiple of 32). Versions 10-12 join Gemm's race only with SALA_GEMV_MMA=2 until they have run on
// a GPU (gemm.cpp).
inline constexpr int kGemvVersions = 12;
bool gemv_supported(const void* x, int ldx, const void* w, int N, int in, int version = 1);
void gemv(void* y, bool f32, int ldy, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N, int in,
          int out, cudaStream_t s, int version = 1);
// The SwiGLU product: w is a fused gate|up matrix (out rows, gate rows first), and m (N, out / 2) gets
// silu(gate) * up, bitwise what gemv (same version) into a bf16 buffer followed by silu_mul stores. pairs: w's rows
// are interleaved (gate 0, up 0, gate 1, up 1, ...; silu_mul_pairs is the unfused form).
void gemv_silu(__nv_bfloat16* m, int ldm, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N, int in,
               int out, cudaStream_t s, int version = 1, bool pairs = false);
namespace detail {
// versions 4-12 (gemv_mma.cu); silu: 0 plain, 1 gemv_silu, 2 gemv_silu over interleaved rows
void gemv_mma(void* y, bool f32, int ldy, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N, int in,
              int out, int silu, int version, cudaStream_t s);
}  // namespace detail

class Gemm {
 public:
  // tune_small = false: the heuristic's first algorithm for every shape; use_gemv = false: cuBLASLt only (benches).
  explicit Gemm(size_t workspace_bytes = size_t(32) << 20, bool tune_small = true, bool use_gemv = true);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // y (N, out) bf16 = x (N, in) · w^T; ldy >= out, ldx >= in. N == 0 does nothing.
  void matmul(__nv_bfloat16* y, int ldy, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N, int in,
              int out, cudaStream_t s);
  // The same product with an fp32 output (lm_head: logits).
  void matmul_f32(float* y, int ldy, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N, int in, int out,
                  cudaStream_t s);

  // SwiGLU: m (N, out / 2) = silu(gate) * up, gate | up = x · w^T (w: the fused gate|up matrix, out rows; pairs: its
  // rows interleaved). Tuned as its own shape: gemv_silu where it wins, else the cuBLASLt product into gu (N, out;
  // contiguous rows) and silu_mul (silu_mul_pairs).
  void matmul_silu(__nv_bfloat16* m, __nv_bfloat16* gu, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N,
                   int in, int out, cudaStream_t s, bool pairs = false);

  size_t cached_plans() const;  // shapes planned so far (tests)

 private:
  struct Impl;
  // silu: y is the gate|up buffer and silu the SwiGLU output (matmul_silu); nullptr for a plain product
  void run(void* y, bool f32, int ldy, const void* x, int ldx, const void* w, int N, int in, int out, cudaStream_t s,
           __nv_bfloat16* silu = nullptr, bool pairs = false);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sala::cuda
