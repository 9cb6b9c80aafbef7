// Softmax attention over a KV cache on the CPU (fp32), dense causal and InfLLM-V2 block-sparse.
// q, o: (T, Hq, D); k, v: (Tk, Hkv, D) rows of the cache; query row t has position pos0 + t and sees keys at
// positions <= pos0 + t. GQA: query head h reads kv head h / (Hq / Hkv).
#pragma once
#include <cstdint>

namespace sala::cpu {

void attention_causal(float* o, const float* q, const float* k, const float* v, int64_t T, int64_t pos0, int64_t Hq,
                      int64_t Hkv, int64_t D, float scale);

// Block-sparse causal attention: query row t of kv group g sees only keys in blocks idx[(g*T + t)*K + r]
// (block b = positions [b*block, (b+1)*block); -1 entries are skipped), and of those only positions <= pos0 + t.
void attention_block_sparse(float* o, const float* q, const float* k, const float* v, const int32_t* idx, int64_t K,
                            int64_t block, int64_t T, int64_t pos0, int64_t Hq, int64_t Hkv, int64_t D, float scale);

}  // namespace sala::cpu
