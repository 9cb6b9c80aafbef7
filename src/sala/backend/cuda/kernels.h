// The CUDA kernels of the engine: raw device pointers, explicit layouts, a stream; each launcher checks its launch
// (SALA_CUDA_CHECK_LAUNCH). The CUDA backend (cuda_backend.cpp) calls them; tests/cuda/ checks each one against the
// CPU op of the same name (itself checked against tests/ref's float64 code). Layouts are those of docs/engine.md:
//
//   step rows       N tokens of S sequences, sequence s owning rows [cu_seqlens[s], cu_seqlens[s+1]); row r has
//                   absolute position pos[r] and sequence row_seq[r].
//   activations     bf16, row-major (N, width), row stride `ld` elements (a fused q|k|v|gate GEMM output is read in
//                   place: q at column 0, k at q_width, ...).
//   residual        fp32 (N, hidden).
//   KV pages        per attention layer: K and V pools bf16 [num_pages][Hkv][kPageTokens][D]; page_table[slot *
//                   pt_stride + j] is the page holding the slot's tokens [64 j, 64 j + 64).
//   compressed keys per sparse layer: K1 bf16 [num_pages][Hkv][4][D] (window w = mean of keys [16w, 16w + 32) lives
//                   in page w / 4 at index w % 4), K2 bf16 [num_pages][Hkv][D] (window w = mean of [64w, 64w + 128)
//                   lives in page w). Only complete windows exist.
//   lightning state fp32 [slot][H][D][D] per layer: state + slot * state_stride.
//   sequences       per-sequence int32 arrays on the device, S entries: slot, pos0 (first position of the rows of this
//                   step), call_len (length of the whole call the rows belong to, §4.9), flags (kSeqSparse: block
//                   selection; kSeqFresh: Lightning state starts at zero).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace sala::cuda {

using bf16 = __nv_bfloat16;

inline constexpr int kPageTokens = 64;  // = InfLLM-V2 block size; engine configs with another block size are refused
inline constexpr uint32_t kSeqSparse = 1, kSeqFresh = 2;
// LongRoPE: the sequence's call takes the long factors (its call end > RopeTables::long_from; the host decides, as it
// decides kSeqSparse, because StepRows carries the step's first position, not the call's).
inline constexpr uint32_t kSeqRopeLong = 4;

// The rows of one engine step and their sequences, all device pointers (see the layout notes above).
struct StepRows {
  int N = 0, S = 0;
  const int32_t* pos = nullptr;         // (N)
  const int32_t* row_seq = nullptr;     // (N)
  const int32_t* cu_seqlens = nullptr;  // (S + 1)
  const int32_t* slot = nullptr;        // (S)
  const int32_t* pos0 = nullptr;        // (S)
  const int32_t* call_len = nullptr;    // (S)
  const uint32_t* flags = nullptr;      // (S)
  const int32_t* page_table = nullptr;  // [slot][pt_stride]
  int pt_stride = 0;
};

// ---- elementwise --------------------------------------------------------------------------------------------------

// h[r] = table[tok[r]] * scale (fp32 residual from bf16 embeddings).
void embed(float* h, const int32_t* tok, const bf16* table, float scale, int N, int hidden, cudaStream_t s);

// If a: h[r] += a_scale * a[r] (a bf16, row stride lda). Then out[r] = bf16(rmsnorm(h[r]) * w * post_scale) with the
// mean of squares accumulated in fp32 and eps inside the sqrt, as the CPU rmsnorm. out may be null (residual only).
void add_rmsnorm(float* h, const bf16* a, int lda, float a_scale, bf16* out, int ldo, const bf16* w, float eps,
                 float post_scale, int N, int hidden, cudaStream_t s);

// Per-head RMSNorm of q and/or k (weight shared by all heads; null = no norm), then RoPE (rotate-half) at each row's
// position when inv_freq is given: angle_i = float(pos * inv_ext[i]) * inv_freq[i] (inv_ext null: pos * inv_freq[i]),
// cos/sin computed in double and scaled by mscale. LongRoPE: inv_ext holds two rows (short, long); a row uses the
// long one when its sequence's flags hold kSeqRopeLong. In place on x (N rows, stride ld): q heads at column
// q_off (Hq of them), k heads at k_off (Hkv), each D wide (D even, D <= 256).
struct RopeArgs {
  const float* inv_freq = nullptr;  // (D/2) or null: no rotation
  const float* inv_ext = nullptr;   // (2, D/2) or null
  float mscale = 1.0f;
};
void qk_norm_rope(bf16* x, int ld, int q_off, int Hq, int k_off, int Hkv, int D, const bf16* q_norm,
                  const bf16* k_norm, float eps, const RopeArgs& rope, const StepRows& rows, cudaStream_t s);

// out[r][i] = bf16(silu(gu[r][i]) * gu[r][inter + i]); gu: (N, 2 inter) bf16 (the fused gate|up GEMM output).
void silu_mul(bf16* out, const bf16* gu, int N, int inter, cudaStream_t s);
// The same over a row-interleaved gate|up product: out[r][i] = bf16(silu(gu[r][2i]) * gu[r][2i + 1]).
void silu_mul_pairs(bf16* out, const bf16* gu, int N, int inter, cudaStream_t s);

// x[r][i] = bf16(x[r][i] * sigmoid(g[r][i])) for i < width (the output gates o_gate and z).
void mul_sigmoid(bf16* x, int ldx, const bf16* g, int ldg, int N, int width, cudaStream_t s);

// RMSNorm over the whole row (Lightning's output norm over H*D channels), in place, weight bf16. With a gate g
// (ldg >= width), then x *= sigmoid(g) in the same pass: bitwise rmsnorm_rows followed by mul_sigmoid (the normed
// value is rounded to bf16 before the gate, as the store between the two ops rounds it).
void rmsnorm_rows(bf16* x, int ldx, const bf16* w, float eps, int N, int width, cudaStream_t s,
                  const bf16* g = nullptr, int ldg = 0);

// ---- Lightning (constant-decay linear attention, fp32 state) -----------------------------------------------------

// Every sequence of the step: S_h <- exp(g_h) S_h + k^T v per token, o = scale * q S_h, chunked (64 tokens: intra-chunk
// masked decay matmul + inter-chunk q S, state carried in on-chip memory across the sequence's chunks, never one state
// per chunk in HBM). q, k, v: bf16 rows (stride ld; q has H heads at q_off, k and v Hkv heads at k_off / v_off, head
// h reads kv head h / (H / Hkv)). o: bf16 (N, H*D) stride ldo. State of sequence s at state + slot[s] * state_stride,
// zeroed first when its flags hold kSeqFresh. Sequences with one row take the same path (a decode step).
void lightning(bf16* o, int ldo, const bf16* x, int ld, int q_off, int k_off, int v_off, float* state,
               int64_t state_stride, const float* log_decay, float scale, int H, int Hkv, int D, const StepRows& rows,
               cudaStream_t s);

// ---- paged KV, InfLLM-V2, attention ------------------------------------------------------------------------------

// Writes each row's k and v (x at k_off / v_off, Hkv heads of D) into its sequence's pages at its position, then
// computes every K1 / K2 window that the new rows complete (mean of the bf16 keys in the pages, fp32 sums). k1/k2
// null: a dense layer (no compressed keys).
void kv_append(bf16* k_pages, bf16* v_pages, bf16* k1, bf16* k2, const bf16* x, int ld, int k_off, int v_off, int Hkv,
               int D, const StepRows& rows, cudaStream_t s);

struct SelectArgs {
  int block = 64, stride = 16;       // K2 stride = 4 stride
  int topk_total = 96, local_blocks = 32, init_blocks = 1;
  float scale = 0;                   // 1/sqrt(D)
  // stage-1 kernel version (tests, the kernel lab): 1 / 2 mma.sync with 4- / 16-row CTAs, 3 / 4 the same on wgmma;
  // 0: the launcher's choice
  int stage1_version = 0;
};
// InfLLM-V2 block selection for the rows of sparse sequences (others are left untouched): stage-1 scores of each
// query head against the visible K1 windows with the K2 log-sum-exp (stage1_visible_windows, the §4.9 rules), summed
// over the heads of each KV group, max-pooled onto blocks, init and local blocks forced, top topk_total (ties to the
// lower block), ascending, -1 padded. idx: (N, Hkv, topk_total). q: bf16 rows at q_off (Hq heads). max_ctx: an
// upper bound on pos + 1 over the step's rows (sizes the grid and the block-score rows). workspace, 16-byte aligned:
// select_workspace_bytes(N, S, Hq, Hkv, max_ctx) bytes, enough for every step of at most N rows and that max_ctx
// (fp32 block scores (N, Hkv, ceil(max_ctx / 64)) + K2 lse partials). Needs block == 64, stride == 16 (the K1/K2
// page layout), Hq / Hkv <= 16, D 64 or 128.
size_t select_workspace_bytes(int N, int S, int Hq, int Hkv, int max_ctx);
void infllmv2_select(int32_t* idx, const bf16* x, int ld, int q_off, int Hq, int Hkv, int D, const bf16* k1,
                     const bf16* k2, const SelectArgs& a, int max_ctx, const StepRows& rows, void* workspace,
                     cudaStream_t s);

// Softmax attention of each row's Hq query heads over its sequence's keys in the pages: causal over [0, pos] for dense
// sequences; for sparse ones only the blocks in idx (row's Hkv lists, keys <= pos). The 16 (Hq/Hkv) query heads of a
// KV group share the key tiles (they form the M dimension of the matrix unit). o: bf16 (N, Hq*D) stride ldo.
// idx null: every sequence is dense. max_ctx: an upper bound on pos + 1 over the step's rows (the tighter, the fewer
// idle KV splits). workspace, 16-byte aligned: attention_workspace_bytes(N, S, Hq, Hkv, D, max_ctx) bytes, enough
// for every step of at most N rows (split-KV partials, a few tens of MiB at most). D 64 or 128.
size_t attention_workspace_bytes(int N, int S, int Hq, int Hkv, int D, int max_ctx);
void attention(bf16* o, int ldo, const bf16* x, int ld, int q_off, int Hq, int Hkv, int D, const bf16* k_pages,
               const bf16* v_pages, const int32_t* idx, int topk_total, float scale, int max_ctx,
               const StepRows& rows, void* workspace, cudaStream_t s);

// ---- sampling ------------------------------------------------------------------------------------------------------

struct SampleArgs {
  float temperature = 0;  // <= 0: greedy (lowest id on ties)
  int top_k = 0;
  float top_p = 1, min_p = 0, repetition_penalty = 1;
  uint64_t seed = 0, step = 0;  // the draw of row r uses the counter-based stream (seed, step, r)
};
// One token per logits row (rows, V) fp32, Hugging Face's order: repetition penalty over history (row r at
// history + r * hist_ld, -1 padded, length hist_len; hist_ld 0: one history for all rows), temperature, top-k,
// top-p, min-p, draw. workspace: sample_workspace_bytes(). A row holding NaN or +Inf gives -1 (-Inf: a
// masked token).
size_t sample_workspace_bytes(int rows, int V);
void sample(int32_t* out, float* logits, int rows, int V, const int32_t* history, int hist_len, int hist_ld,
            const SampleArgs& a, void* workspace, cudaStream_t s);

}  // namespace sala::cuda
