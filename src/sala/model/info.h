// What a model costs: parameters, weight bytes, and per-sequence cache memory as a function of context length
// (sala-model.md §1.2, §4.7).
#pragma once
#include <cstdint>

#include "sala/model/config.h"

namespace sala {

struct MemoryEstimate {
  int64_t params = 0;
  double weight_bytes = 0;           // at the storage dtype's size
  double kv_bytes_per_token = 0;     // K+V of sparse/dense layers
  double compressed_bytes_per_token = 0;  // K1 + K2 of sparse layers (amortised)
  double state_bytes = 0;            // lightning states, fp32, constant per sequence
  double cache_bytes(int64_t ctx) const { return (kv_bytes_per_token + compressed_bytes_per_token) * double(ctx) + state_bytes; }
};

// kv_elem_bytes: 2 for bf16 caches (as the reference), 4 for sala's fp32 CPU cache.
MemoryEstimate estimate_memory(const ModelConfig& c, double weight_elem_bytes = 2, double kv_elem_bytes = 2);

// The cost model behind every floor `sala bench` prints (docs/engine.md §floors):
//  prefill of L tokens from an empty cache: 2 x matmul weights per token (lm_head on the last row only), causal
//  attention 4 D H sum(p+1) in dense layers and in sparse layers below dense_len, above it stage-1 scoring
//  2 D H (p/16 + p/64) plus block-sparse attention 4 D H min(p+1, topk_total x block), Lightning 2 D C + 4 D^2 per
//  token per head (C = 64: intra-chunk, inter-chunk, state update);
//  decode of one token at context n, batch 1: bytes read = bf16 weights (all but the embedding table) + the keys and
//  values it attends to (every key of dense layers; compressed keys + 96 blocks of sparse ones) + Lightning state
//  read and written.
double prefill_flops(const ModelConfig& c, int64_t L);
double decode_bytes(const ModelConfig& c, int64_t context, int64_t batch = 1, double weight_elem_bytes = 2);

}  // namespace sala
