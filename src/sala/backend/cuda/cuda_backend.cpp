// The CUDA backend: bf16 weights in one device arena (fused q|k|v|gate and gate|up built at upload), bf16
// activations with an fp32 residual, fp32 accumulation, fp32 Lightning state. The cache is planned before anything
// is allocated (plan_cache): paged bf16 KV (64-token pages = InfLLM-V2 blocks) with their compressed-key pages, a pool
// of fp32 Lightning state slots, the step buffers and the kernels' workspaces; a plan that does not fit is refused with
// the bytes needed and available. Host code only: the kernels are in the .cu files (kernels.h).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <numeric>

#include "sala/backend/backend.h"
#include "sala/backend/cuda/cuda_backend.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/gemm.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/util.h"
#include "sala/core/error.h"
#include "sala/model/config.h"

namespace sala::cuda {

namespace {

std::string gib(double b) { return fmt::format("{:.2f} GiB", b / double(1ull << 30)); }

// One device allocation, freed on destruction.
struct DevMem {
  void* p = nullptr;
  size_t bytes = 0;
  DevMem() = default;
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  ~DevMem() {
    if (p) cudaFree(p);
  }
  void alloc(size_t n, const char* what) {
    if (p) cudaFree(p);
    p = nullptr;
    bytes = 0;
    if (n == 0) return;
    cudaError_t e = cudaMalloc(&p, n);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail("cuda: cannot allocate {} for {}: {} free of {} on the GPU", gib(double(n)), what, gib(double(free_b)),
           gib(double(total_b)));
    }
    bytes = n;
  }
  template <class T>
  T* as(size_t byte_off = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(p) + byte_off);
  }
};

struct PendingPart {
  HostTensor t;
  size_t dev_off = 0;  // bytes into the weight arena
  size_t pitch = 0;    // bytes from one of its rows to the next on the device (0: contiguous rows)
  int64_t random_rows = -1;  // made on the device: rows drawn from its seed (-1: its own rows; 0: none)
};

struct LayerDims {
  LayerKind kind = LayerKind::Dense;
  int kv_heads = 0, head_dim = 0;  // attention layers
  int light_index = -1;            // lightning layers: index among them
  int attn_index = -1;             // attention layers: index among them
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    SALA_CUDA_CHECK(cudaSetDevice(device));
    SALA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cudaDeviceProp p{};
    SALA_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    name_ = p.name;
    total_mem_ = p.totalGlobalMem;
    gemm_ = std::make_unique<Gemm>();
    const char* g = std::getenv("SALA_CUDA_GRAPHS");  // 0: every step eager (A/B timing, debugging)
    graphs_enabled_ = !(g && std::strcmp(g, "0") == 0);
    const char* f = std::getenv("SALA_CUDA_FUSE");  // 0: the fused op pairs run as their two ops (A/B timing)
    fuse_ = !(f && std::strcmp(f, "0") == 0);
    const char* gp = std::getenv("SALA_CUDA_GU_PAIRS");
    gu_pairs_ = gp && std::strcmp(gp, "1") == 0;
  }
  ~CudaBackend() override {
    abandon_capture();
    drop_graphs();
    for (Mark& m : marks_) event_pool_.push_back(m.a), event_pool_.push_back(m.b);
    for (cudaEvent_t e : event_pool_) cudaEventDestroy(e);
    if (h_step_) cudaFreeHost(h_step_);
    if (h_gather_) cudaFreeHost(h_gather_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::CUDA; }
  std::string describe() const override {
    return fmt::format("cuda: {} ({}), bf16 weights and activations, fp32 state", name_, gib(double(total_mem_)));
  }
  DType act_dtype() const override { return DType::BF16; }

  // ---- weights ----
  Mat add_matrix(std::span<const HostTensor> parts) override { return place_matrix(parts, false); }
  // SALA_CUDA_GU_PAIRS=1: the gate|up matrix stored row-interleaved (gate 0, up 0, gate 1, up 1, ...), so that the
  // decode product's warp reads a gate row and its up row side by side (gemv.cu, kSilu = 2) and the prefill SwiGLU
  // reads pairs (silu_mul_pairs); only linear_silu_mul reads it. Off by default: it passed the GPU tests on the H200
  // but decoded no faster (bench/results/2026-12-01-issue8-pdl-default-h200.md). Random weights made on the device are
  // then drawn as one block from the gate's seed (other values than the stacked layout's).
  Mat add_swiglu_matrix(const HostTensor& gate, const HostTensor& up) override {
    const HostTensor parts[2] = {gate, up};
    return place_matrix(parts, gu_pairs_);
  }
  Vec add_vector(const HostTensor& t) override {
    const size_t off = weight_bytes_;
    pending_.push_back({t, off});
    weight_bytes_ = (off + size_t(t.rows * t.cols) * 2 + 255) / 256 * 256;
    vecs_.push_back(off);
    return Vec{int(vecs_.size() - 1), t.rows * t.cols};
  }
  void finish_weights() override {
    size_t free_b = 0, total_b = 0;
    SALA_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    if (weight_bytes_ > free_b)
      fail("cuda: the weights need {} in bf16, the GPU has {} free of {}", gib(double(weight_bytes_)),
           gib(double(free_b)), gib(double(total_b)));
    weights_.alloc(weight_bytes_, "the weights");
    // Upload through a pinned staging buffer, converting to bf16 on the host (exact for bf16 sources).
    const size_t stage_elems = size_t(16) << 20;
    uint16_t* stage = nullptr;
    SALA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&stage), stage_elems * 2));
    try {
      for (const PendingPart& p : pending_) {
        const size_t n = size_t(p.t.rows * p.t.cols);
        if (!p.t.data) {  // made on the device
          const size_t rows = p.random_rows < 0 ? size_t(p.t.rows) : size_t(p.random_rows);
          if (rows)
            fill_random_bf16(weights_.as<char>(p.dev_off), rows * size_t(p.t.cols), p.t.random_std, p.t.random_seed,
                             stream_);
          continue;
        }
        if (p.pitch) {  // rows spread out (add_swiglu_matrix): whole rows per staged chunk
          const size_t cols = size_t(p.t.cols), per = std::max<size_t>(1, stage_elems / cols);
          for (size_t r = 0; r < size_t(p.t.rows); r += per) {
            const size_t nr = std::min(per, size_t(p.t.rows) - r), m = nr * cols;
            const auto* src = static_cast<const std::byte*>(p.t.data) + r * cols * dtype_size(p.t.dtype);
            std::vector<float> tmp(m);
            convert_to_f32(tmp.data(), src, p.t.dtype, m);
            convert_from_f32(stage, tmp.data(), DType::BF16, m);
            SALA_CUDA_CHECK(cudaMemcpy2D(weights_.as<char>(p.dev_off + r * p.pitch), p.pitch, stage, cols * 2, cols * 2,
                                         nr, cudaMemcpyHostToDevice));
          }
          continue;
        }
        for (size_t i = 0; i < n; i += stage_elems) {
          const size_t m = std::min(stage_elems, n - i);
          const auto* src = static_cast<const std::byte*>(p.t.data) + i * dtype_size(p.t.dtype);
          if (p.t.dtype == DType::BF16) {
            std::memcpy(stage, src, m * 2);
          } else {
            std::vector<float> tmp(m);
            convert_to_f32(tmp.data(), src, p.t.dtype, m);
            convert_from_f32(stage, tmp.data(), DType::BF16, m);
          }
          SALA_CUDA_CHECK(cudaMemcpy(weights_.as<char>(p.dev_off + i * 2), stage, m * 2, cudaMemcpyHostToDevice));
        }
      }
    } catch (...) {
      cudaFreeHost(stage);
      throw;
    }
    SALA_CUDA_CHECK(cudaFreeHost(stage));
    SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    pending_.clear();
    pending_.shrink_to_fit();
  }

  // ---- storage ----
  Act scratch(int id, int64_t rows, int64_t cols, bool f32) override {
    if (rows > plan_.max_step_rows)
      fail("cuda: a step of {} rows is over the planned {} rows", rows, plan_.max_step_rows);
    if (size_t(id) >= scratch_.size()) scratch_.resize(size_t(id) + 1);
    auto& b = scratch_[size_t(id)];
    const size_t es = f32 ? 4 : 2;
    const size_t need = size_t(std::max(rows, plan_.max_step_rows)) * size_t(cols) * es;
    if (!b) b = std::make_unique<DevMem>();
    if (b->bytes < size_t(rows * cols) * es) {
      if (mode_ != Mode::Eager)
        throw InternalError("cuda: an activation buffer grew inside a recorded step (a graph would keep the old one)");
      drop_graphs();  // recorded steps point at the old buffer
      b->alloc(need, "activations");
    }
    return Act{b->p, f32 ? DType::F32 : DType::BF16, rows, cols, cols};
  }

  void plan_cache(const ModelConfig& c, const CachePlan& p) override;
  int acquire_slot(int64_t max_tokens) override {
    if (max_tokens > plan_.max_tokens)
      fail("cuda: a sequence of {} tokens is over the planned context of {} tokens", max_tokens, plan_.max_tokens);
    for (size_t i = 0; i < slots_.size(); ++i)
      if (!slots_[i].used) {
        slots_[i].used = true;
        slots_[i].tokens = 0;
        slots_[i].pages.clear();
        return int(i);
      }
    fail("cuda: all {} sequence slots of the plan are in use", slots_.size());
  }
  void release_slot(int slot) override {
    if (slot < 0 || size_t(slot) >= slots_.size()) return;
    free_pages(slots_[size_t(slot)]);
    slots_[size_t(slot)].used = false;
  }
  void reset_slot(int slot) override {
    free_pages(slots_.at(size_t(slot)));
    slots_.at(size_t(slot)).tokens = 0;
  }
  void copy_slot(int dst, int src) override;
  int64_t cached_tokens(int slot) const override { return slots_.at(size_t(slot)).tokens; }

  // ---- one step ----
  void begin_step(const Step& s) override;
  void end_replayable() override;
  void embed(Act h, Mat table, float scale) override {
    if (replaying()) return;
    const OpScope t(this, "embed");
    cuda::embed(static_cast<float*>(h.data), d_tokens_, w(mats_[size_t(table.id)]), scale, int(h.rows), int(h.cols),
                stream_);
  }
  void add_rmsnorm(Act h, const Act* a, float a_scale, Act* out, Vec wv, float eps, float post_div) override {
    if (replaying()) return;
    const OpScope t(this, out ? "add + rmsnorm" : "add (residual)");
    cuda::add_rmsnorm(static_cast<float*>(h.data), a ? static_cast<const bf16*>(a->data) : nullptr, a ? int(a->ld) : 0,
                      a_scale, out ? static_cast<bf16*>(out->data) : nullptr, out ? int(out->ld) : 0,
                      w(vecs_[size_t(wv.id)]), eps, 1.0f / post_div, int(h.rows), int(h.cols), stream_);
  }
  void linear(Act y, const Act& x, Mat m) override {
    SALA_CHECK(y.cols == m.out && x.cols == m.in && x.rows == y.rows && x.dtype == DType::BF16);
    if (mat_pairs_[size_t(m.id)]) throw InternalError("cuda: a row-interleaved gate|up matrix read by linear()");
    if (replaying()) return;
    const OpScope t(this, mat_labels_[size_t(m.id)]);
    if (y.dtype == DType::F32)
      gemm_->matmul_f32(static_cast<float*>(y.data), int(y.ld), static_cast<const bf16*>(x.data), int(x.ld),
                        w(mats_[size_t(m.id)]), int(x.rows), int(m.in), int(m.out), stream_);
    else
      gemm_->matmul(static_cast<bf16*>(y.data), int(y.ld), static_cast<const bf16*>(x.data), int(x.ld),
                    w(mats_[size_t(m.id)]), int(x.rows), int(m.in), int(m.out), stream_);
  }
  void qk_norm_rope(Act x, int64_t q_off, int64_t Hq, int64_t k_off, int64_t Hkv, int64_t D, Vec q_norm, Vec k_norm,
                    float eps, const RopeTables* rope) override {
    RopeArgs ra;
    if (rope) ra = rope_args(*rope);
    if (replaying()) return;
    const OpScope t(this, q_norm ? "qk norm + rope" : "rope");
    cuda::qk_norm_rope(static_cast<bf16*>(x.data), int(x.ld), int(q_off), int(Hq), int(k_off), int(Hkv), int(D),
                       q_norm ? w(vecs_[size_t(q_norm.id)]) : nullptr, k_norm ? w(vecs_[size_t(k_norm.id)]) : nullptr,
                       eps, ra, rows_, stream_);
  }
  void silu_mul(Act out, const Act& gu) override {
    SALA_CHECK(out.ld == out.cols && gu.ld == gu.cols);
    if (replaying()) return;
    const OpScope t(this, "silu * up");
    cuda::silu_mul(static_cast<bf16*>(out.data), static_cast<const bf16*>(gu.data), int(out.rows), int(out.cols),
                   stream_);
  }
  void linear_silu_mul(Act out, Act gu, const Act& x, Mat m) override {
    SALA_CHECK(out.ld == out.cols && gu.ld == gu.cols && gu.cols == m.out && out.cols * 2 == m.out && x.cols == m.in &&
               x.rows == gu.rows && out.rows == gu.rows && x.dtype == DType::BF16);
    if (!fuse_ && !mat_pairs_[size_t(m.id)]) return Backend::linear_silu_mul(out, gu, x, m);
    if (replaying()) return;
    const OpScope t(this, profiling_ ? mat_labels_[size_t(m.id)] + " + silu * up" : std::string());
    gemm_->matmul_silu(static_cast<bf16*>(out.data), static_cast<bf16*>(gu.data), static_cast<const bf16*>(x.data),
                       int(x.ld), w(mats_[size_t(m.id)]), int(x.rows), int(m.in), int(m.out), stream_,
                       mat_pairs_[size_t(m.id)]);
  }
  void rmsnorm_rows_gate(Act x, Vec wv, float eps, const Act& g) override {
    SALA_CHECK(g.rows == x.rows && g.cols == x.cols);
    if (!fuse_) return Backend::rmsnorm_rows_gate(x, wv, eps, g);
    if (replaying()) return;
    const OpScope t(this, "rmsnorm rows * sigmoid(gate)");
    cuda::rmsnorm_rows(static_cast<bf16*>(x.data), int(x.ld), w(vecs_[size_t(wv.id)]), eps, int(x.rows), int(x.cols),
                       stream_, static_cast<const bf16*>(g.data), int(g.ld));
  }
  void mul_sigmoid(Act x, const Act& g) override {
    if (replaying()) return;
    const OpScope t(this, "* sigmoid(gate)");
    cuda::mul_sigmoid(static_cast<bf16*>(x.data), int(x.ld), static_cast<const bf16*>(g.data), int(g.ld), int(x.rows),
                      int(x.cols), stream_);
  }
  void rmsnorm_rows(Act x, Vec wv, float eps) override {
    if (replaying()) return;
    const OpScope t(this, "rmsnorm rows");
    cuda::rmsnorm_rows(static_cast<bf16*>(x.data), int(x.ld), w(vecs_[size_t(wv.id)]), eps, int(x.rows), int(x.cols),
                       stream_);
  }
  void lightning(Act o, const Act& x, int64_t q_off, int64_t k_off, int64_t v_off, int layer, const float* log_decay,
                 float scale, int64_t H, int64_t Hkv, int64_t D) override {
    const LayerDims& L = dims_.at(size_t(layer));
    SALA_CHECK(L.light_index >= 0);
    if (!d_log_decay_) {  // the decays are the model's constants: uploaded once
      d_log_decay_ = std::make_unique<DevMem>();
      d_log_decay_->alloc(size_t(H) * 4, "the decays");
      SALA_CUDA_CHECK(cudaMemcpy(d_log_decay_->p, log_decay, size_t(H) * 4, cudaMemcpyHostToDevice));
    }
    if (replaying()) return;
    const OpScope t(this, "lightning");
    cuda::lightning(static_cast<bf16*>(o.data), int(o.ld), static_cast<const bf16*>(x.data), int(x.ld), int(q_off),
                    int(k_off), int(v_off), state_.as<float>() + size_t(L.light_index) * state_per_layer_,
                    int64_t(state_per_layer_ * size_t(n_light_)), d_log_decay_->as<float>(), scale, int(H), int(Hkv),
                    int(D), rows_, stream_);
  }
  void kv_append(int layer, const Act& x, int64_t k_off, int64_t v_off, bool compressed) override {
    const LayerDims& L = dims_.at(size_t(layer));
    bf16 *k, *v, *k1, *k2;
    layer_pages(L, k, v, k1, k2);
    if (replaying()) return;
    const OpScope t(this, compressed ? "kv append + K1/K2" : "kv append");
    cuda::kv_append(k, v, compressed ? k1 : nullptr, compressed ? k2 : nullptr, static_cast<const bf16*>(x.data),
                    int(x.ld), int(k_off), int(v_off), L.kv_heads, L.head_dim, rows_, stream_);
  }
  void select(int layer, const Act& x, int64_t q_off, int64_t Hq, const SelectParams& p) override {
    const LayerDims& L = dims_.at(size_t(layer));
    bf16 *k, *v, *k1, *k2;
    layer_pages(L, k, v, k1, k2);
    SelectArgs a;
    a.block = int(p.block);
    a.stride = int(p.stride);
    a.topk_total = int(p.topk_total);
    a.local_blocks = int(p.local_blocks);
    a.init_blocks = int(p.init_blocks);
    a.scale = p.scale;
    sel_K_ = int(p.topk_total);
    sel_Hkv_ = L.kv_heads;
    sel_valid_ = true;
    if (replaying()) return;
    const OpScope t(this, "select (stage 1 + top-k)");
    cuda::infllmv2_select(idx_.as<int32_t>(), static_cast<const bf16*>(x.data), int(x.ld), int(q_off), int(Hq),
                          L.kv_heads, L.head_dim, k1, k2, a, max_ctx_, rows_, workspace_.p, stream_);
  }
  void attention(Act o, const Act& x, int64_t q_off, int64_t Hq, int layer, float scale, int64_t) override {
    const LayerDims& L = dims_.at(size_t(layer));
    bf16 *k, *v, *k1, *k2;
    layer_pages(L, k, v, k1, k2);
    const bool sparse = L.kind == LayerKind::Sparse && sel_valid_ && any_sparse_;
    if (replaying()) return;
    const OpScope t(this, L.kind == LayerKind::Dense ? "attention dense" : sparse ? "attention sparse" : "attention (sparse layer, dense call)");
    cuda::attention(static_cast<bf16*>(o.data), int(o.ld), static_cast<const bf16*>(x.data), int(x.ld), int(q_off),
                    int(Hq), L.kv_heads, L.head_dim, k, v, sparse ? idx_.as<int32_t>() : nullptr, sel_K_, scale,
                    max_ctx_, rows_, workspace_.p, stream_);
  }
  void gather_rows(Act dst, const Act& src, std::span<const int32_t> rows) override {
    SALA_CHECK(dst.dtype == src.dtype && dst.cols == src.cols && int64_t(rows.size()) == dst.rows);
    std::memcpy(h_gather_, rows.data(), rows.size() * 4);
    SALA_CUDA_CHECK(cudaMemcpyAsync(d_gather_, h_gather_, rows.size() * 4, cudaMemcpyHostToDevice, stream_));
    const OpScope t(this, "gather rows");
    cuda::gather_rows(dst.data, int(dst.ld), src.data, int(src.ld), d_gather_, int(rows.size()), int(src.cols),
                      int(dtype_size(src.dtype)), stream_);
  }
  void read(std::vector<float>& out, const Act& a) override {
    const size_t es = dtype_size(a.dtype), n = size_t(a.rows * a.cols);
    std::vector<std::byte> raw(n * es);
    SALA_CUDA_CHECK(cudaMemcpy2DAsync(raw.data(), size_t(a.cols) * es, a.data, size_t(a.ld) * es, size_t(a.cols) * es,
                                      size_t(a.rows), cudaMemcpyDeviceToHost, stream_));
    SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    out.resize(n);
    convert_to_f32(out.data(), raw.data(), a.dtype, n);
  }
  void write(Act a, std::span<const float> host) override {
    SALA_CHECK(host.size() == size_t(a.rows * a.cols));
    const size_t es = dtype_size(a.dtype), n = host.size();
    std::vector<std::byte> raw(n * es);
    convert_from_f32(raw.data(), host.data(), a.dtype, n);
    SALA_CUDA_CHECK(cudaMemcpy2DAsync(a.data, size_t(a.ld) * es, raw.data(), size_t(a.cols) * es, size_t(a.cols) * es,
                                      size_t(a.rows), cudaMemcpyHostToDevice, stream_));
    SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void read_selection(std::vector<int32_t>& out) override {
    out.assign(size_t(n_rows_) * size_t(sel_Hkv_ * sel_K_), -1);
    if (!sel_valid_) return;
    SALA_CUDA_CHECK(cudaMemcpyAsync(out.data(), idx_.p, out.size() * 4, cudaMemcpyDeviceToHost, stream_));
    SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  bool samples() const override { return true; }
  void sample(const Act& logits, const SamplingParams& p, uint64_t step, std::span<const int32_t> history,
              int at) override {
    SALA_CHECK(logits.dtype == DType::F32 && logits.ld == logits.cols && logits.cols == vocab_ && at >= 0 &&
               at + logits.rows <= plan_.max_step_rows && logits.rows <= sample_rows_);
    const bool penalise = p.repetition_penalty != 1.0f && !history.empty();
    if (penalise) {  // the history on the device, grown as needed (sampling is never inside a recorded step)
      if (hist_.bytes < history.size() * 4) hist_.alloc(std::max(history.size() * 4 * 2, size_t(1) << 16), "history");
      SALA_CUDA_CHECK(cudaMemcpyAsync(hist_.p, history.data(), history.size() * 4, cudaMemcpyHostToDevice, stream_));
    }
    SampleArgs a;
    a.temperature = p.temperature;
    a.top_k = int(std::min<int64_t>(p.top_k, INT32_MAX));
    a.top_p = p.top_p;
    a.min_p = p.min_p;
    a.repetition_penalty = p.repetition_penalty;
    a.seed = p.seed;
    a.step = step;
    // one history for every row: a stride of 0 between rows
    const OpScope t(this, "sample");
    cuda::sample(tokens_.as<int32_t>() + at, static_cast<float*>(logits.data), int(logits.rows), int(logits.cols),
                 penalise ? hist_.as<int32_t>() : nullptr, penalise ? int(history.size()) : 0, 0, a,
                 sample_ws_.p, stream_);
    if (penalise) SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the history upload read a pageable span
  }
  void read_tokens(std::vector<int32_t>& out, int n) override {
    SALA_CHECK(n >= 0 && n <= plan_.max_step_rows);
    out.resize(size_t(n));
    SALA_CUDA_CHECK(cudaMemcpyAsync(h_gather_, tokens_.p, size_t(n) * 4, cudaMemcpyDeviceToHost, stream_));
    SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::memcpy(out.data(), h_gather_, size_t(n) * 4);
  }
  void read_state(std::vector<float>& out, int layer, int slot) override {
    const LayerDims& L = dims_.at(size_t(layer));
    out.resize(state_per_layer_);
    const float* src = state_.as<float>() + size_t(slot) * state_per_layer_ * size_t(n_light_) +
                       size_t(L.light_index) * state_per_layer_;
    SALA_CUDA_CHECK(cudaMemcpyAsync(out.data(), src, state_per_layer_ * 4, cudaMemcpyDeviceToHost, stream_));
    SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  bool records_graphs() const override { return graphs_enabled_; }
  void synchronize() override { SALA_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void set_profiling(bool on) override {
    synchronize();
    resolve_profile();
    profiling_ = on;
  }
  std::vector<OpTime> take_profile() override {
    synchronize();
    resolve_profile();
    return profile_.take();
  }
  Peaks measure_peaks() override;
  int64_t memory_in_use() const override {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    const int64_t used = int64_t(total_b - free_b);
    peak_ = std::max(peak_, used);
    return used;
  }
  int64_t memory_peak() const override { return std::max(peak_, memory_in_use()); }
  void reset_memory_peak() override { peak_ = 0; }

 private:
  // ---- per-op timing (set_profiling) ----
  struct Mark {
    std::string op;
    cudaEvent_t a, b;
  };
  // A matrix's parts placed in the weight arena: stacked (part after part), or row-interleaved (row r of part k at
  // row r * parts + k, every part with the same rows; add_swiglu_matrix).
  Mat place_matrix(std::span<const HostTensor> parts, bool interleave) {
    Mat m{int(mats_.size()), 0, parts[0].cols};
    for (const auto& p : parts) {
      SALA_CHECK(p.cols == m.in && (!interleave || p.rows == parts[0].rows));
      m.out += p.rows;
    }
    const size_t off = weight_bytes_, row = size_t(m.in) * 2;
    size_t at = off;
    for (size_t k = 0; k < parts.size(); ++k) {
      if (interleave)  // device-made random values: one block from the first part's seed
        pending_.push_back({parts[k], off + k * row, parts.size() * row, k == 0 ? m.out : 0});
      else
        pending_.push_back({parts[k], at});
      at += size_t(parts[k].rows) * row;
    }
    weight_bytes_ = (at + 255) / 256 * 256;
    mats_.push_back(off);
    mat_labels_.push_back(matrix_label(parts));
    mat_pairs_.push_back(interleave);
    return m;
  }
  struct OpScope {  // times one op between two events on the stream when profiling
    CudaBackend* be;
    int i = -1;
    OpScope(CudaBackend* b, const std::string& op) : be(b) {
      if (!b->profiling_) return;
      i = int(b->marks_.size());
      b->marks_.push_back({op, b->event(), b->event()});
      SALA_CUDA_CHECK(cudaEventRecord(b->marks_.back().a, b->stream_));
    }
    ~OpScope() {
      if (i >= 0) cudaEventRecord(be->marks_[size_t(i)].b, be->stream_);
    }
  };
  cudaEvent_t event() {
    if (event_pool_.empty()) {
      cudaEvent_t e = nullptr;
      SALA_CUDA_CHECK(cudaEventCreate(&e));
      return e;
    }
    cudaEvent_t e = event_pool_.back();
    event_pool_.pop_back();
    return e;
  }
  void resolve_profile() {  // the stream has passed every mark (the caller synchronised)
    for (Mark& m : marks_) {
      float ms = 0;
      SALA_CUDA_CHECK(cudaEventElapsedTime(&ms, m.a, m.b));
      profile_.add(m.op, double(ms) / 1e3);
      event_pool_.push_back(m.a);
      event_pool_.push_back(m.b);
    }
    marks_.clear();
  }

  // ---- decode steps as CUDA graphs ----
  // A step of single-token rows (decode) is recorded the second time its shape is seen and replayed after that: the
  // shape is (rows, sequences, any sparse, context bucket); everything else the kernels read lives at fixed device
  // addresses (the packed step upload, the page tables, the cache), so a replay only needs begin_step's upload.
  // max_ctx, the kernels' bound on every row's context, is rounded up to a bucket (at most 1/8 above) in every decode
  // step, recorded or not, so a replay and an eager run split the keys alike and give identical results.
  enum class Mode { Eager, Capture, Replay };
  struct GraphKey {
    int N = 0, S = 0, ctx = 0;
    bool sparse = false;
    auto operator<=>(const GraphKey&) const = default;
  };
  struct Graph {
    int seen = 0;
    cudaGraphExec_t exec = nullptr;
  };
  static constexpr int kMaxGraphRows = 256;
  bool replaying() const { return mode_ == Mode::Replay; }
  static int ctx_bucket(int ctx) {
    if (ctx <= 1024) return 1024;
    int p = 1;
    while (p * 2 < ctx) p *= 2;  // p < ctx <= 2p
    const int q = std::max(1, p / 8);
    return (ctx + q - 1) / q * q;
  }
  void drop_graphs() {
    for (auto& [k, g] : graphs_)
      if (g.exec) cudaGraphExecDestroy(g.exec);
    graphs_.clear();
  }
  void abandon_capture() {  // a step that failed while being recorded: end the capture, keep nothing
    if (mode_ == Mode::Capture) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      cudaGetLastError();
      graphs_.erase(graph_key_);
    }
    mode_ = Mode::Eager;
  }

  struct Slot {
    bool used = false;
    int64_t tokens = 0;
    std::vector<int32_t> pages;
  };
  const bf16* w(size_t off) const { return weights_.as<bf16>(off); }
  RopeArgs rope_args(const RopeTables& r);
  void layer_pages(const LayerDims& L, bf16*& k, bf16*& v, bf16*& k1, bf16*& k2) const {
    SALA_CHECK(L.attn_index >= 0);
    const size_t kv_page = size_t(L.kv_heads) * kPageTokens * size_t(L.head_dim) * 2;  // bytes of K (or V) per page
    char* base = kv_.as<char>() + size_t(L.attn_index) * layer_pool_bytes_;
    k = reinterpret_cast<bf16*>(base);
    v = reinterpret_cast<bf16*>(base + kv_page * size_t(num_pages_));
    k1 = reinterpret_cast<bf16*>(base + 2 * kv_page * size_t(num_pages_));
    k2 = reinterpret_cast<bf16*>(base + 2 * kv_page * size_t(num_pages_) +
                                 size_t(L.kv_heads) * 4 * size_t(L.head_dim) * 2 * size_t(num_pages_));
  }
  void free_pages(Slot& s) {
    for (int32_t p : s.pages) free_pages_.push_back(p);
    s.pages.clear();
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  std::string name_;
  size_t total_mem_ = 0;
  std::unique_ptr<Gemm> gemm_;
  // weights
  std::vector<PendingPart> pending_;
  std::vector<size_t> mats_, vecs_;  // byte offsets into weights_
  size_t weight_bytes_ = 0;
  DevMem weights_;
  // plan and cache
  CachePlan plan_;
  std::vector<LayerDims> dims_;
  int n_light_ = 0, n_attn_ = 0;
  size_t state_per_layer_ = 0;  // floats of one layer's state of one slot
  int64_t num_pages_ = 0, pages_per_seq_ = 0;
  size_t layer_pool_bytes_ = 0;
  DevMem kv_, state_, idx_, workspace_, step_buf_, tokens_, sample_ws_, hist_;
  int64_t vocab_ = 0;
  int sample_rows_ = 0;  // rows one sample() call may take (its workspace is planned)
  std::vector<Slot> slots_;
  std::vector<int32_t> free_pages_;
  std::vector<std::unique_ptr<DevMem>> scratch_;
  std::unique_ptr<DevMem> d_log_decay_;
  std::map<const RopeTables*, std::unique_ptr<DevMem>> rope_;
  // the step
  StepRows rows_;
  int32_t* d_tokens_ = nullptr;
  int32_t* d_gather_ = nullptr;
  int32_t* h_gather_ = nullptr;
  int32_t* h_step_ = nullptr;  // pinned mirror of step_buf_
  size_t step_ints_ = 0;
  int max_ctx_ = 0, n_rows_ = 0;
  bool any_sparse_ = false, sel_valid_ = false;
  mutable int64_t peak_ = 0;
  Mode mode_ = Mode::Eager;
  bool profiling_ = false;
  std::vector<Mark> marks_;
  std::vector<cudaEvent_t> event_pool_;
  OpTimes profile_;
  std::vector<std::string> mat_labels_;
  bool fuse_ = true;  // SALA_CUDA_FUSE=0: linear_silu_mul and rmsnorm_rows_gate as their two ops
  bool gu_pairs_ = false;        // SALA_CUDA_GU_PAIRS=1: add_swiglu_matrix interleaves the rows
  std::vector<bool> mat_pairs_;  // per matrix: stored row-interleaved (add_swiglu_matrix)
  GraphKey graph_key_;
  std::map<GraphKey, Graph> graphs_;
  bool graphs_enabled_ = true;
  int sel_K_ = 0, sel_Hkv_ = 0;
};

RopeArgs CudaBackend::rope_args(const RopeTables& r) {
  auto& m = rope_[&r];
  const size_t half = size_t(r.dim / 2);
  if (!m) {  // the model's tables live as long as the model: uploaded once per table
    m = std::make_unique<DevMem>();
    std::vector<float> t(r.inv_freq);
    const bool ext = !r.inv_ext_short.empty();
    if (ext) {
      t.insert(t.end(), r.inv_ext_short.begin(), r.inv_ext_short.end());
      t.insert(t.end(), r.inv_ext_long.begin(), r.inv_ext_long.end());
    }
    m->alloc(t.size() * 4, "RoPE tables");
    SALA_CUDA_CHECK(cudaMemcpy(m->p, t.data(), t.size() * 4, cudaMemcpyHostToDevice));
  }
  RopeArgs a;
  a.inv_freq = m->as<float>();
  a.inv_ext = r.inv_ext_short.empty() ? nullptr : m->as<float>() + half;
  a.mscale = r.mscale;
  return a;
}

void CudaBackend::plan_cache(const ModelConfig& c, const CachePlan& p) {
  for (const Slot& s : slots_)
    if (s.used) fail("cache plan: sequences of the old plan are still alive");
  abandon_capture();
  drop_graphs();  // they point into the old plan's buffers
  // Free the old plan before sizing the new one against the free memory.
  kv_.alloc(0, "");
  state_.alloc(0, "");
  idx_.alloc(0, "");
  workspace_.alloc(0, "");
  step_buf_.alloc(0, "");
  tokens_.alloc(0, "");
  sample_ws_.alloc(0, "");
  scratch_.clear();
  if (h_step_) cudaFreeHost(h_step_), h_step_ = nullptr;
  if (h_gather_) cudaFreeHost(h_gather_), h_gather_ = nullptr;
  plan_ = CachePlan{};  // no valid plan until this one is allocated
  plan_.max_tokens = 0;
  CachePlan np = p;
  if (np.max_step_rows <= 0) np.max_step_rows = 2048;
  if (np.max_seqs <= 0) np.max_seqs = 1;
  const int64_t total_tokens = p.total_tokens > 0 ? p.total_tokens : p.max_seqs * p.max_tokens;
  if (c.is_sala() && (c.sparse.block_size != kPageTokens || c.sparse.kernel_stride != 16 ||
                      c.sparse.kernel_size != 32))
    fail("cuda: sparse_config block_size {} / kernel {} / stride {} is not supported on the GPU (64 / 32 / 16)",
         c.sparse.block_size, c.sparse.kernel_size, c.sparse.kernel_stride);
  dims_.assign(size_t(c.num_hidden_layers), LayerDims{});
  n_light_ = n_attn_ = 0;
  int max_kv_heads = 1, max_head_dim = 1;
  size_t page_bytes = 0;  // one page of every attention layer
  for (size_t l = 0; l < dims_.size(); ++l) {
    LayerDims& d = dims_[l];
    d.kind = c.layer_kinds[l];
    if (d.kind == LayerKind::Lightning) {
      d.light_index = n_light_++;
      state_per_layer_ = size_t(c.lightning_heads()) * size_t(c.lightning_dim() * c.lightning_dim());
      continue;
    }
    d.kv_heads = int(c.num_key_value_heads);
    d.head_dim = int(d.kind == LayerKind::Sparse ? c.sparse_head_dim() : c.dense_head_dim());
    d.attn_index = n_attn_++;
    max_kv_heads = std::max(max_kv_heads, d.kv_heads);
    max_head_dim = std::max(max_head_dim, d.head_dim);
  }
  // KV pages: K and V of 64 tokens, K1 (4 windows) and K2 (1 window), for every attention layer (same dims per layer).
  pages_per_seq_ = (p.max_tokens + kPageTokens - 1) / kPageTokens;
  num_pages_ = (total_tokens + kPageTokens - 1) / kPageTokens + p.max_seqs;  // + a partial page per sequence
  const size_t kv_page = size_t(max_kv_heads) * kPageTokens * size_t(max_head_dim) * 2;
  page_bytes = 2 * kv_page + size_t(max_kv_heads) * 5 * size_t(max_head_dim) * 2;
  layer_pool_bytes_ = page_bytes * size_t(num_pages_);
  const size_t kv_bytes = layer_pool_bytes_ * size_t(n_attn_);
  const size_t state_bytes = state_per_layer_ * size_t(n_light_) * size_t(p.max_seqs) * 4;
  const int N = int(np.max_step_rows), S = int(std::min<int64_t>(p.max_seqs, np.max_step_rows));
  const int Hq = int(c.num_attention_heads), ctx = int(std::min<int64_t>(p.max_tokens, INT32_MAX));
  const int64_t K = c.is_sala() ? c.sparse.total_topk() : 1;
  const size_t idx_bytes = size_t(N) * size_t(max_kv_heads) * size_t(K) * 4;
  size_t ws = 0;
  for (int n : {N, S})  // a long prefill chunk of one sequence, or one row for each of many
    for (int s : {1, std::min(S, n)}) {
      if (c.is_sala()) ws = std::max(ws, select_workspace_bytes(n, s, Hq, max_kv_heads, ctx));
      ws = std::max(ws, attention_workspace_bytes(n, s, Hq, max_kv_heads, max_head_dim, ctx));
    }
  // activations: residual f32, normed, q|k|v|gate, attention out, mlp, gate|up, logits of every row of a step
  const int64_t hid = c.hidden_size, qkv = c.num_attention_heads * std::max(c.head_dim, c.hidden_size / Hq) * 4,
                act_cols = hid * 4 + 2 * qkv + 3 * c.intermediate_size, V = c.vocab_size;
  const size_t act_bytes = size_t(N) * size_t(act_cols) * 2 + size_t(N) * size_t(hid) * 8 +
                           size_t(np.max_step_rows) * size_t(V) * 4;
  step_ints_ = size_t(3 * N + 6 * S + 2 + p.max_seqs * pages_per_seq_ + N);
  // sampling: one call takes the rows of all sequences of a step (decode), its sort workspace is planned with them
  const int sample_rows = int(std::min<int64_t>({p.max_seqs, np.max_step_rows, std::max<int64_t>(1, (INT32_MAX - 1) / V)}));
  const size_t sample_bytes = sample_workspace_bytes(sample_rows, int(V)) + size_t(N) * 4;
  const size_t need = kv_bytes + state_bytes + idx_bytes + ws + act_bytes + step_ints_ * 4 + sample_bytes;
  size_t free_b = 0, total_b = 0;
  SALA_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  if (need > free_b)
    fail("cuda: the plan for {} sequences of {} tokens ({} per step) needs {} (KV + compressed keys {}, Lightning "
         "state {}, activations {}, workspaces {}) beside the weights, but the GPU has {} free of {}; lower --context "
         "or the number of sequences",
         p.max_seqs, p.max_tokens, np.max_step_rows, gib(double(need)), gib(double(kv_bytes)),
         gib(double(state_bytes)), gib(double(act_bytes)), gib(double(ws + idx_bytes)), gib(double(free_b)),
         gib(double(total_b)));
  kv_.alloc(kv_bytes, "the KV pages");
  state_.alloc(state_bytes, "the Lightning state pool");
  idx_.alloc(idx_bytes, "block selections");
  workspace_.alloc(ws, "kernel workspaces");
  step_buf_.alloc(step_ints_ * 4, "the step rows");
  tokens_.alloc(size_t(N) * 4, "sampled tokens");
  sample_ws_.alloc(sample_workspace_bytes(sample_rows, int(V)), "the sampler's workspace");
  vocab_ = V;
  sample_rows_ = sample_rows;
  SALA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h_step_), step_ints_ * 4));
  SALA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&h_gather_), size_t(N) * 4));
  d_gather_ = step_buf_.as<int32_t>() + (step_ints_ - size_t(N));
  slots_.assign(size_t(p.max_seqs), Slot{});
  plan_ = np;
  free_pages_.resize(size_t(num_pages_));
  std::iota(free_pages_.rbegin(), free_pages_.rend(), 0);  // pop_back hands out page 0 first
}

void CudaBackend::copy_slot(int dst, int src) {
  Slot& d = slots_.at(size_t(dst));
  const Slot& s = slots_.at(size_t(src));
  free_pages(d);
  for (size_t j = 0; j < s.pages.size(); ++j) {
    if (free_pages_.empty()) fail("cuda: the KV cache is full ({} pages)", num_pages_);
    d.pages.push_back(free_pages_.back());
    free_pages_.pop_back();
  }
  d.tokens = s.tokens;
  for (int l = 0; l < int(dims_.size()); ++l) {
    const LayerDims& L = dims_[size_t(l)];
    if (L.attn_index < 0) continue;
    char* base = kv_.as<char>() + size_t(L.attn_index) * layer_pool_bytes_;
    const size_t kvp = size_t(L.kv_heads) * kPageTokens * size_t(L.head_dim) * 2,
                 k1p = size_t(L.kv_heads) * 4 * size_t(L.head_dim) * 2, k2p = size_t(L.kv_heads) * size_t(L.head_dim) * 2;
    const size_t offs[4] = {0, kvp * size_t(num_pages_), 2 * kvp * size_t(num_pages_),
                            (2 * kvp + k1p) * size_t(num_pages_)};
    const size_t sizes[4] = {kvp, kvp, k1p, k2p};
    for (size_t j = 0; j < s.pages.size(); ++j)
      for (int part = 0; part < 4; ++part)
        SALA_CUDA_CHECK(cudaMemcpyAsync(base + offs[part] + size_t(d.pages[j]) * sizes[part],
                                        base + offs[part] + size_t(s.pages[j]) * sizes[part], sizes[part],
                                        cudaMemcpyDeviceToDevice, stream_));
  }
  const size_t slot_floats = state_per_layer_ * size_t(n_light_);
  if (slot_floats)
    SALA_CUDA_CHECK(cudaMemcpyAsync(state_.as<float>() + size_t(dst) * slot_floats,
                                    state_.as<float>() + size_t(src) * slot_floats, slot_floats * 4,
                                    cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::begin_step(const Step& st) {
  abandon_capture();  // a previous step that failed half-way
  const int N = int(st.rows()), S = int(st.seqs.size());
  if (N > plan_.max_step_rows) fail("cuda: a step of {} rows is over the planned {} rows", N, plan_.max_step_rows);
  // Pages for the rows of this step.
  max_ctx_ = 0;
  any_sparse_ = false;
  for (const StepSeq& s : st.seqs) {
    Slot& sl = slots_.at(size_t(s.slot));
    const int64_t end = s.pos0 + s.n;
    if ((end + kPageTokens - 1) / kPageTokens > pages_per_seq_)
      fail("cuda: {} tokens are over the planned context of {} tokens", end, plan_.max_tokens);
    while (int64_t(sl.pages.size()) * kPageTokens < end) {
      if (free_pages_.empty())
        fail("cuda: the KV cache is full ({} pages of {} tokens for all sequences)", num_pages_, kPageTokens);
      sl.pages.push_back(free_pages_.back());
      free_pages_.pop_back();
    }
    sl.tokens = std::max(sl.tokens, end);
    max_ctx_ = std::max<int>(max_ctx_, int(end));
    any_sparse_ |= s.sparse;
  }
  // One packed upload: tokens, pos, row_seq | cu_seqlens, slot, pos0, call_len, flags | page table | (gather rows)
  int32_t* h = h_step_;
  size_t at = 0;
  auto put = [&](int32_t v) { h[at++] = v; };
  const size_t o_tok = at;
  for (int32_t t : st.tokens) put(t);
  const size_t o_pos = at;
  for (int32_t p : st.pos) put(p);
  const size_t o_rs = at;
  for (int32_t r : st.row_seq) put(r);
  const size_t o_cu = at;
  for (const StepSeq& s : st.seqs) put(int32_t(s.row0));
  put(N);
  const size_t o_slot = at;
  for (const StepSeq& s : st.seqs) put(s.slot);
  const size_t o_pos0 = at;
  for (const StepSeq& s : st.seqs) put(int32_t(s.pos0));
  const size_t o_cl = at;
  for (const StepSeq& s : st.seqs) put(int32_t(s.call_len));
  const size_t o_fl = at;
  for (const StepSeq& s : st.seqs)
    put(int32_t((s.sparse ? kSeqSparse : 0) | (s.fresh ? kSeqFresh : 0) | (s.rope_long ? kSeqRopeLong : 0)));
  const size_t o_pt = at;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& pg = slots_[i].pages;
    for (int64_t j = 0; j < pages_per_seq_; ++j) put(j < int64_t(pg.size()) ? pg[size_t(j)] : -1);
  }
  SALA_CHECK(at <= step_ints_ - size_t(plan_.max_step_rows));
  SALA_CUDA_CHECK(cudaMemcpyAsync(step_buf_.p, h, at * 4, cudaMemcpyHostToDevice, stream_));
  const int32_t* d = step_buf_.as<int32_t>();
  d_tokens_ = const_cast<int32_t*>(d + o_tok);
  rows_.N = N;
  rows_.S = S;
  rows_.pos = d + o_pos;
  rows_.row_seq = d + o_rs;
  rows_.cu_seqlens = d + o_cu;
  rows_.slot = d + o_slot;
  rows_.pos0 = d + o_pos0;
  rows_.call_len = d + o_cl;
  rows_.flags = reinterpret_cast<const uint32_t*>(d + o_fl);
  rows_.page_table = d + o_pt;
  rows_.pt_stride = int(pages_per_seq_);
  n_rows_ = N;
  sel_valid_ = false;
  // The pinned mirror is reused by the next step: wait for this upload before returning (no host sync in kernels).
  SALA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (profiling_) resolve_profile();  // the stream has passed the previous steps' marks
  const bool decode = N == S && N <= kMaxGraphRows;
  if (decode) max_ctx_ = std::min<int>(ctx_bucket(max_ctx_), int(std::min<int64_t>(plan_.max_tokens, INT32_MAX)));
  if (!decode || !st.replayable || !graphs_enabled_ || profiling_) return;
  graph_key_ = GraphKey{N, S, max_ctx_, any_sparse_};
  Graph& g = graphs_[graph_key_];
  if (g.exec) {
    mode_ = Mode::Replay;
  } else if (++g.seen >= 2) {  // the first run of a shape is eager: it makes plans, tunes GEMMs, sizes buffers
    SALA_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    mode_ = Mode::Capture;
  }
}

void CudaBackend::end_replayable() {
  if (mode_ == Mode::Eager) return;
  Graph& g = graphs_.at(graph_key_);
  if (mode_ == Mode::Capture) {
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(stream_, &graph);
    mode_ = Mode::Eager;
    if (e != cudaSuccess || !graph) {
      cudaGetLastError();
      graphs_.erase(graph_key_);
      SALA_CUDA_CHECK(e);
      throw InternalError("cuda: the recorded decode step is empty");
    }
    const cudaError_t ie = cudaGraphInstantiate(&g.exec, graph, 0);
    cudaGraphDestroy(graph);
    if (ie != cudaSuccess) {
      g.exec = nullptr;
      graphs_.erase(graph_key_);
      SALA_CUDA_CHECK(ie);
    }
  }
  mode_ = Mode::Eager;
  SALA_CUDA_CHECK(cudaGraphLaunch(g.exec, stream_));
}

Peaks CudaBackend::measure_peaks() {
  Peaks p;
  cudaEvent_t e0, e1;
  SALA_CUDA_CHECK(cudaEventCreate(&e0));
  SALA_CUDA_CHECK(cudaEventCreate(&e1));
  auto time = [&](auto&& f, int reps) {
    f();  // warm-up (plans, handles)
    SALA_CUDA_CHECK(cudaEventRecord(e0, stream_));
    for (int r = 0; r < reps; ++r) f();
    SALA_CUDA_CHECK(cudaEventRecord(e1, stream_));
    SALA_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    SALA_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    return double(ms) / 1e3 / reps;
  };
  {  // bf16 GEMM 8192^3 on random data (zeros run faster than real data)
    const int n = 8192;
    DevMem a, b, c;
    a.alloc(size_t(n) * n * 2, "the GEMM peak");
    b.alloc(size_t(n) * n * 2, "the GEMM peak");
    c.alloc(size_t(n) * n * 2, "the GEMM peak");
    fill_random_bf16(a.p, size_t(n) * n, 1.f, 1, stream_);
    fill_random_bf16(b.p, size_t(n) * n, 1.f, 2, stream_);
    const double s = time([&] { gemm_->matmul(c.as<bf16>(), n, a.as<bf16>(), n, b.as<bf16>(), n, n, n, stream_); }, 10);
    p.matmul_tflops = 2.0 * double(n) * n * n / s / 1e12;
  }
  {  // device-to-device copy of 2 GiB, read + write counted
    const size_t bytes = size_t(2) << 30;
    DevMem a, b;
    a.alloc(bytes, "the bandwidth peak");
    b.alloc(bytes, "the bandwidth peak");
    SALA_CUDA_CHECK(cudaMemsetAsync(a.p, 1, bytes, stream_));
    const double s = time([&] { SALA_CUDA_CHECK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice, stream_)); }, 10);
    p.copy_gbs = 2.0 * double(bytes) / s / 1e9;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  p.how = "cuda: cuBLASLt bf16 GEMM 8192^3 on random data, mean of 10; device copy of 2 GiB (read + write), mean of 10";
  return p;
}

std::unique_ptr<Backend> make(std::string* why_not) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    cudaGetLastError();
    if (why_not) *why_not = e == cudaSuccess ? "no CUDA GPU found" : std::string("no usable CUDA GPU: ") +
                                                                         cudaGetErrorString(e);
    return nullptr;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    if (why_not) *why_not = "cannot query the CUDA GPU";
    return nullptr;
  }
  if (p.major != 9 || p.minor != 0) {
    if (why_not)
      *why_not = fmt::format("sala's kernels are built for sm_90a (H100/H200); GPU 0 ({}) is compute capability {}.{}",
                             p.name, p.major, p.minor);
    return nullptr;
  }
  return std::make_unique<CudaBackend>(0);
}

}  // namespace

void register_backend() { register_cuda_backend(&make); }

}  // namespace sala::cuda
