#include "sala/model/model.h"

#include <algorithm>
#include <cmath>

#include "sala/core/error.h"
#include "sala/io/checkpoint.h"

namespace sala {

std::vector<double> alibi_slopes(int64_t n) {
  auto pow2 = [](int64_t m) {
    double start = std::pow(2.0, -std::pow(2.0, -(std::log2(double(m)) - 3)));
    std::vector<double> s(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) s[size_t(i)] = start * std::pow(start, double(i));  // as HF: start * ratio**i
    return s;
  };
  if (n <= 0) return {};
  const double l = std::log2(double(n));
  if (l == std::floor(l)) return pow2(n);
  const int64_t cp = int64_t(1) << int64_t(std::floor(l));
  std::vector<double> s = pow2(cp), extra = alibi_slopes(2 * cp);
  for (int64_t i = 0; int64_t(s.size()) < n; i += 2) s.push_back(extra[size_t(i)]);
  return s;
}

namespace {

// Scratch buffers of a step (Backend::scratch ids).
enum Scratch : int { kH, kXn, kQkv, kO, kA, kGu, kM, kHLast, kFinal, kLogits };

std::string layer_tag(int64_t l) { return "L" + std::to_string(l) + "."; }

std::unique_ptr<Backend> make_backend(Device d) {
  if (d == Device::CPU) return make_cpu_backend();
  std::string why;
  auto b = make_cuda_backend(&why);
  if (!b) fail("--device cuda: {}", why);
  return b;
}

HostTensor host_view(const TensorSpec& s, DType dt, const void* data) {
  const int64_t rows = s.shape.size() > 1 ? s.shape[0] : 1, cols = s.shape.back();
  return HostTensor{s.name, dt, data, rows, cols};
}

}  // namespace

Model::Model(ModelConfig c, Weights w, Device device) : cfg_(std::move(c)), be_(make_backend(device)) {
  host_ = std::make_unique<Weights>(std::move(w));
  const Weights& hw = *host_;
  upload([&](const TensorSpec& s) { return host_view(s, DType::F32, hw.get(s).data()); });
}

Model Model::load(const std::string& dir, const LoadOptions& opt) {
  ModelConfig c = load_config(dir);
  auto ck = std::make_unique<io::Checkpoint>(io::Checkpoint::open(dir));
  validate_checkpoint(c, *ck);
  if (opt.check_finite) check_weights_finite(c, *ck);
  // The weights stay where they are (a view into the mapped file, in their stored dtype): the CPU backend widens
  // them inside its matmul tiles, the CUDA backend uploads them once.
  Model m(std::move(c), std::move(ck), opt.device);
  return m;
}

Model::Model(ModelConfig c, std::unique_ptr<io::Checkpoint> ck, Device device)
    : cfg_(std::move(c)), be_(make_backend(device)), ckpt_(std::move(ck)) {
  upload([&](const TensorSpec& s) {
    const io::TensorInfo* t = ckpt_->find(s.name);
    SALA_CHECK(t != nullptr);
    if (t->dtype == DType::F32 || t->dtype == DType::BF16 || t->dtype == DType::F16) {
      auto b = ckpt_->bytes(s.name);
      if (reinterpret_cast<uintptr_t>(b.data()) % dtype_size(t->dtype) == 0) return host_view(s, t->dtype, b.data());
    }
    // F64, or data not aligned for its dtype (safetensors does not pad): an aligned fp32 copy.
    widened_.push_back(ckpt_->read_f32(s.name));
    return host_view(s, DType::F32, widened_.back().data());
  });
}

Model Model::random(ModelConfig c, uint64_t seed, Device device) {
  return Model(std::move(c), device, seed);
}

Model::Model(ModelConfig c, Device device, uint64_t seed) : cfg_(std::move(c)), be_(make_backend(device)) {
  const float std = float(cfg_.initializer_range);
  upload([&](const TensorSpec& s) {
    HostTensor t = host_view(s, DType::F32, nullptr);
    t.random_std = s.is_norm() ? 0.0f : std;
    uint64_t h = seed;
    for (unsigned char ch : s.name) h = (h ^ ch) * 0x100000001b3ull;
    t.random_seed = h;
    return t;
  });
}

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const Weights& Model::weights() const {
  if (!host_ && !ckpt_) fail("the weights of this model were made on the {} and have no host copy", device_name(device()));
  if (!host_) host_ = std::make_unique<Weights>(load_weights(cfg_, *ckpt_));
  return *host_;
}

void Model::upload(const std::function<HostTensor(const TensorSpec&)>& source) {
  const int64_t maxp = cfg_.max_position_embeddings;
  rope_dense_ = make_rope_tables(cfg_.rope, cfg_.dense_head_dim(), maxp);
  if (cfg_.is_sala()) {
    rope_sparse_ = make_rope_tables(cfg_.rope, cfg_.sparse_head_dim(), maxp);
    rope_lightning_ = make_rope_tables(cfg_.rope, cfg_.lightning_dim(), maxp);
    for (double s : alibi_slopes(cfg_.lightning_heads())) log_decay_.push_back(float(-s));
  }
  // Group the tensor table into the matrices the forward uses; the fused ones list their parts in column order.
  std::vector<HostTensor> parts;
  layers_.assign(size_t(cfg_.num_hidden_layers), LayerHandles{});
  std::vector<std::vector<HostTensor>> qkv(layers_.size()), gu(layers_.size());
  std::vector<HostTensor> extra_qkv(layers_.size());  // o_gate / z: after q, k, v (by name: random ones have no data)
  for (const TensorSpec& s : tensor_specs(cfg_)) {
    const HostTensor t = source(s);
    if (s.layer < 0) {
      if (s.role == TensorRole::Embed) embed_ = be_->add_matrix(std::span(&t, 1));
      else if (s.role == TensorRole::LmHead) lm_head_ = be_->add_matrix(std::span(&t, 1));
      else if (s.role == TensorRole::FinalNorm) final_norm_ = be_->add_vector(t);
      continue;
    }
    LayerHandles& L = layers_[size_t(s.layer)];
    L.kind = cfg_.layer_kinds[size_t(s.layer)];
    switch (s.role) {
      case TensorRole::InNorm: L.in_norm = be_->add_vector(t); break;
      case TensorRole::PostNorm: L.post_norm = be_->add_vector(t); break;
      case TensorRole::QNorm: L.q_norm = be_->add_vector(t); break;
      case TensorRole::KNorm: L.k_norm = be_->add_vector(t); break;
      case TensorRole::ONorm: L.o_norm = be_->add_vector(t); break;
      case TensorRole::Q: case TensorRole::K: case TensorRole::V: qkv[size_t(s.layer)].push_back(t); break;
      case TensorRole::OGate: case TensorRole::Z: extra_qkv[size_t(s.layer)] = t; break;
      case TensorRole::O: L.o = be_->add_matrix(std::span(&t, 1)); break;
      case TensorRole::Gate: case TensorRole::Up: gu[size_t(s.layer)].push_back(t); break;
      case TensorRole::Down: L.down = be_->add_matrix(std::span(&t, 1)); break;
      default: SALA_CHECK(false);
    }
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto& q = qkv[l];
    SALA_CHECK(q.size() == 3 && gu[l].size() == 2);
    if (!extra_qkv[l].name.empty()) q.push_back(extra_qkv[l]);
    layers_[l].qkv = be_->add_matrix(q);
    layers_[l].gate_up = be_->add_swiglu_matrix(gu[l][0], gu[l][1]);  // read only by linear_silu_mul
  }
  if (!lm_head_) lm_head_ = embed_;  // tied
  be_->finish_weights();
  // The default plan: one sequence of max_position_embeddings tokens; on a GPU at most 64K (a 2M-token dense cache
  // would not fit): `plan` sizes it for the run (the CLI does so from --context).
  CachePlan plan;
  plan.max_seqs = 1;
  plan.max_tokens = be_->device() == Device::CUDA ? std::min<int64_t>(cfg_.max_position_embeddings, 65536)
                                                  : cfg_.max_position_embeddings;
  plan.max_step_rows = kDefaultChunk;
  this->plan(plan);
}

void Model::plan(const CachePlan& p) {
  if (p.max_seqs < 1 || p.max_tokens < 1 || p.max_step_rows < 1)
    fail("cache plan: sequences ({}), context ({}) and step rows ({}) must be positive", p.max_seqs, p.max_tokens,
         p.max_step_rows);
  be_->plan_cache(cfg_, p);
  plan_ = p;
}

SequenceState Model::new_state(int64_t max_len) const {
  const int64_t n = max_len > 0 ? max_len : std::min(cfg_.max_position_embeddings, plan_.max_tokens);
  return SequenceState(be_, be_->acquire_slot(n), n);
}

SequenceState Model::clone_state(const SequenceState& st) const {
  if (st.backend() != be_.get() || !st.valid()) fail("clone: the sequence state was created for a different model");
  SequenceState c = new_state(st.max_len);
  be_->copy_slot(c.slot(), st.slot());
  c.pos = st.pos;
  c.poisoned = st.poisoned;
  c.call = st.call;
  return c;
}

void Model::check_ids(std::span<const int32_t> ids) const {
  const int64_t V = cfg_.vocab_size;
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] < 0 || ids[t] >= V)
      fail("token id {} at input position {} is outside the vocabulary [0, {})", ids[t], t, V);
}

void Model::check_state(const SequenceState& st) const {
  if (st.poisoned) fail("forward: this sequence's state is inconsistent after a failed call; reset it first");
  if (st.backend() != be_.get() || !st.valid())
    fail("forward: the sequence state was created for a different model config");
}

void Model::begin_call(SequenceState& st, int64_t len) const {
  check_state(st);
  if (len <= 0) fail("forward: empty input (no tokens)");
  if (st.pos + len > st.max_len)
    fail("prompt of {} tokens (+{} cached) exceeds the context limit of {} tokens", len, st.pos, st.max_len);
  st.call = CallSpec{st.pos, len};
}

void Model::check_item(const Item& it) const {
  SALA_CHECK(it.st != nullptr);
  const SequenceState& st = *it.st;
  const int64_t n = int64_t(it.ids.size()), pos0 = st.pos;
  if (n == 0) fail("forward: empty input (no tokens)");
  check_state(st);
  if (st.call.len == 0) fail("forward: no call is open for this sequence (Model::begin_call)");
  if (pos0 < st.call.pos0 || pos0 + n > st.call.end())
    fail("forward: tokens at positions [{}, {}) lie outside their call [{}, {})", pos0, pos0 + n, st.call.pos0,
         st.call.end());
  if (pos0 + n > st.max_len)
    fail("context limit exceeded: {} cached + {} new tokens > {} (max_position_embeddings {}; raise the limit with "
         "--context)", pos0, n, st.max_len, cfg_.max_position_embeddings);
  check_ids(it.ids);
}

bool Model::samples_on_device() const { return be_->samples(); }

std::vector<float> Model::prefill(std::span<const int32_t> ids, SequenceState& st, int64_t chunk, Trace* tr,
                                  bool all_rows, const std::function<void(int64_t, int64_t)>& progress,
                                  const Draw* draw) const {
  const int64_t n = int64_t(ids.size());
  if (n == 0) fail("prefill: empty prompt");
  check_ids(ids);     // the whole prompt before its first chunk touches the state
  begin_call(st, n);  // the state, the context limit
  if (chunk <= 0) chunk = kDefaultChunk;
  if (be_->device() == Device::CUDA) chunk = std::min(chunk, plan_.max_step_rows);  // step buffers are planned
  std::vector<float> out, part;
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t m = std::min(chunk, n - c0);
    const bool last = c0 + m == n;
    const bool want = all_rows || (last && !draw);
    const Item it{&st, ids.subspan(size_t(c0), size_t(m)), all_rows, want ? &part : nullptr, last ? draw : nullptr};
    step(std::span(&it, 1), tr);
    if (want) out.insert(out.end(), part.begin(), part.end());
    if (progress) progress(c0 + m, n);
  }
  end_call(st);
  return out;
}

std::vector<float> Model::decode(int32_t id, SequenceState& st, Trace* tr) const {
  std::vector<float> out;
  const int32_t ids[1] = {id};
  begin_call(st, 1);
  const Item it{&st, ids, false, &out};
  step(std::span(&it, 1), tr);
  end_call(st);
  return out;
}

int32_t Model::decode_draw(int32_t id, SequenceState& st, const Draw& draw) const {
  const int32_t ids[1] = {id};
  int32_t tok = -1;
  Draw d = draw;
  d.token = &tok;
  begin_call(st, 1);
  const Item it{&st, ids, false, nullptr, &d};
  step(std::span(&it, 1));
  end_call(st);
  return tok;
}

void Model::step(std::span<const Item> items, Trace* tr) const {
  if (items.empty()) return;
  if (tr && items.size() != 1) fail("forward: a trace covers one sequence per step");
  for (const Item& it : items) {
    check_item(it);
    if (it.draw && (!it.draw->params || !it.draw->token)) fail("forward: a draw without parameters or a token to fill");
    if (it.draw && !be_->samples())
      fail("forward: the {} backend does not sample; sample the logits on the host", device_name(be_->device()));
  }
  for (size_t i = 0; i < items.size(); ++i)
    for (size_t j = i + 1; j < items.size(); ++j)
      if (items[i].st == items[j].st) fail("forward: a sequence appears twice in one step");
  Step step;
  for (const Item& it : items) {
    const SequenceState& st = *it.st;
    StepSeq s;
    s.slot = st.slot();
    s.row0 = step.rows();
    s.n = int64_t(it.ids.size());
    s.pos0 = st.pos;
    s.call_pos0 = st.call.pos0;
    s.call_len = st.call.len;
    // §4.9 item 4: the mode is that of the whole call (prompt), decided by its last position.
    s.sparse = cfg_.is_sala() && st.call.end() >= cfg_.sparse.dense_len;
    s.fresh = st.pos == 0;
    s.rope_long = st.call.end() > rope_dense_.long_from;
    for (int64_t t = 0; t < s.n; ++t) {
      step.tokens.push_back(it.ids[size_t(t)]);
      step.pos.push_back(int32_t(st.pos + t));
      step.row_seq.push_back(int32_t(step.seqs.size()));
    }
    step.seqs.push_back(s);
  }
  step.replayable = tr == nullptr;
  // From here on the caches are being written: a failure leaves them out of line with pos, so the states are marked.
  try {
    run_step(step, items, tr);
  } catch (...) {
    for (const Item& it : items) it.st->poisoned = true;
    throw;
  }
  for (const Item& it : items) it.st->pos += int64_t(it.ids.size());
}

void Model::mixer(int l, const LayerHandles& L, const Act& xn, Act out, const Step& step, Trace* tr) const {
  const int64_t N = step.rows();
  const std::string tag = tr ? layer_tag(l) : std::string();
  const float eps = float(cfg_.rms_norm_eps);
  int64_t Hq, Hkv, D;
  if (L.kind == LayerKind::Sparse) Hq = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads, D = cfg_.sparse_head_dim();
  else if (L.kind == LayerKind::Lightning) Hq = cfg_.lightning_heads(), Hkv = cfg_.lightning_kv_heads(), D = cfg_.lightning_dim();
  else Hq = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads, D = cfg_.dense_head_dim();
  const int64_t q_off = 0, k_off = Hq * D, v_off = k_off + Hkv * D, g_off = v_off + Hkv * D;

  Act qkv = be_->scratch(kQkv, N, L.qkv.out);
  Act o = be_->scratch(kO, N, Hq * D);
  be_->linear(qkv, xn, L.qkv);
  const RopeTables* rope = nullptr;
  if (L.kind == LayerKind::Lightning && cfg_.lightning_use_rope) rope = &rope_lightning_;
  if (L.kind == LayerKind::Sparse && cfg_.attn_use_rope) rope = &rope_sparse_;
  if (L.kind == LayerKind::Dense) rope = &rope_dense_;
  const bool norm = L.kind == LayerKind::Lightning && cfg_.qk_norm;  // per head, one weight shared by all heads
  if (norm || rope) be_->qk_norm_rope(qkv, q_off, Hq, k_off, Hkv, D, norm ? L.q_norm : Vec{}, norm ? L.k_norm : Vec{},
                                      eps, rope);
  std::vector<float> buf;
  auto trace_act = [&](const std::string& name, const Act& a, std::vector<int64_t> shape) {
    be_->read(buf, a);
    tr->rows_f32(tag + name, buf.data(), std::move(shape));
  };
  if (tr) {
    trace_act("q", qkv.cols_view(q_off, Hq * D), {N, Hq, D});
    trace_act("k", qkv.cols_view(k_off, Hkv * D), {N, Hkv, D});
    trace_act("v", qkv.cols_view(v_off, Hkv * D), {N, Hkv, D});
  }

  if (L.kind == LayerKind::Lightning) {
    be_->lightning(o, qkv, q_off, k_off, v_off, l, log_decay_.data(), float(cfg_.lightning_q_scale()), Hq, Hkv, D);
    if (tr) {
      trace_act("attn", o, {N, Hq * D});
      be_->read_state(buf, l, step.seqs[0].slot);
      tr->set_f32(tag + "lightning.state", buf.data(), {Hq, D, D});
    }
    // one norm over all heads, then the gate z
    if (cfg_.use_output_norm && cfg_.use_output_gate) {
      be_->rmsnorm_rows_gate(o, L.o_norm, eps, qkv.cols_view(g_off, Hq * D));
    } else {
      if (cfg_.use_output_norm) be_->rmsnorm_rows(o, L.o_norm, eps);
      if (cfg_.use_output_gate) be_->mul_sigmoid(o, qkv.cols_view(g_off, Hq * D));
    }
  } else {
    const bool sparse_layer = L.kind == LayerKind::Sparse;
    be_->kv_append(l, qkv, k_off, v_off, sparse_layer);
    const SparseConfig& sc = cfg_.sparse;
    const float scale = float(1.0 / std::sqrt(double(D)));
    if (sparse_layer && step.any_sparse()) {
      Backend::SelectParams p;
      p.block = sc.block_size;
      p.stride = sc.kernel_stride;
      p.topk_total = sc.total_topk();
      p.local_blocks = sc.local_blocks();
      p.init_blocks = sc.init_blocks;
      p.scale = scale;
      be_->select(l, qkv, q_off, Hq, p);
      if (tr) {
        std::vector<int32_t> idx;
        be_->read_selection(idx);
        tr->rows_i32(tag + "sparse.topk_idx", idx.data(), {N, Hkv, p.topk_total});
      }
    }
    be_->attention(o, qkv, q_off, Hq, l, scale, sc.block_size);
    if (tr) trace_act("attn", o, {N, Hq * D});
    if (sparse_layer && cfg_.attn_use_output_gate) be_->mul_sigmoid(o, qkv.cols_view(g_off, Hq * D));
  }
  be_->linear(out, o, L.o);
}

void Model::run_step(const Step& step, std::span<const Item> items, Trace* tr) const {
  const int64_t N = step.rows(), hid = cfg_.hidden_size, inter = cfg_.intermediate_size;
  const float rs = float(cfg_.residual_scale()), eps = float(cfg_.rms_norm_eps);
  be_->begin_step(step);
  Act h = be_->scratch(kH, N, hid, /*f32=*/true);
  Act xn = be_->scratch(kXn, N, hid);
  Act a = be_->scratch(kA, N, hid);
  Act gu = be_->scratch(kGu, N, 2 * inter);
  Act m = be_->scratch(kM, N, inter);
  std::vector<float> buf;
  auto trace_act = [&](const std::string& name, const Act& x, std::vector<int64_t> shape) {
    be_->read(buf, x);
    tr->rows_f32(name, buf.data(), std::move(shape));
  };

  be_->embed(h, embed_, float(cfg_.scale_emb));
  if (tr) trace_act("embed", h, {N, hid});
  for (int l = 0; l < int(layers_.size()); ++l) {
    const LayerHandles& L = layers_[size_t(l)];
    const std::string tag = tr ? layer_tag(l) : std::string();
    // The previous layer's MLP output joins the residual inside this norm (one pass over h), unless traced.
    const bool pending = l > 0 && !tr;
    be_->add_rmsnorm(h, pending ? &a : nullptr, rs, &xn, L.in_norm, eps, 1.0f);
    if (tr) trace_act(tag + "attn_norm", xn, {N, hid});
    mixer(l, L, xn, a, step, tr);
    if (tr) trace_act(tag + "mixer_out", a, {N, hid});
    be_->add_rmsnorm(h, &a, rs, &xn, L.post_norm, eps, 1.0f);
    be_->linear_silu_mul(m, gu, xn, L.gate_up);  // F.silu(gate(x)) * up(x)
    be_->linear(a, m, L.down);
    if (tr) {
      trace_act(tag + "mlp_out", a, {N, hid});
      be_->add_rmsnorm(h, &a, rs, nullptr, L.in_norm, eps, 1.0f);
      trace_act(tag + "out", h, {N, hid});
    }
  }
  if (!tr && !layers_.empty()) be_->add_rmsnorm(h, &a, rs, nullptr, layers_.back().in_norm, eps, 1.0f);
  be_->end_replayable();  // the logits' rows vary with the request: not part of a recorded step

  // Logits on the requested rows only: every row of all_rows items, else the last one (also that of a draw).
  std::vector<int32_t> rows;
  std::vector<int64_t> first(items.size(), -1);  // each item's first row among them
  bool read_logits = false;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].logits && !items[i].draw) continue;
    read_logits |= items[i].logits != nullptr;
    const StepSeq& s = step.seqs[i];
    first[i] = int64_t(rows.size());
    for (int64_t r = items[i].all_rows ? 0 : s.n - 1; r < s.n; ++r) rows.push_back(int32_t(s.row0 + r));
  }
  if (rows.empty()) return;
  const int64_t R = int64_t(rows.size()), V = cfg_.vocab_size;
  Act hl = be_->scratch(kHLast, R, hid, /*f32=*/true);
  Act f = be_->scratch(kFinal, R, hid);
  be_->gather_rows(hl, h, rows);
  // lm_head(h / (hidden / dim_model_base)): a division, as the reference writes it.
  const float div = cfg_.mup ? float(double(hid) / cfg_.dim_model_base) : 1.0f;
  be_->add_rmsnorm(hl, nullptr, 0, &f, final_norm_, eps, div);
  if (tr) trace_act("final_norm", f, {R, hid});
  Act lg = be_->scratch(kLogits, R, V, /*f32=*/true);
  be_->linear(lg, f, lm_head_);
  if (read_logits) {  // before the draws: they may change the logits in place (penalty)
    be_->read(buf, lg);
    if (tr) tr->rows_f32("logits", buf.data(), {R, V});
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].logits) continue;
      const int64_t n = items[i].all_rows ? step.seqs[i].n : 1;
      items[i].logits->assign(buf.begin() + first[i] * V, buf.begin() + (first[i] + n) * V);
    }
  }
  // Draws: greedy items without a penalty next to each other in one call (their rows are adjacent), the others one by
  // one, so a random draw's stream is (seed, step) whatever the batch.
  const auto plain = [](const Item& x) {
    return x.draw && !x.all_rows && x.draw->params->greedy() &&
           (x.draw->params->repetition_penalty == 1.0f || x.draw->history.empty());
  };
  std::vector<const Item*> drawn;
  for (size_t i = 0; i < items.size();) {
    const Item& it = items[i];
    if (!it.draw) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    if (plain(it))
      while (j < items.size() && plain(items[j]) && first[j] == first[j - 1] + 1) ++j;
    const int64_t last = first[i] + (it.all_rows ? step.seqs[i].n : 1) - 1;
    be_->sample(lg.rows_view(last, int64_t(j - i)), *it.draw->params, it.draw->step, it.draw->history,
                int(drawn.size()));
    for (size_t k = i; k < j; ++k) drawn.push_back(&items[k]);
    i = j;
  }
  if (drawn.empty()) return;
  std::vector<int32_t> toks;
  be_->read_tokens(toks, int(drawn.size()));
  for (size_t k = 0; k < drawn.size(); ++k) *drawn[k]->draw->token = toks[k];
}

}  // namespace sala
