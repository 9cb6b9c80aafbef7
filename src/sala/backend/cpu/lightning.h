// Lightning attention (constant-decay simple GLA) on the CPU, fp32 state.
//   S_t = exp(g_h) S_{t-1} + k_t^T v_t ;  o_t = scale * q_t S_t        (sala-model.md §3.3)
// Two algorithms with one result: the recurrence (decode) and the chunked form (prefill),
//   O = ((Q K^T) ⊙ D) V + (Q ⊙ γ^{i+1}) S_prev,  D[i,j] = γ^{i-j} (j <= i),
//   S_new = γ^C S_prev + Σ_j γ^{C-1-j} k_j^T v_j.
// Layouts: q, k, v, o are (T, H, D) with row stride H*D (k, v already one head per query head);
// state is (H, D, D) with S[h][i][j], i over the key dim and j over the value dim.
#pragma once
#include <cstdint>

namespace sala::cpu {

void lightning_recurrent(float* o, const float* q, const float* k, const float* v, float* state,
                         const float* log_decay,  // (H): g_h = -slope_h
                         float scale, int64_t T, int64_t H, int64_t D);

void lightning_chunked(float* o, const float* q, const float* k, const float* v, float* state,
                       const float* log_decay, float scale, int64_t T, int64_t H, int64_t D, int64_t chunk);

}  // namespace sala::cpu
