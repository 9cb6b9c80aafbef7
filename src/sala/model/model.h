// Model: the forward pass of every layer kind sala runs, written once; backends provide the ops.
// One call = a prompt (prefill, possibly split into chunks) or one decode token. Semantics that depend on the call
// (InfLLM-V2's dense/sparse switch and stage-1 visibility, §4.9 items 1 and 4) take the whole call, so the result of a
// prompt does not depend on its chunking.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "sala/model/cache.h"
#include "sala/model/config.h"
#include "sala/model/rope.h"
#include "sala/model/trace.h"
#include "sala/model/weights.h"

namespace sala {

// ALiBi slope schedule for n heads (power of two: start^(h+1), start = 2^(-2^-(log2 n - 3)); otherwise the standard
// interleave). Lightning decay per token is exp(-slope_h); slopes are not scaled by layer (§3.2).
std::vector<double> alibi_slopes(int64_t n);

struct CallSpec {
  int64_t pos0 = 0;  // position of the call's first token
  int64_t len = 0;   // tokens in the whole call
  int64_t end() const { return pos0 + len; }
};

struct LoadOptions {
  bool check_finite = false;  // scan every weight for NaN/Inf (check_weights_finite) before using it
};

class Model {
 public:
  Model(ModelConfig c, Weights w);
  static Model load(const std::string& dir, const LoadOptions& opt = {});  // config.json + safetensors, validated

  const ModelConfig& config() const { return cfg_; }
  const Weights& weights() const { return w_; }
  SequenceState new_state(int64_t max_len = 0) const { return SequenceState::create(cfg_, max_len); }

  // Runs ids at positions st.pos.. as part of `call`, appending to st. logits (if given) receives (rows, vocab): every
  // row when all_rows, else the last row only.
  void forward(std::span<const int32_t> ids, SequenceState& st, const CallSpec& call, std::vector<float>* logits,
               bool all_rows, Trace* trace = nullptr) const;

  // A whole prompt in chunks of `chunk` tokens (0 = one chunk). Returns the logits of the last token (or of every
  // token when all_rows).
  // progress (if set) is called after each chunk with (tokens done, total).
  std::vector<float> prefill(std::span<const int32_t> ids, SequenceState& st, int64_t chunk = 0,
                             Trace* trace = nullptr, bool all_rows = false,
                             const std::function<void(int64_t, int64_t)>& progress = {}) const;
  std::vector<float> decode(int32_t id, SequenceState& st, Trace* trace = nullptr) const;

 private:
  struct Qkv {
    std::vector<float> q, k, v;  // (n, Hq, D), (n, Hkv, D), (n, Hkv, D)
  };
  // q, k, v projections; per-head RMSNorm of q and k when `norm`; RoPE when given; traced as L{l}.q/k/v.
  Qkv project_qkv(const float* x, int64_t n, const LayerWeights& L, int64_t Hq, int64_t Hkv, int64_t D, bool norm,
                  const Rope* rope, int64_t pos0, int64_t seq_len, Trace* tr, const std::string& tag) const;
  void check_ids(std::span<const int32_t> ids) const;
  void run_layers(std::span<const int32_t> ids, SequenceState& st, const CallSpec& call, std::vector<float>* logits,
                  bool all_rows, Trace* tr) const;
  void sparse_mixer(float* out, const float* x, int64_t n, const LayerWeights& L, LayerCache& C, int64_t pos0,
                    const CallSpec& call, Trace* tr, const std::string& tag) const;
  void lightning_mixer(float* out, const float* x, int64_t n, const LayerWeights& L, LayerCache& C, int64_t pos0,
                       const CallSpec& call, Trace* tr, const std::string& tag) const;
  void dense_mixer(float* out, const float* x, int64_t n, const LayerWeights& L, LayerCache& C, int64_t pos0,
                   const CallSpec& call, Trace* tr, const std::string& tag) const;

  ModelConfig cfg_;
  Weights w_;
  Rope rope_dense_, rope_sparse_, rope_lightning_;
  std::vector<float> log_decay_;  // (H): -slope_h
};

}  // namespace sala
