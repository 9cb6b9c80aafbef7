// SequenceState: everything one sequence carries between forward calls (the hybrid cache).
//  - sparse (InfLLM-V2) and dense layers: full K and V, (T, Hkv, D) fp32 rows;
//  - sparse layers also K1 / K2 compressed keys with their uncompressed tails (grown as the reference grows them);
//  - lightning layers: the fp32 recurrent state (H, D, D).
// A state is tied to the config it was created for; pos counts the tokens already consumed.
#pragma once
#include <cstdint>
#include <vector>

#include "sala/backend/cpu/infllmv2.h"
#include "sala/model/config.h"

namespace sala {

struct LayerCache {
  LayerKind kind;
  int64_t kv_heads = 0, head_dim = 0;
  std::vector<float> k, v;              // (T, kv_heads, head_dim)
  cpu::CompressedKeys k1, k2;           // sparse layers only
  std::vector<float> state;             // lightning: (H, D, D)
};

struct SequenceState {
  int64_t pos = 0;      // tokens consumed
  int64_t max_len = 0;  // context limit (max_position_embeddings unless raised)
  bool poisoned = false;  // a call failed half-way: caches no longer line up with pos until reset()
  std::vector<LayerCache> layers;

  // True when this state was created for a config with the same layer kinds and head shapes.
  bool matches(const ModelConfig& c) const;

  static SequenceState create(const ModelConfig& c, int64_t max_len = 0);
  void reset();
};

}  // namespace sala
