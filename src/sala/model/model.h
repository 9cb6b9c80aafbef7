// Model: the forward pass of every layer kind sala runs, written once over the Backend ops (backend/backend.h).
// The model layer owns the layer loop, the constants (muP scales, eps, decays) and the per-call rules of the reference
// (InfLLM-V2's dense/sparse switch and stage-1 visibility, §4.9 items 1 and 4), and describes each engine step as a
// Step of several sequences; the backend owns the weights, the caches and the arithmetic.
// One call = a prompt (prefill, run in chunks) or one decode token; the call is held by the SequenceState, so the
// result of a prompt does not depend on its chunking.
// A Model is not safe for concurrent use: its steps share the backend's scratch (run steps from one thread).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "sala/backend/backend.h"
#include "sala/model/cache.h"
#include "sala/model/config.h"
#include "sala/model/rope.h"
#include "sala/model/trace.h"
#include "sala/model/weights.h"

namespace sala {
namespace io {
class Checkpoint;
}

// ALiBi slope schedule for n heads (power of two: start^(h+1), start = 2^(-2^-(log2 n - 3)); otherwise the standard
// interleave). Lightning decay per token is exp(-slope_h); slopes are not scaled by layer (§3.2).
std::vector<double> alibi_slopes(int64_t n);

struct LoadOptions {
  bool check_finite = false;  // scan every weight for NaN/Inf (check_weights_finite) before using it
  Device device = Device::CPU;
};

class Model {
 public:
  // Prompts run in chunks of this many tokens unless a chunk is given: activations stay bounded whatever the prompt.
  static constexpr int64_t kDefaultChunk = 2048;

  Model(ModelConfig c, Weights w, Device device = Device::CPU);
  static Model load(const std::string& dir, const LoadOptions& opt = {});  // config.json + safetensors, validated
  // Random weights made by the backend itself (on the GPU for CUDA: no file, no host copy), normal(0,
  // initializer_range) and ones for norms; for benchmarks. Not the stream of random_weights().
  static Model random(ModelConfig c, uint64_t seed, Device device);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  // fp32 host copies of the weights (for tests and tools; built on first use when the model was loaded from a file).
  const Weights& weights() const;
  Backend& backend() const { return *be_; }
  Device device() const { return be_->device(); }

  // Sizes the backend's cache (sequences, context, step rows) before any sequence exists; on CUDA everything is
  // allocated here, and a plan that does not fit is refused with the bytes needed and available. The default plan
  // (one sequence of max_position_embeddings tokens, kDefaultChunk rows per step) is made at load.
  void plan(const CachePlan& p);
  const CachePlan& cache_plan() const { return plan_; }
  // A sequence with its own cache slot; max_len 0 = max_position_embeddings.
  SequenceState new_state(int64_t max_len = 0) const;
  // A second sequence whose cache is a copy of st's (a snapshot to continue from, or a fork).
  SequenceState clone_state(const SequenceState& st) const;

  // The next token drawn on the backend (samples_on_device()) from the last row of an item or a prompt, so no logits
  // cross to the host.
  struct Draw {
    const SamplingParams* params = nullptr;
    uint64_t step = 0;                 // the draw's counter: (params->seed, step) picks its random stream
    std::span<const int32_t> history;  // the tokens the repetition penalty sees
    int32_t* token = nullptr;          // receives the token, or -1 when that row of logits is not finite
  };
  // A whole prompt in chunks of `chunk` tokens (0 = kDefaultChunk). Returns the logits of the last token (or of every
  // token when all_rows). progress (if set) is called after each chunk with (tokens done, total).
  std::vector<float> prefill(std::span<const int32_t> ids, SequenceState& st, int64_t chunk = 0,
                             Trace* trace = nullptr, bool all_rows = false,
                             const std::function<void(int64_t, int64_t)>& progress = {},
                             const Draw* draw = nullptr) const;
  std::vector<float> decode(int32_t id, SequenceState& st, Trace* trace = nullptr) const;
  // One decode step whose next token is drawn on the backend (samples_on_device()); -1 when the logits are not finite.
  int32_t decode_draw(int32_t id, SequenceState& st, const Draw& draw) const;

  // One engine step over several sequences: each item's rows continue its state's open call (begin_call), e.g. a
  // prefill chunk of one sequence beside single decode tokens of others. logits (if set) receives (rows, vocab): every
  // row of the item when all_rows, else its last row; draw (if set) draws the next token from the last row on the
  // backend. A trace is only taken for a step of one sequence.
  struct Item {
    SequenceState* st = nullptr;
    std::span<const int32_t> ids;
    bool all_rows = false;
    std::vector<float>* logits = nullptr;
    const Draw* draw = nullptr;
  };
  bool samples_on_device() const;  // the backend draws tokens (Draw); else sample the logits on the host
  void step(std::span<const Item> items, Trace* trace = nullptr) const;
  // Opens a call of `len` tokens at the state's position (checks the context limit); end_call closes it.
  void begin_call(SequenceState& st, int64_t len) const;
  static void end_call(SequenceState& st) { st.call = {}; }

 private:
  struct LayerHandles {
    LayerKind kind;
    Vec in_norm, post_norm, q_norm, k_norm, o_norm;
    Mat qkv;  // q | k | v (| o_gate for sparse, | z for lightning)
    Mat o, gate_up, down;
  };
  Model(ModelConfig c, std::unique_ptr<io::Checkpoint> ck, Device device);
  Model(ModelConfig c, Device device, uint64_t seed);  // random weights made by the backend
  void upload(const std::function<HostTensor(const TensorSpec&)>& source);
  void check_ids(std::span<const int32_t> ids) const;
  void check_state(const SequenceState& st) const;  // not poisoned, made by this model
  void check_item(const Item& it) const;
  void run_step(const Step& step, std::span<const Item> items, Trace* tr) const;
  void mixer(int l, const LayerHandles& L, const Act& xn, Act out, const Step& step, Trace* tr) const;

  ModelConfig cfg_;
  std::shared_ptr<Backend> be_;
  std::unique_ptr<io::Checkpoint> ckpt_;      // the mapped checkpoint the CPU backend reads weights from
  mutable std::unique_ptr<Weights> host_;     // fp32 weights the model was built from (or materialized)
  std::vector<std::vector<float>> widened_;   // F64 tensors widened to fp32 at load (the backends take F32/BF16/F16)
  Mat embed_, lm_head_;
  Vec final_norm_;
  std::vector<LayerHandles> layers_;
  RopeTables rope_dense_, rope_sparse_, rope_lightning_;
  std::vector<float> log_decay_;  // (H): -slope_h
  CachePlan plan_;
};

}  // namespace sala
