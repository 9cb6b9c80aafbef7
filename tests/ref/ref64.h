// Plain float64 scalar reference ("oracle") of the MiniCPM-SALA attention math.
//
// Written from the specification only (shared/research/sala-model.md §3, §4 and the exact
// rules of §4.9), independently of src/sala/model and src/sala/backend. Everything is
// double precision, loops are naive, and no attempt is made to be fast.
//
// Layout conventions: every tensor is a flat, row-major std::vector<double>; the shape of
// each parameter is written next to it, e.g. `q: [T][H][D]` means element (t, h, d) lives at
// q[(t * H + h) * D + d]. Shapes are checked; a mismatch throws std::invalid_argument.
#pragma once

#include <vector>

namespace sala::ref {

// ------------------------------------------------------------------------------------------
// Lightning (Simple-GLA with constant per-head ALiBi decay), §3
// ------------------------------------------------------------------------------------------

// ALiBi slope schedule, returns [n_heads].
// Power-of-2 H: start = 2^(-2^-(log2 H - 3)), slope_h = start^(h+1).
// Other H (standard ALiBi interleave): slopes(c) ++ slopes(2c)[0::2][: H - c], c = largest
// power of 2 <= H.
std::vector<double> alibi_slopes(int n_heads);

// Per-token decay gamma_h = exp(-slope_h). slopes: [H] -> returns [H].
std::vector<double> lightning_decays(const std::vector<double>& slopes);

// Recurrent Simple-GLA. For t = 0..T-1 and every head h:
//   S_h = gamma_h * S_h + k_t^T v_t        (S_h[i][j] += k_t[i] * v_t[j])
//   o_t = scale * q_t S_h                  (o_t[j] = scale * sum_i q_t[i] * S_h[i][j])
// q, k, v: [T][H][D]; slopes: [H] (gamma_h = exp(-slopes[h]));
// state: [H][D][D] in/out, state[(h*D + i)*D + j] = S_h[i][j] (i: k-dim, j: v-dim);
//        an empty vector is treated as the zero state and resized.
// Returns o: [T][H][D].
std::vector<double> lightning_recurrent(const std::vector<double>& q, const std::vector<double>& k,
                                        const std::vector<double>& v, int T, int H, int D,
                                        const std::vector<double>& slopes, double scale,
                                        std::vector<double>& state);

// ------------------------------------------------------------------------------------------
// Small building blocks
// ------------------------------------------------------------------------------------------

// RMSNorm on rows of length n: y = x / sqrt(mean(x^2) + eps) * w.
// x: [rows][n] (x.size() must be a multiple of n); w: [n]. Returns [rows][n].
std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& w, double eps,
                            int n);

// NeoX / rotate_half RoPE over the full head dim D (D even). Pairs (i, i + D/2),
// inv_freq_i = theta^(-2i/D), angle = positions[t] * inv_freq_i:
//   y[i]       = x[i] cos - x[i+D/2] sin
//   y[i + D/2] = x[i+D/2] cos + x[i] sin
// x: [T][H][D]; positions: [T]. Returns [T][H][D].
std::vector<double> rope_neox(const std::vector<double>& x, int T, int H, int D,
                              const std::vector<int>& positions, double theta);

// ------------------------------------------------------------------------------------------
// Dense causal softmax attention (GQA)
// ------------------------------------------------------------------------------------------

// Query row t has absolute position q_pos0 + t and sees keys j = 0 .. q_pos0 + t.
// Query head h uses kv head h / (Hq / Hkv). Requires Tk >= q_pos0 + Tq, Hq % Hkv == 0.
// q: [Tq][Hq][D]; k, v: [Tk][Hkv][D]. Returns o: [Tq][Hq][D].
std::vector<double> dense_attention(const std::vector<double>& q, int Tq, int Hq,
                                    const std::vector<double>& k, const std::vector<double>& v,
                                    int Tk, int Hkv, int D, int q_pos0, double scale);

// ------------------------------------------------------------------------------------------
// InfLLM-V2, §4.3 - §4.6 and §4.9
// ------------------------------------------------------------------------------------------

// Number of mean-pooled windows: L >= kernel ? (L - kernel) / stride + 1 : 0.
int num_compressed(int L, int kernel, int stride);

// Mean pooling of keys: out[i] = mean(k[i*stride : i*stride + kernel]).
// k: [L][Hkv][D]. Returns [N][Hkv][D], N = num_compressed(L, kernel, stride).
std::vector<double> compress_keys(const std::vector<double>& k, int L, int Hkv, int D, int kernel,
                                  int stride);

// LITERAL stage-1 causal visibility rule of the kernel (§4.9 item 1), prefill call:
//   max(0, floor((t+1)/s) - 1 + N - trunc((Lq - (s-1)) / s))
// with C-style truncation toward zero. t: row index inside the call, Lq: rows in the call,
// N: total number of compressed windows, s: stride (16 for K1, 64 for K2). Not clamped to N.
int stage1_visible_kernel_formula(int t, int Lq, int N, int stride);

// Sparse configuration (defaults = released sparse_config).
struct SparseParams {
    int kernel_size = 32;   // K1 window; K2 window = 4 * kernel_size
    int kernel_stride = 16; // K1 stride; K2 stride = 4 * kernel_stride
    int block_size = 64;    // B; must be a multiple of kernel_stride
    int topk = 64;          // free budget; total selected per row = topk + window_size / block_size
    int window_size = 2048; // local window; forced blocks q_blk - W/B .. q_blk
    int init_blocks = 1;    // forced blocks 0 .. init_blocks - 1
};

// Stage 1 (§4.4 + §4.9 item 1). Two modes:
//  * prefill (decode == false): a single call with no cache, Tq == L, row t at position t;
//    visible counts n1/n2 from stage1_visible_kernel_formula (strides s and 4s, N = totals),
//    clamped to the totals;
//  * decode (decode == true): Tq == 1, the row is at position L - 1, all windows visible.
// For row t, kv head g: lse_h = logsumexp_{j<n2}(scale q_h.K2[j]) for each query head h of
// group g (h / (Hq/Hkv) == g); score[i] = sum_h exp(scale q_h.K1[i] - lse_h) for i < n1,
// 0 for i >= n1; the whole row is 0 if n2 == 0.
// q: [Tq][Hq][D]; k: [L][Hkv][D] (full key sequence, positions 0..L-1).
// Returns [Hkv][Tq][N1], N1 = num_compressed(L, kernel_size, kernel_stride).
std::vector<double> infllmv2_stage1_scores(const std::vector<double>& q, int Tq, int Hq,
                                           const std::vector<double>& k, int L, int Hkv, int D,
                                           double scale, const SparseParams& p, bool decode);

// Block scores exactly as seen by top-k (§4.5, §4.9 item 3): max pooling of the stage-1 scores
// with kernel B/s + 1, step B/s, padding 1 (block b pools windows [b*B/s - 1, b*B/s + B/s]
// intersected with [0, N1); -inf if empty), then +inf for blocks [0, init_blocks) and
// [q_blk - W/B, q_blk], q_blk = position / B. Number of blocks nb = ceil(L / B).
// Same arguments as infllmv2_stage1_scores. Returns [Hkv][Tq][nb].
std::vector<double> infllmv2_block_scores(const std::vector<double>& q, int Tq, int Hq,
                                          const std::vector<double>& k, int L, int Hkv, int D,
                                          double scale, const SparseParams& p, bool decode);

// Indices of the min(kk, scores.size()) largest scores, ordered by (score descending,
// index ascending), i.e. ties break toward the LOWER index (§4.9 item 2). scores: [n].
std::vector<int> topk_lower_index(const std::vector<double>& scores, int kk);

// Block selection of one sparse layer (§4.5, §4.9). Same modes/arguments as
// infllmv2_stage1_scores. Per (kv head, row): top (topk + W/B) blocks of
// infllmv2_block_scores (ties -> lower index; all blocks if fewer exist), sorted ascending,
// indices > q_blk replaced by -1, padded with -1 to topk + W/B entries.
// Returns idx: [Hkv][Tq][topk + W/B].
std::vector<int> infllmv2_select(const std::vector<double>& q, int Tq, int Hq,
                                 const std::vector<double>& k, int L, int Hkv, int D, double scale,
                                 const SparseParams& p, bool decode);

// Same as above with the parameters spelled out (order of the brief).
std::vector<int> infllmv2_select(const std::vector<double>& q, int Tq, int Hq,
                                 const std::vector<double>& k, int L, int Hkv, int D, double scale,
                                 int kernel_size, int kernel_stride, int block_size, int topk,
                                 int window_size, int init_blocks, bool decode);

// Block-sparse causal attention (stage 2). Query row t (position q_pos0 + t), query head h,
// kv head g = h / (Hq/Hkv) attends to the keys j with j / B in {idx[g][t][*]} (entries -1
// ignored, duplicates harmless) and j <= q_pos0 + t. A row with no visible key yields 0.
// q: [Tq][Hq][D]; k, v: [Tk][Hkv][D]; idx: [Hkv][Tq][K] (K = idx.size() / (Hkv*Tq)).
// Returns o: [Tq][Hq][D].
std::vector<double> block_sparse_attention(const std::vector<double>& q, int Tq, int Hq,
                                           const std::vector<double>& k,
                                           const std::vector<double>& v, int Tk, int Hkv, int D,
                                           const std::vector<int>& idx, int q_pos0, double scale,
                                           int block_size);

// Whole sparse stage: infllmv2_select + block_sparse_attention (q_pos0 = 0 for prefill,
// L - 1 for decode). q: [Tq][Hq][D]; k, v: [L][Hkv][D]. Returns o: [Tq][Hq][D].
std::vector<double> infllmv2_attention(const std::vector<double>& q, int Tq, int Hq,
                                       const std::vector<double>& k, const std::vector<double>& v,
                                       int L, int Hkv, int D, double scale, const SparseParams& p,
                                       bool decode);

} // namespace sala::ref
