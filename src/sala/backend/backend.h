// Backend: the ops the one forward pass (model/model.cpp) is written against. The model layer keeps the layer loop,
// the constants and the per-call rules of the reference (§4.9) and describes each engine step as a Step; a backend
// owns the weights it was given, the activation storage, the cache of every sequence (KV, compressed keys, Lightning
// state) and the math. The CPU backend is the exact fp32 oracle; the CUDA backend computes in bf16 with fp32
// accumulation and fp32 Lightning state (docs/engine.md).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sala/core/dtype.h"
#include "sala/core/sampling.h"

namespace sala {

enum class Device : uint8_t { CPU, CUDA };
const char* device_name(Device d);  // "cpu", "cuda"

// A 2-D activation view (rows, cols) with row stride ld, in the backend's memory (host for CPU, device for CUDA).
// Views own nothing; cols_view selects a column range (a q|k|v|gate projection read in place).
struct Act {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, ld = 0;
  Act cols_view(int64_t c0, int64_t n) const {
    Act a = *this;
    a.data = static_cast<char*>(data) + size_t(c0) * dtype_size(dtype);
    a.cols = n;
    return a;
  }
  Act rows_view(int64_t r0, int64_t n) const {
    Act a = *this;
    a.data = static_cast<char*>(data) + size_t(r0 * ld) * dtype_size(dtype);
    a.rows = n;
    return a;
  }
};

// A stored tensor on the host (a view into a mapped checkpoint or into fp32 vectors), handed to the backend at load.
// data == nullptr asks the backend to make it: normal(0, random_std) from random_seed, or ones when random_std is 0
// (random-weight models built on the device, for benchmarks: no file, no host copy of 9B weights).
struct HostTensor {
  std::string name;
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;  // a vector has rows = 1
  float random_std = 0;
  uint64_t random_seed = 0;
};

// Measured ceilings of a device, the denominators of every floor sala prints.
struct Peaks {
  double matmul_tflops = 0;  // dense matmul rate of the backend's own GEMM (bf16 on CUDA, fp32 FMA on CPU)
  double copy_gbs = 0;       // device memory bandwidth, bytes read + written per second / 1e9
  std::string how;           // what was measured
};

// Handles to weights the backend holds. A matrix is (out, in) as in torch.nn.Linear (y = x w^T); a fused matrix is its
// parts stacked along out (q|k|v|gate, gate|up): the CPU backend keeps the parts apart (one matmul each, so the
// results are bitwise those of separate projections), the CUDA backend stores one fused matrix.
struct Mat {
  int id = -1;
  int64_t out = 0, in = 0;
  explicit operator bool() const { return id >= 0; }
};
struct Vec {
  int id = -1;
  int64_t n = 0;
  explicit operator bool() const { return id >= 0; }
};

// One sequence of an engine step: rows [row0, row0 + n) of the step, at positions pos0 .. pos0 + n - 1, part of the
// call [call_pos0, call_pos0 + call_len) that the sequence state holds (§4.9: stage-1 visibility and the dense/sparse
// switch are decided per call).
struct StepSeq {
  int slot = -1;  // cache slot of the sequence
  int64_t row0 = 0, n = 0, pos0 = 0;
  int64_t call_pos0 = 0, call_len = 0;
  bool sparse = false;  // InfLLM-V2 block selection (call end >= dense_len)
  bool fresh = false;   // the sequence's Lightning state starts at zero (pos0 == 0)
  bool rope_long = false;  // LongRoPE's long factors (call end > RopeTables::long_from)
};

struct Step {
  std::vector<int32_t> tokens;  // (N)
  std::vector<int32_t> pos;     // (N) absolute positions
  std::vector<int32_t> row_seq; // (N) index into seqs
  std::vector<StepSeq> seqs;
  // The ops from begin_step to end_replayable are a function of the step's shape (rows, sequences, whether any is
  // sparse) and of data the backend uploads (tokens, positions, page tables): a backend may record them once and
  // replay them (CUDA graphs for decode steps). False for traced steps, which read activations in between.
  bool replayable = false;
  int64_t rows() const { return int64_t(tokens.size()); }
  bool any_sparse() const {
    for (const auto& s : seqs)
      if (s.sparse) return true;
    return false;
  }
};

// What the cache of a backend is sized for (planned before anything is allocated).
struct CachePlan {
  int64_t max_seqs = 1;        // sequences held at once
  int64_t max_tokens = 0;      // tokens of one sequence at most (its context limit)
  int64_t total_tokens = 0;    // tokens of all sequences together at most (0 = max_seqs * max_tokens)
  int64_t max_step_rows = 0;   // rows of one engine step at most (chunk size x sequences)
};

// RoPE tables of one head size (model/rope.h builds them from the config; the backends apply them): NeoX
// rotate-half pairs (i, i + dim/2); angle_i = float(pos * inv_ext_i) * inv_freq_i in fp32 (inv_ext empty: pos *
// inv_freq_i), cos/sin in double times mscale; LongRoPE takes the long factors when the call's end > long_from.
struct RopeTables {
  int64_t dim = 0;
  std::vector<float> inv_freq, inv_ext_short, inv_ext_long;
  int64_t long_from = 0;
  float mscale = 1.0f;
  const std::vector<float>& inv_ext(int64_t seq_len) const { return seq_len > long_from ? inv_ext_long : inv_ext_short; }
};

struct ModelConfig;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string describe() const = 0;  // e.g. "cpu (16 threads)", "cuda: NVIDIA H200 (139.8 GiB)"
  virtual DType act_dtype() const = 0;       // F32 (CPU) or BF16 (CUDA)

  // ---- weights (once, at load) ----
  virtual Mat add_matrix(std::span<const HostTensor> parts) = 0;
  // The gate|up matrix of linear_silu_mul (its only reader): a backend may store its rows in another order (CUDA:
  // interleaved, SALA_CUDA_GU_PAIRS). By default the two parts stacked, as add_matrix.
  virtual Mat add_swiglu_matrix(const HostTensor& gate, const HostTensor& up) {
    const HostTensor parts[2] = {gate, up};
    return add_matrix(parts);
  }
  virtual Vec add_vector(const HostTensor& t) = 0;
  virtual void finish_weights() {}

  // ---- storage ----
  // Activations of one step: `count` buffers of (rows, cols) in the activation dtype (or F32 when f32), valid until
  // the next call to begin_step. The model layer asks for all it needs at the start of a step.
  virtual Act scratch(int id, int64_t rows, int64_t cols, bool f32 = false) = 0;
  // The cache: plan() sizes it (throws naming bytes needed and available if it does not fit); acquire() gives a slot.
  virtual void plan_cache(const ModelConfig& c, const CachePlan& p) = 0;
  virtual int acquire_slot(int64_t max_tokens) = 0;
  virtual void release_slot(int slot) = 0;
  virtual void reset_slot(int slot) = 0;
  virtual void copy_slot(int dst, int src) = 0;  // dst's cache becomes a copy of src's (snapshots, forks)
  virtual int64_t cached_tokens(int slot) const = 0;

  // ---- one step ----
  virtual void begin_step(const Step& s) = 0;  // uploads the step's rows and sequences (CUDA)
  virtual void end_replayable() {}             // the end of the replayable part of a step (Step::replayable)
  virtual void embed(Act h, Mat table, float scale) = 0;  // h (N, hidden) f32 <- table[tokens] * scale
  // if a: h += a_scale * a. If out: out = rmsnorm(h) * w / post_div (the logits' muP division, 1 = none).
  virtual void add_rmsnorm(Act h, const Act* a, float a_scale, Act* out, Vec w, float eps, float post_div) = 0;
  virtual void linear(Act y, const Act& x, Mat w) = 0;  // y (rows, out) = x (rows, in) w^T
  // Per-head RMSNorm of q and k (weights optional) then RoPE at each row's position (rope optional).
  virtual void qk_norm_rope(Act x, int64_t q_off, int64_t Hq, int64_t k_off, int64_t Hkv, int64_t D, Vec q_norm,
                            Vec k_norm, float eps, const RopeTables* rope) = 0;
  virtual void silu_mul(Act out, const Act& gate_up) = 0;            // out = silu(gate) * up, gate_up = gate | up
  virtual void mul_sigmoid(Act x, const Act& g) = 0;                 // x *= sigmoid(g)
  virtual void rmsnorm_rows(Act x, Vec w, float eps) = 0;            // whole-row RMSNorm in place
  // Fused pairs of the ops above, for backends that save a pass (a launch per layer in decode) by running them as
  // one; each must equal its two ops bitwise. gate_up (rows, 2 inter) may be left unwritten.
  virtual void linear_silu_mul(Act out, Act gate_up, const Act& x, Mat w) {  // out = silu(gate) * up, x w^T = gate | up
    linear(gate_up, x, w);
    silu_mul(out, gate_up);
  }
  virtual void rmsnorm_rows_gate(Act x, Vec w, float eps, const Act& g) {  // rmsnorm_rows, then x *= sigmoid(g)
    rmsnorm_rows(x, w, eps);
    mul_sigmoid(x, g);
  }
  // Lightning layer `layer` (index among all layers): o (N, H*D) from q, k, v columns of x.
  virtual void lightning(Act o, const Act& x, int64_t q_off, int64_t k_off, int64_t v_off, int layer,
                         const float* log_decay, float scale, int64_t H, int64_t Hkv, int64_t D) = 0;
  // Attention layer `layer`: append the rows' k, v to the sequences' caches (and K1/K2 when `compressed`).
  virtual void kv_append(int layer, const Act& x, int64_t k_off, int64_t v_off, bool compressed) = 0;
  struct SelectParams {
    int64_t block = 64, stride = 16, topk_total = 96, local_blocks = 32, init_blocks = 1;
    float scale = 0;
  };
  // InfLLM-V2 block selection for the rows of sparse sequences: idx (N, Hkv, topk_total) int32 in backend memory.
  virtual void select(int layer, const Act& x, int64_t q_off, int64_t Hq, const SelectParams& p) = 0;
  // o = softmax attention of the rows' queries over their caches: causal for dense sequences, over the blocks chosen
  // by the last select() for sparse ones.
  virtual void attention(Act o, const Act& x, int64_t q_off, int64_t Hq, int layer, float scale, int64_t block) = 0;
  // Rows of src gathered into dst (the rows that produce logits).
  virtual void gather_rows(Act dst, const Act& src, std::span<const int32_t> rows) = 0;
  // To the host as f32 (for logits and traces); idx: the last selection as int32 (N, Hkv, K).
  virtual void read(std::vector<float>& out, const Act& a) = 0;
  // From the host (rows x cols f32, converted to the view's dtype): the ops harness feeds inputs this way.
  virtual void write(Act a, std::span<const float> host) = 0;
  virtual void read_selection(std::vector<int32_t>& out) = 0;
  // Sampling where the logits are (a GPU backend): one token per row of logits (rows, V) f32 with runtime/sampler's
  // rules, the draw of row r from the counter-based stream (p.seed, step, r), reproducible whatever the batch. The
  // tokens go to slots [at, at + rows) of the backend's token buffer; read_tokens brings n of them back. A row holding
  // NaN or +Inf gives -1 (-Inf is a masked token). history: what the repetition penalty sees (the same for all rows).
  // samples() false: the caller samples on the host (CPU: runtime/sampler, the oracle's stream).
  virtual bool samples() const { return false; }
  // Whether decode steps are recorded and replayed as CUDA graphs (benchmarks report it; SALA_CUDA_GRAPHS=0: no).
  virtual bool records_graphs() const { return false; }
  virtual void sample(const Act& logits, const SamplingParams& p, uint64_t step, std::span<const int32_t> history,
                      int at);
  virtual void read_tokens(std::vector<int32_t>& out, int n);
  // Lightning state of the first sequence of the step for `layer` (traces): (H, D, D) f32.
  virtual void read_state(std::vector<float>& out, int layer, int slot) = 0;
  virtual void synchronize() {}
  // Per-op timing (sala bench --profile): while on, the backend times every op of every step (CUDA: with events, and
  // every step eager: a recorded graph has no per-op times); take_profile returns the sums since the last take, by op
  // label ("linear q_proj|k_proj|v_proj", "attention sparse", ...), largest first. Backends without it return none.
  struct OpTime {
    std::string op;
    int64_t calls = 0;
    double seconds = 0;
  };
  virtual void set_profiling(bool on) {}
  virtual std::vector<OpTime> take_profile() { return {}; }
  virtual Peaks measure_peaks() = 0;
  // Device memory in use by the process now and at most since the last reset (0 where unknown).
  virtual int64_t memory_in_use() const { return 0; }
  virtual int64_t memory_peak() const { return 0; }
  virtual void reset_memory_peak() {}
};

// The sums behind Backend::take_profile, and the label of a matrix's GEMM ("linear q_proj|k_proj|v_proj": the last
// part of each stored tensor's name).
class OpTimes {
 public:
  void add(std::string_view op, double seconds);
  std::vector<Backend::OpTime> take();  // largest first; the sums start again from zero
 private:
  std::vector<Backend::OpTime> sums_;
};
std::string matrix_label(std::span<const HostTensor> parts);

std::unique_ptr<Backend> make_cpu_backend();
// The CUDA backend lives in the sala_cuda library, which registers its factory (cuda::register_backend(), called by
// the programs built with CUDA). nullptr with a reason when none is registered or no usable GPU is present.
using BackendFactory = std::unique_ptr<Backend> (*)(std::string* why_not);
void register_cuda_backend(BackendFactory f);
std::unique_ptr<Backend> make_cuda_backend(std::string* why_not);

}  // namespace sala
