// The tensor table of a model (names and shapes as in the Hugging Face checkpoints, sala-model.md §1.3) and the
// fp32 weights the CPU backend runs on. tensor_specs() is the single description of what a checkpoint must hold:
// validation, loading, random init and saving all walk it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sala/core/dtype.h"
#include "sala/model/config.h"

namespace sala {
namespace io {
class Checkpoint;
}

enum class TensorRole : uint8_t {
  Embed, FinalNorm, LmHead,
  InNorm, PostNorm, Q, K, V, O, OGate, Z, QNorm, KNorm, ONorm, Gate, Up, Down
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  TensorRole role;
  int layer = -1;  // -1 for global tensors
  bool is_norm() const;
  int64_t numel() const;
};

std::vector<TensorSpec> tensor_specs(const ModelConfig& c);
int64_t parameter_count(const ModelConfig& c);

struct LayerWeights {
  LayerKind kind;
  std::vector<float> in_norm, post_norm;        // (hidden)
  std::vector<float> q, k, v, o;                // q (Hq*D, hidden), k/v (Hkv*D, hidden), o (hidden, Hq*D)
  std::vector<float> o_gate;                    // sparse: (hidden, hidden)
  std::vector<float> z;                         // lightning: (hidden, hidden)
  std::vector<float> q_norm, k_norm, o_norm;    // lightning: (D), (D), (Hq*D)
  std::vector<float> gate, up, down;            // (inter, hidden), (inter, hidden), (hidden, inter)
};

struct Weights {
  std::vector<float> embed;       // (vocab, hidden)
  std::vector<float> final_norm;  // (hidden)
  std::vector<float> lm_head;     // (vocab, hidden); empty when tied to embed
  std::vector<LayerWeights> layers;
  const float* head() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
  std::vector<float>& get(const TensorSpec& s);
  const std::vector<float>& get(const TensorSpec& s) const;
};

// Checks presence, dtype (a float type) and shape of every tensor; the error names the file, the tensor, the expected
// and the found. Returns the names of checkpoint tensors the model does not use (rotary caches etc.).
std::vector<std::string> validate_checkpoint(const ModelConfig& c, const io::Checkpoint& ckpt);
Weights load_weights(const ModelConfig& c, const io::Checkpoint& ckpt);
// Scans every tensor the model uses, in its stored dtype, for NaN or Inf; throws naming the file, the tensor, the
// first bad element's index and value. Call after validate_checkpoint.
void check_weights_finite(const ModelConfig& c, const io::Checkpoint& ckpt);
// Normal(0, initializer_range) matrices, ones for norms; deterministic per (seed, tensor name).
Weights random_weights(const ModelConfig& c, uint64_t seed);
void fill_random(const TensorSpec& s, float std, uint64_t seed, float* out);

// Writes config.json + safetensors (sharded above max_shard_bytes) in `dtype`.
void save_model(const ModelConfig& c, const Weights& w, const std::string& dir, DType dtype,
                uint64_t max_shard_bytes = 5ull << 30);
// Writes a random-weight checkpoint tensor by tensor, never holding more than one shard in memory (for the 9B shapes).
// progress (if set) is called after each shard with (shard done, shards, bytes written so far, total bytes).
void write_random_model(const ModelConfig& c, const std::string& dir, DType dtype, uint64_t seed,
                        uint64_t max_shard_bytes = 5ull << 30,
                        const std::function<void(size_t, size_t, uint64_t, uint64_t)>& progress = {});

}  // namespace sala
