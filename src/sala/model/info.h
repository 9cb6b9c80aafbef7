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

}  // namespace sala
