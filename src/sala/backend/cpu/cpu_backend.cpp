// The CPU backend: the exact fp32 oracle. Weights stay in their stored dtype (views into the mapped checkpoint or
// into fp32 vectors) and are widened inside the matmul tiles, so results are bitwise those of fp32 copies. Fused
// matrices keep their parts apart (one matmul each). The cache holds, per slot and attention layer, every key and value
// in fp32 and the compressed keys grown as the reference grows them; per Lightning layer the fp32 state.
// Varlen steps run sequence by sequence for the attention-like ops: a sequence's result does not depend on the others.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <list>

#include "sala/backend/backend.h"
#include "sala/backend/cpu/attention.h"
#include "sala/backend/cpu/infllmv2.h"
#include "sala/backend/cpu/lightning.h"
#include "sala/backend/cpu/ops.h"
#include "sala/backend/cpu/rope.h"
#include "sala/core/error.h"
#include "sala/core/parallel.h"
#include "sala/core/rng.h"
#include "sala/model/config.h"

namespace sala {


namespace {

struct LayerSpec {
  LayerKind kind = LayerKind::Dense;
  int64_t kv_heads = 0, head_dim = 0;            // attention layers
  int64_t k1_kernel = 0, k1_stride = 0;          // sparse layers (K2: 4x)
  int64_t state_heads = 0, state_dim = 0;        // lightning layers
};

struct LayerCache {
  std::vector<float> k, v;           // (T, kv_heads, head_dim)
  cpu::CompressedKeys k1, k2;        // sparse layers only
  std::vector<float> state;          // lightning: (H, D, D)
};

struct Slot {
  bool used = false;
  int64_t tokens = 0;
  std::vector<LayerCache> layers;
};

float* f32(const Act& a) { return static_cast<float*>(a.data); }

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string describe() const override;
  DType act_dtype() const override { return DType::F32; }

  Mat add_matrix(std::span<const HostTensor> parts) override {
    SALA_CHECK(!parts.empty());
    Mat m{int(mats_.size()), 0, parts[0].cols};
    mat_labels_.push_back(matrix_label(parts));
    mats_.emplace_back();
    for (const auto& p : parts) {
      SALA_CHECK(p.cols == m.in);
      m.out += p.rows;
      mats_.back().push_back(p.data ? p : make_random(p));
    }
    return m;
  }
  Vec add_vector(const HostTensor& t) override {
    const HostTensor h = t.data ? t : make_random(t);
    std::vector<float> v(size_t(h.rows * h.cols));
    convert_to_f32(v.data(), h.data, h.dtype, v.size());  // norms are small: exact fp32 copies
    vecs_.push_back(std::move(v));
    return Vec{int(vecs_.size() - 1), t.rows * t.cols};
  }

  Act scratch(int id, int64_t rows, int64_t cols, bool) override {
    if (size_t(id) >= scratch_.size()) scratch_.resize(size_t(id) + 1);
    auto& b = scratch_[size_t(id)];
    if (b.size() < size_t(rows * cols)) b.resize(size_t(rows * cols));
    return Act{b.data(), DType::F32, rows, cols, cols};
  }

  void plan_cache(const ModelConfig& c, const CachePlan& p) override;
  int acquire_slot(int64_t max_tokens) override;
  void release_slot(int slot) override {
    if (slot < 0 || size_t(slot) >= slots_.size()) return;
    slots_[size_t(slot)] = Slot{};  // frees its memory
  }
  void reset_slot(int slot) override;
  void copy_slot(int dst, int src) override { slots_.at(size_t(dst)) = slots_.at(size_t(src)); }
  int64_t cached_tokens(int slot) const override { return slots_.at(size_t(slot)).tokens; }

  void begin_step(const Step& s) override { step_ = &s; }
  void embed(Act h, Mat table, float scale) override;
  void add_rmsnorm(Act h, const Act* a, float a_scale, Act* out, Vec w, float eps, float post_div) override;
  void linear(Act y, const Act& x, Mat w) override;
  void qk_norm_rope(Act x, int64_t q_off, int64_t Hq, int64_t k_off, int64_t Hkv, int64_t D, Vec q_norm, Vec k_norm,
                    float eps, const RopeTables* rope) override;
  void silu_mul(Act out, const Act& gu) override;
  void mul_sigmoid(Act x, const Act& g) override;
  void rmsnorm_rows(Act x, Vec w, float eps) override;
  void lightning(Act o, const Act& x, int64_t q_off, int64_t k_off, int64_t v_off, int layer, const float* log_decay,
                 float scale, int64_t H, int64_t Hkv, int64_t D) override;
  void kv_append(int layer, const Act& x, int64_t k_off, int64_t v_off, bool compressed) override;
  void select(int layer, const Act& x, int64_t q_off, int64_t Hq, const SelectParams& p) override;
  void attention(Act o, const Act& x, int64_t q_off, int64_t Hq, int layer, float scale, int64_t block) override;
  void gather_rows(Act dst, const Act& src, std::span<const int32_t> rows) override;
  void read(std::vector<float>& out, const Act& a) override;
  void write(Act a, std::span<const float> host) override {
    SALA_CHECK(host.size() == size_t(a.rows * a.cols));
    for (int64_t r = 0; r < a.rows; ++r)
      std::memcpy(f32(a) + r * a.ld, host.data() + r * a.cols, size_t(a.cols) * sizeof(float));
  }
  void read_selection(std::vector<int32_t>& out) override { out = sel_; }
  Peaks measure_peaks() override;
  void read_state(std::vector<float>& out, int layer, int slot) override {
    out = slots_.at(size_t(slot)).layers.at(size_t(layer)).state;
  }
  void set_profiling(bool on) override { profiling_ = on; }
  std::vector<OpTime> take_profile() override { return prof_.take(); }

 private:
  LayerCache& cache(int slot, int layer) { return slots_.at(size_t(slot)).layers.at(size_t(layer)); }
  // Rows [row0, row0 + n) of columns [c0, c0 + width) of x, copied contiguous (the CPU ops take (n, heads, dim)).
  static void copy_cols(std::vector<float>& dst, const Act& x, int64_t row0, int64_t n, int64_t c0, int64_t width);

  // A tensor the backend makes itself (HostTensor without data): fp32, normal(0, std) or ones.
  HostTensor make_random(const HostTensor& t) {
    owned_.emplace_back(size_t(t.rows * t.cols));
    auto& v = owned_.back();
    if (t.random_std == 0) {
      std::fill(v.begin(), v.end(), 1.0f);
    } else {
      Rng(t.random_seed).fill_normal(v.data(), int64_t(v.size()), t.random_std);
    }
    HostTensor h = t;
    h.dtype = DType::F32;
    h.data = v.data();
    return h;
  }

  std::vector<std::vector<HostTensor>> mats_;
  std::list<std::vector<float>> owned_;  // tensors made by make_random (list: stable addresses)
  std::vector<std::vector<float>> vecs_;
  std::vector<std::vector<float>> scratch_;
  std::vector<LayerSpec> specs_;
  std::vector<Slot> slots_;
  const Step* step_ = nullptr;
  std::vector<int32_t> sel_;  // last selection, (N, Hkv, K)
  int64_t sel_K_ = 0;
  // --profile: every op timed by the wall clock (the CPU ops are synchronous)
  bool profiling_ = false;
  OpTimes prof_;
  std::vector<std::string> mat_labels_;
  struct Timed {
    CpuBackend* be;
    std::string_view op;
    std::chrono::steady_clock::time_point t0;
    Timed(CpuBackend* b, std::string_view o) : be(b), op(o) {
      if (b->profiling_) t0 = std::chrono::steady_clock::now();
    }
    ~Timed() {
      if (be->profiling_)
        be->prof_.add(op, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  };
};

std::string CpuBackend::describe() const {
  return fmt::format("cpu ({} threads, fp32)", omp_get_max_threads());
}

void CpuBackend::plan_cache(const ModelConfig& c, const CachePlan& p) {
  for (const Slot& s : slots_)
    if (s.used) fail("cache plan: sequences of the old plan are still alive");
  specs_.assign(size_t(c.num_hidden_layers), LayerSpec{});
  int64_t bytes_per_token = 0, bytes_per_seq = 0;
  for (size_t l = 0; l < specs_.size(); ++l) {
    LayerSpec& s = specs_[l];
    s.kind = c.layer_kinds[l];
    switch (s.kind) {
      case LayerKind::Sparse:
        s.kv_heads = c.num_key_value_heads;
        s.head_dim = c.sparse_head_dim();
        s.k1_kernel = c.sparse.kernel_size;
        s.k1_stride = c.sparse.kernel_stride;
        bytes_per_token += 2 * s.kv_heads * s.head_dim * 4;
        bytes_per_token += s.kv_heads * s.head_dim * 4 * 5 / (4 * s.k1_stride);  // K1 + K2 windows
        break;
      case LayerKind::Dense:
        s.kv_heads = c.num_key_value_heads;
        s.head_dim = c.dense_head_dim();
        bytes_per_token += 2 * s.kv_heads * s.head_dim * 4;
        break;
      case LayerKind::Lightning:
        s.state_heads = c.lightning_heads();
        s.state_dim = c.lightning_dim();
        bytes_per_seq += s.state_heads * s.state_dim * s.state_dim * 4;
        break;
    }
  }
  // The CPU cache grows with the tokens it holds; refuse up front what could never fit in this machine's memory.
  const int64_t tokens = p.total_tokens > 0 ? p.total_tokens : p.max_seqs * p.max_tokens;
  const double need = double(tokens) * double(bytes_per_token) + double(p.max_seqs) * double(bytes_per_seq);
  const double have = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  if (have > 0 && need > have)
    fail("the cache for {} sequences of {} tokens needs {:.2f} GiB of fp32 KV and state, more than this machine's "
         "{:.2f} GiB of memory; lower --context",
         p.max_seqs, p.max_tokens, need / double(1ull << 30), have / double(1ull << 30));
}

int CpuBackend::acquire_slot(int64_t) {
  SALA_CHECK(!specs_.empty());
  size_t i = 0;
  while (i < slots_.size() && slots_[i].used) ++i;
  if (i == slots_.size()) slots_.emplace_back();
  Slot& s = slots_[i];
  s.used = true;
  s.tokens = 0;
  s.layers.assign(specs_.size(), LayerCache{});
  for (size_t l = 0; l < specs_.size(); ++l) {
    const LayerSpec& sp = specs_[l];
    LayerCache& L = s.layers[l];
    if (sp.kind == LayerKind::Sparse) {
      L.k1.init(sp.k1_kernel, sp.k1_stride, sp.kv_heads, sp.head_dim);
      L.k2.init(4 * sp.k1_kernel, 4 * sp.k1_stride, sp.kv_heads, sp.head_dim);
    }
    if (sp.kind == LayerKind::Lightning) L.state.assign(size_t(sp.state_heads * sp.state_dim * sp.state_dim), 0.0f);
  }
  return int(i);
}

void CpuBackend::reset_slot(int slot) {
  Slot& s = slots_.at(size_t(slot));
  s.tokens = 0;
  for (auto& L : s.layers) {
    L.k.clear();
    L.v.clear();
    L.k1.clear();
    L.k2.clear();
    std::fill(L.state.begin(), L.state.end(), 0.0f);
  }
}

void CpuBackend::copy_cols(std::vector<float>& dst, const Act& x, int64_t row0, int64_t n, int64_t c0, int64_t width) {
  dst.resize(size_t(n * width));
  const float* p = f32(x) + row0 * x.ld + c0;
  for (int64_t t = 0; t < n; ++t) std::memcpy(dst.data() + t * width, p + t * x.ld, size_t(width) * sizeof(float));
}

void CpuBackend::embed(Act h, Mat table, float scale) {
  const Timed timed(this, "embed");
  const HostTensor& t = mats_.at(size_t(table.id)).at(0);
  const int64_t hid = t.cols;
  SALA_CHECK(h.cols == hid);
  const size_t es = dtype_size(t.dtype);
  for (int64_t r = 0; r < h.rows; ++r) {
    const auto* row = static_cast<const std::byte*>(t.data) + size_t(step_->tokens[size_t(r)]) * size_t(hid) * es;
    float* o = f32(h) + r * h.ld;
    convert_to_f32(o, row, t.dtype, size_t(hid));
    for (int64_t i = 0; i < hid; ++i) o[i] = o[i] * scale;
  }
}

void CpuBackend::add_rmsnorm(Act h, const Act* a, float a_scale, Act* out, Vec w, float eps, float post_div) {
  const Timed timed(this, out ? "add + rmsnorm" : "add (residual)");
  SALA_CHECK(h.ld == h.cols && (!a || a->ld == a->cols) && (!out || out->ld == out->cols));
  if (a) cpu::axpy(f32(h), f32(*a), a_scale, h.rows * h.cols);
  if (!out) return;
  cpu::rmsnorm(f32(*out), f32(h), vecs_.at(size_t(w.id)).data(), h.rows, h.cols, eps);
  if (post_div != 1.0f)
    for (int64_t i = 0; i < out->rows * out->cols; ++i) f32(*out)[i] /= post_div;
}

void CpuBackend::linear(Act y, const Act& x, Mat w) {
  const Timed timed(this, mat_labels_.at(size_t(w.id)));
  const auto& parts = mats_.at(size_t(w.id));
  SALA_CHECK(y.cols == w.out && x.cols == w.in && x.rows == y.rows);
  int64_t col = 0;
  for (const HostTensor& p : parts) {
    cpu::matmul_w(f32(y) + col, y.ld, f32(x), x.ld, p.data, p.dtype, x.rows, p.cols, p.rows);
    col += p.rows;
  }
}

void CpuBackend::qk_norm_rope(Act x, int64_t q_off, int64_t Hq, int64_t k_off, int64_t Hkv, int64_t D, Vec q_norm,
                              Vec k_norm, float eps, const RopeTables* rope) {
  const Timed timed(this, q_norm ? "qk norm + rope" : "rope");
  std::vector<float> q, k;
  for (const StepSeq& s : step_->seqs) {
    copy_cols(q, x, s.row0, s.n, q_off, Hq * D);
    copy_cols(k, x, s.row0, s.n, k_off, Hkv * D);
    if (q_norm) cpu::rmsnorm(q.data(), q.data(), vecs_.at(size_t(q_norm.id)).data(), s.n * Hq, D, eps);
    if (k_norm) cpu::rmsnorm(k.data(), k.data(), vecs_.at(size_t(k_norm.id)).data(), s.n * Hkv, D, eps);
    if (rope) {
      cpu::rope_apply(q.data(), s.n, Hq, *rope, s.pos0, s.call_pos0 + s.call_len);
      cpu::rope_apply(k.data(), s.n, Hkv, *rope, s.pos0, s.call_pos0 + s.call_len);
    }
    float* base = f32(x) + s.row0 * x.ld;
    for (int64_t t = 0; t < s.n; ++t) {
      std::memcpy(base + t * x.ld + q_off, q.data() + t * Hq * D, size_t(Hq * D) * sizeof(float));
      std::memcpy(base + t * x.ld + k_off, k.data() + t * Hkv * D, size_t(Hkv * D) * sizeof(float));
    }
  }
}

void CpuBackend::silu_mul(Act out, const Act& gu) {
  const Timed timed(this, "silu * up");
  const int64_t inter = out.cols;
  SALA_CHECK(gu.cols == 2 * inter && out.ld == inter);
  std::vector<float> g, u;
  copy_cols(g, gu, 0, gu.rows, 0, inter);
  copy_cols(u, gu, 0, gu.rows, inter, inter);
  cpu::silu_mul(f32(out), g.data(), u.data(), out.rows * inter);
}

void CpuBackend::mul_sigmoid(Act x, const Act& g) {
  const Timed timed(this, "* sigmoid(gate)");
  SALA_CHECK(x.ld == x.cols);
  std::vector<float> gc;
  copy_cols(gc, g, 0, g.rows, 0, g.cols);
  cpu::mul_sigmoid(f32(x), gc.data(), x.rows * x.cols);
}

void CpuBackend::rmsnorm_rows(Act x, Vec w, float eps) {
  const Timed timed(this, "rmsnorm rows");
  SALA_CHECK(x.ld == x.cols);
  cpu::rmsnorm(f32(x), f32(x), vecs_.at(size_t(w.id)).data(), x.rows, x.cols, eps);
}

void CpuBackend::lightning(Act o, const Act& x, int64_t q_off, int64_t k_off, int64_t v_off, int layer,
                           const float* log_decay, float scale, int64_t H, int64_t Hkv, int64_t D) {
  const Timed timed(this, "lightning");
  SALA_CHECK(o.ld == H * D);
  std::vector<float> q, k, v, ke, ve;
  for (const StepSeq& s : step_->seqs) {
    LayerCache& C = cache(s.slot, layer);
    if (s.fresh) std::fill(C.state.begin(), C.state.end(), 0.0f);
    copy_cols(q, x, s.row0, s.n, q_off, H * D);
    copy_cols(k, x, s.row0, s.n, k_off, Hkv * D);
    copy_cols(v, x, s.row0, s.n, v_off, Hkv * D);
    if (Hkv != H) {  // GQA lightning: each query head reads its group's k, v
      const int64_t group = H / Hkv;
      ke.resize(size_t(s.n * H * D));
      ve.resize(size_t(s.n * H * D));
      for (int64_t t = 0; t < s.n; ++t)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t d = 0; d < D; ++d) {
            ke[size_t((t * H + h) * D + d)] = k[size_t((t * Hkv + h / group) * D + d)];
            ve[size_t((t * H + h) * D + d)] = v[size_t((t * Hkv + h / group) * D + d)];
          }
      k.swap(ke);
      v.swap(ve);
    }
    float* out = f32(o) + s.row0 * o.ld;
    if (s.n == 1)
      cpu::lightning_recurrent(out, q.data(), k.data(), v.data(), C.state.data(), log_decay, scale, s.n, H, D);
    else
      cpu::lightning_chunked(out, q.data(), k.data(), v.data(), C.state.data(), log_decay, scale, s.n, H, D, 64);
  }
}

void CpuBackend::kv_append(int layer, const Act& x, int64_t k_off, int64_t v_off, bool compressed) {
  const Timed timed(this, compressed ? "kv append + K1/K2" : "kv append");
  const LayerSpec& sp = specs_.at(size_t(layer));
  const int64_t w = sp.kv_heads * sp.head_dim;
  std::vector<float> k, v;
  for (const StepSeq& s : step_->seqs) {
    LayerCache& C = cache(s.slot, layer);
    copy_cols(k, x, s.row0, s.n, k_off, w);
    copy_cols(v, x, s.row0, s.n, v_off, w);
    C.k.insert(C.k.end(), k.begin(), k.end());
    C.v.insert(C.v.end(), v.begin(), v.end());
    if (compressed) {
      C.k1.append(k.data(), s.n);
      C.k2.append(k.data(), s.n);
    }
    slots_.at(size_t(s.slot)).tokens = int64_t(C.k.size()) / w;
  }
}

void CpuBackend::select(int layer, const Act& x, int64_t q_off, int64_t Hq, const SelectParams& p) {
  const Timed timed(this, "select (stage 1 + top-k)");
  const LayerSpec& sp = specs_.at(size_t(layer));
  const int64_t Hkv = sp.kv_heads, D = sp.head_dim, K = p.topk_total, N = step_->rows();
  sel_.assign(size_t(N * Hkv * K), -1);
  sel_K_ = K;
  cpu::SelectParams cp;
  cp.block = p.block;
  cp.stride = p.stride;
  cp.topk_total = p.topk_total;
  cp.local_blocks = p.local_blocks;
  cp.init_blocks = p.init_blocks;
  cp.scale = p.scale;
  std::vector<float> q;
  std::vector<int32_t> idx;
  for (const StepSeq& s : step_->seqs) {
    if (!s.sparse) continue;
    const LayerCache& C = cache(s.slot, layer);
    copy_cols(q, x, s.row0, s.n, q_off, Hq * D);
    idx.resize(size_t(Hkv * s.n * K));
    cpu::infllmv2_select(idx.data(), q.data(), C.k1, C.k2, s.n, s.pos0, s.call_len, Hq, cp);
    for (int64_t g = 0; g < Hkv; ++g)  // (Hkv, n, K) -> the step's (N, Hkv, K)
      for (int64_t t = 0; t < s.n; ++t)
        std::memcpy(sel_.data() + ((s.row0 + t) * Hkv + g) * K, idx.data() + (g * s.n + t) * K,
                    size_t(K) * sizeof(int32_t));
  }
}

void CpuBackend::attention(Act o, const Act& x, int64_t q_off, int64_t Hq, int layer, float scale, int64_t block) {
  const LayerSpec& sp = specs_.at(size_t(layer));
  const Timed timed(this, sp.kind != LayerKind::Sparse ? "attention dense"
                          : step_->any_sparse()    ? "attention sparse"
                                                   : "attention (sparse layer, dense call)");
  const int64_t Hkv = sp.kv_heads, D = sp.head_dim;
  SALA_CHECK(o.ld == Hq * D);
  std::vector<float> q;
  std::vector<int32_t> idx;
  for (const StepSeq& s : step_->seqs) {
    const LayerCache& C = cache(s.slot, layer);
    copy_cols(q, x, s.row0, s.n, q_off, Hq * D);
    float* out = f32(o) + s.row0 * o.ld;
    if (!s.sparse || sp.kind != LayerKind::Sparse) {
      cpu::attention_causal(out, q.data(), C.k.data(), C.v.data(), s.n, s.pos0, Hq, Hkv, D, scale);
      continue;
    }
    const int64_t K = sel_K_;
    idx.resize(size_t(Hkv * s.n * K));
    for (int64_t g = 0; g < Hkv; ++g)
      for (int64_t t = 0; t < s.n; ++t)
        std::memcpy(idx.data() + (g * s.n + t) * K, sel_.data() + ((s.row0 + t) * Hkv + g) * K,
                    size_t(K) * sizeof(int32_t));
    cpu::attention_block_sparse(out, q.data(), C.k.data(), C.v.data(), idx.data(), K, block, s.n, s.pos0, Hq, Hkv, D,
                                scale);
  }
}

void CpuBackend::gather_rows(Act dst, const Act& src, std::span<const int32_t> rows) {
  const Timed timed(this, "gather rows");
  SALA_CHECK(dst.cols == src.cols && dst.rows == int64_t(rows.size()));
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(f32(dst) + int64_t(i) * dst.ld, f32(src) + rows[i] * src.ld, size_t(src.cols) * sizeof(float));
}

void CpuBackend::read(std::vector<float>& out, const Act& a) { copy_cols(out, a, 0, a.rows, 0, a.cols); }

Peaks CpuBackend::measure_peaks() {
  using clk = std::chrono::steady_clock;
  Peaks p;
  // fp32 matmul of 384 rows over a 2048 x 2048 weight (the tiled kernel at its best), best of 3
  const int64_t T = 384, n = 2048;
  std::vector<float> x(size_t(T * n), 0.5f), w(size_t(n * n), 0.25f), y(size_t(T * n));
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    auto t0 = clk::now();
    cpu::matmul(y.data(), x.data(), w.data(), T, n, n);
    best = std::min(best, std::chrono::duration<double>(clk::now() - t0).count());
  }
  p.matmul_tflops = 2.0 * double(T * n * n) / best / 1e12;
  std::vector<char> a(size_t(1) << 28, 1), b(a.size());
  best = 1e30;
  for (int r = 0; r < 3; ++r) {
    auto t0 = clk::now();
    std::memcpy(b.data(), a.data(), a.size());
    best = std::min(best, std::chrono::duration<double>(clk::now() - t0).count());
  }
  p.copy_gbs = 2.0 * double(a.size()) / best / 1e9;
  p.how = fmt::format("cpu: fp32 matmul {}x{}x{}, memcpy of 256 MiB, best of 3", T, n, n);
  return p;
}

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace sala
