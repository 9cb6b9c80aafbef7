#include "sala/model/model.h"

#include <cmath>

#include "sala/backend/cpu/attention.h"
#include "sala/backend/cpu/infllmv2.h"
#include "sala/backend/cpu/lightning.h"
#include "sala/backend/cpu/ops.h"
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

Model::Model(ModelConfig c, Weights w) : cfg_(std::move(c)), w_(std::move(w)) {
  const int64_t maxp = cfg_.max_position_embeddings;
  rope_dense_ = Rope(cfg_.rope, cfg_.dense_head_dim(), maxp);
  if (cfg_.is_sala()) {
    rope_sparse_ = Rope(cfg_.rope, cfg_.sparse_head_dim(), maxp);
    rope_lightning_ = Rope(cfg_.rope, cfg_.lightning_dim(), maxp);
    for (double s : alibi_slopes(cfg_.lightning_heads())) log_decay_.push_back(float(-s));
  }
}

Model Model::load(const std::string& dir, const LoadOptions& opt) {
  ModelConfig c = load_config(dir);
  io::Checkpoint ck = io::Checkpoint::open(dir);
  if (opt.check_finite) {
    validate_checkpoint(c, ck);
    check_weights_finite(c, ck);
  }
  Weights w = load_weights(c, ck);  // before c is moved from: argument evaluation order is unspecified
  return Model(std::move(c), std::move(w));
}

namespace {
std::string layer_tag(int64_t l) { return "L" + std::to_string(l) + "."; }

// Appends n rows of `row` floats to a growing cache vector.
void append_rows(std::vector<float>& dst, const float* src, int64_t n, int64_t row) {
  dst.insert(dst.end(), src, src + n * row);
}
}  // namespace

Model::Qkv Model::project_qkv(const float* x, int64_t n, const LayerWeights& L, int64_t Hq, int64_t Hkv, int64_t D,
                              bool norm, const Rope* rope, int64_t pos0, int64_t seq_len, Trace* tr,
                              const std::string& tag) const {
  const int64_t hid = cfg_.hidden_size;
  Qkv r;
  r.q.resize(size_t(n * Hq * D));
  r.k.resize(size_t(n * Hkv * D));
  r.v.resize(size_t(n * Hkv * D));
  cpu::matmul(r.q.data(), x, L.q.data(), n, hid, Hq * D);
  cpu::matmul(r.k.data(), x, L.k.data(), n, hid, Hkv * D);
  cpu::matmul(r.v.data(), x, L.v.data(), n, hid, Hkv * D);
  if (norm) {  // per head, one weight shared by all heads, before RoPE
    const float eps = float(cfg_.rms_norm_eps);
    cpu::rmsnorm(r.q.data(), r.q.data(), L.q_norm.data(), n * Hq, D, eps);
    cpu::rmsnorm(r.k.data(), r.k.data(), L.k_norm.data(), n * Hkv, D, eps);
  }
  if (rope) {
    rope->apply(r.q.data(), n, Hq, pos0, seq_len);
    rope->apply(r.k.data(), n, Hkv, pos0, seq_len);
  }
  if (tr) {
    tr->rows_f32(tag + "q", r.q.data(), {n, Hq, D});
    tr->rows_f32(tag + "k", r.k.data(), {n, Hkv, D});
    tr->rows_f32(tag + "v", r.v.data(), {n, Hkv, D});
  }
  return r;
}

void Model::dense_mixer(float* out, const float* x, int64_t n, const LayerWeights& L, LayerCache& C, int64_t pos0,
                        const CallSpec& call, Trace* tr, const std::string& tag) const {
  const int64_t hid = cfg_.hidden_size, Hq = cfg_.num_attention_heads, Hkv = C.kv_heads, D = C.head_dim;
  auto [q, k, v] = project_qkv(x, n, L, Hq, Hkv, D, false, &rope_dense_, pos0, call.end(), tr, tag);
  std::vector<float> o(q.size());
  append_rows(C.k, k.data(), n, Hkv * D);
  append_rows(C.v, v.data(), n, Hkv * D);
  cpu::attention_causal(o.data(), q.data(), C.k.data(), C.v.data(), n, pos0, Hq, Hkv, D, float(1.0 / std::sqrt(double(D))));
  if (tr) tr->rows_f32(tag + "attn", o.data(), {n, Hq * D});
  cpu::matmul(out, o.data(), L.o.data(), n, Hq * D, hid);
}

void Model::sparse_mixer(float* out, const float* x, int64_t n, const LayerWeights& L, LayerCache& C, int64_t pos0,
                         const CallSpec& call, Trace* tr, const std::string& tag) const {
  const int64_t hid = cfg_.hidden_size, Hq = cfg_.num_attention_heads, Hkv = C.kv_heads, D = C.head_dim;
  const float scale = float(1.0 / std::sqrt(double(D)));
  auto [q, k, v] = project_qkv(x, n, L, Hq, Hkv, D, false, cfg_.attn_use_rope ? &rope_sparse_ : nullptr, pos0,
                               call.end(), tr, tag);
  std::vector<float> o(q.size());
  append_rows(C.k, k.data(), n, Hkv * D);
  append_rows(C.v, v.data(), n, Hkv * D);
  C.k1.append(k.data(), n);
  C.k2.append(k.data(), n);

  // §4.9 item 4: the mode is that of the whole call (prompt), decided by its last position.
  const bool sparse = call.end() >= cfg_.sparse.dense_len;
  if (!sparse) {
    cpu::attention_causal(o.data(), q.data(), C.k.data(), C.v.data(), n, pos0, Hq, Hkv, D, scale);
  } else {
    const SparseConfig& sc = cfg_.sparse;
    cpu::SelectParams p;
    p.block = sc.block_size;
    p.stride = sc.kernel_stride;
    p.topk_total = sc.total_topk();
    p.local_blocks = sc.local_blocks();
    p.init_blocks = sc.init_blocks;
    p.scale = scale;
    std::vector<int32_t> idx(static_cast<size_t>(Hkv * n * p.topk_total));
    cpu::infllmv2_select(idx.data(), q.data(), C.k1, C.k2, n, pos0, call.len, Hq, p);
    if (tr) {
      std::vector<int32_t> tk(idx.size());  // (n, Hkv, K) so chunks concatenate on the token axis
      for (int64_t g = 0; g < Hkv; ++g)
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < p.topk_total; ++r)
            tk[size_t((t * Hkv + g) * p.topk_total + r)] = idx[size_t((g * n + t) * p.topk_total + r)];
      tr->rows_i32(tag + "sparse.topk_idx", tk.data(), {n, Hkv, p.topk_total});
    }
    cpu::attention_block_sparse(o.data(), q.data(), C.k.data(), C.v.data(), idx.data(), p.topk_total, sc.block_size, n,
                                pos0, Hq, Hkv, D, scale);
  }
  if (tr) tr->rows_f32(tag + "attn", o.data(), {n, Hq * D});
  if (cfg_.attn_use_output_gate) {
    std::vector<float> g(static_cast<size_t>(n * Hq * D));
    cpu::matmul(g.data(), x, L.o_gate.data(), n, hid, Hq * D);
    cpu::mul_sigmoid(o.data(), g.data(), n * Hq * D);
  }
  cpu::matmul(out, o.data(), L.o.data(), n, Hq * D, hid);
}

void Model::lightning_mixer(float* out, const float* x, int64_t n, const LayerWeights& L, LayerCache& C, int64_t pos0,
                            const CallSpec& call, Trace* tr, const std::string& tag) const {
  const int64_t hid = cfg_.hidden_size, H = cfg_.lightning_heads(), Hkv = cfg_.lightning_kv_heads(),
                D = cfg_.lightning_dim();
  const float eps = float(cfg_.rms_norm_eps);
  auto [q, k, v] = project_qkv(x, n, L, H, Hkv, D, cfg_.qk_norm, cfg_.lightning_use_rope ? &rope_lightning_ : nullptr,
                               pos0, call.end(), tr, tag);
  std::vector<float> o(q.size());
  if (Hkv != H) {  // GQA lightning: each query head reads its group's k, v
    const int64_t group = H / Hkv;
    std::vector<float> ke(static_cast<size_t>(n * H * D)), ve(static_cast<size_t>(n * H * D));
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) {
          ke[size_t((t * H + h) * D + d)] = k[size_t((t * Hkv + h / group) * D + d)];
          ve[size_t((t * H + h) * D + d)] = v[size_t((t * Hkv + h / group) * D + d)];
        }
    k.swap(ke);
    v.swap(ve);
  }
  const float scale = float(cfg_.lightning_q_scale());
  if (n == 1)
    cpu::lightning_recurrent(o.data(), q.data(), k.data(), v.data(), C.state.data(), log_decay_.data(), scale, n, H, D);
  else
    cpu::lightning_chunked(o.data(), q.data(), k.data(), v.data(), C.state.data(), log_decay_.data(), scale, n, H, D, 64);
  if (tr) {
    tr->rows_f32(tag + "attn", o.data(), {n, H * D});
    tr->set_f32(tag + "lightning.state", C.state.data(), {H, D, D});
  }
  if (cfg_.use_output_norm) cpu::rmsnorm(o.data(), o.data(), L.o_norm.data(), n, H * D, eps);  // one norm, all heads
  if (cfg_.use_output_gate) {
    std::vector<float> z(static_cast<size_t>(n * H * D));
    cpu::matmul(z.data(), x, L.z.data(), n, hid, H * D);
    cpu::mul_sigmoid(o.data(), z.data(), n * H * D);
  }
  cpu::matmul(out, o.data(), L.o.data(), n, H * D, hid);
}

void Model::forward(std::span<const int32_t> ids, SequenceState& st, const CallSpec& call, std::vector<float>* logits,
                    bool all_rows, Trace* tr) const {
  const int64_t n = int64_t(ids.size()), pos0 = st.pos;
  if (n == 0) fail("forward: empty input (no tokens)");
  if (st.poisoned) fail("forward: this sequence's state is inconsistent after a failed call; reset it first");
  if (!st.matches(cfg_)) fail("forward: the sequence state was created for a different model config");
  if (pos0 < call.pos0 || pos0 + n > call.end())
    fail("forward: tokens at positions [{}, {}) lie outside their call [{}, {})", pos0, pos0 + n, call.pos0, call.end());
  if (pos0 + n > st.max_len)
    fail("context limit exceeded: {} cached + {} new tokens > {} (max_position_embeddings {}; raise the limit with "
         "--context)", pos0, n, st.max_len, cfg_.max_position_embeddings);
  check_ids(ids);
  // From here on the caches are being written: a failure leaves them out of line with pos, so the state is marked.
  try {
    run_layers(ids, st, call, logits, all_rows, tr);
  } catch (...) {
    st.poisoned = true;
    throw;
  }
}

void Model::check_ids(std::span<const int32_t> ids) const {
  const int64_t V = cfg_.vocab_size;
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] < 0 || ids[t] >= V)
      fail("token id {} at input position {} is outside the vocabulary [0, {})", ids[t], t, V);
}

void Model::run_layers(std::span<const int32_t> ids, SequenceState& st, const CallSpec& call,
                       std::vector<float>* logits, bool all_rows, Trace* tr) const {
  const int64_t n = int64_t(ids.size()), hid = cfg_.hidden_size, V = cfg_.vocab_size, pos0 = st.pos;
  std::vector<float> h(static_cast<size_t>(n * hid)), xn(static_cast<size_t>(n * hid)), a(static_cast<size_t>(n * hid));
  const float emb_scale = float(cfg_.scale_emb);
  for (int64_t t = 0; t < n; ++t) {
    const float* e = w_.embed.data() + int64_t(ids[size_t(t)]) * hid;
    for (int64_t i = 0; i < hid; ++i) h[size_t(t * hid + i)] = e[i] * emb_scale;
  }
  if (tr) tr->rows_f32("embed", h.data(), {n, hid});
  const float rs = float(cfg_.residual_scale()), eps = float(cfg_.rms_norm_eps);
  const int64_t inter = cfg_.intermediate_size;
  std::vector<float> g(static_cast<size_t>(n * inter)), u(static_cast<size_t>(n * inter));

  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    const LayerWeights& L = w_.layers[size_t(l)];
    LayerCache& C = st.layers[size_t(l)];
    const std::string tag = tr ? layer_tag(l) : std::string();
    cpu::rmsnorm(xn.data(), h.data(), L.in_norm.data(), n, hid, eps);
    if (tr) tr->rows_f32(tag + "attn_norm", xn.data(), {n, hid});
    switch (L.kind) {
      case LayerKind::Sparse: sparse_mixer(a.data(), xn.data(), n, L, C, pos0, call, tr, tag); break;
      case LayerKind::Lightning: lightning_mixer(a.data(), xn.data(), n, L, C, pos0, call, tr, tag); break;
      case LayerKind::Dense: dense_mixer(a.data(), xn.data(), n, L, C, pos0, call, tr, tag); break;
    }
    if (tr) tr->rows_f32(tag + "mixer_out", a.data(), {n, hid});
    cpu::axpy(h.data(), a.data(), rs, n * hid);
    cpu::rmsnorm(xn.data(), h.data(), L.post_norm.data(), n, hid, eps);
    cpu::matmul(g.data(), xn.data(), L.gate.data(), n, hid, inter);
    cpu::matmul(u.data(), xn.data(), L.up.data(), n, hid, inter);
    cpu::silu_mul(g.data(), g.data(), u.data(), n * inter);  // F.silu(gate(x)) * up(x)
    cpu::matmul(a.data(), g.data(), L.down.data(), n, inter, hid);
    if (tr) tr->rows_f32(tag + "mlp_out", a.data(), {n, hid});
    cpu::axpy(h.data(), a.data(), rs, n * hid);
    if (tr) tr->rows_f32(tag + "out", h.data(), {n, hid});
  }
  st.pos += n;

  if (!logits) return;
  const int64_t first = all_rows ? 0 : n - 1, rows = n - first;
  std::vector<float> f(static_cast<size_t>(rows * hid));
  cpu::rmsnorm(f.data(), h.data() + first * hid, w_.final_norm.data(), rows, hid, eps);
  // lm_head(h / (hidden / dim_model_base)): a division, as the reference writes it.
  if (cfg_.mup) {
    const float div = float(double(hid) / cfg_.dim_model_base);
    for (auto& x : f) x /= div;
  }
  if (tr) tr->rows_f32("final_norm", f.data(), {rows, hid});
  logits->resize(size_t(rows * V));
  cpu::matmul(logits->data(), f.data(), w_.head(), rows, hid, V);
  if (tr) tr->rows_f32("logits", logits->data(), {rows, V});
}

std::vector<float> Model::prefill(std::span<const int32_t> ids, SequenceState& st, int64_t chunk, Trace* tr,
                                  bool all_rows, const std::function<void(int64_t, int64_t)>& progress) const {
  const int64_t n = int64_t(ids.size());
  if (n == 0) fail("prefill: empty prompt");
  if (st.pos + n > st.max_len)
    fail("prompt of {} tokens (+{} cached) exceeds the context limit of {} tokens", n, st.pos, st.max_len);
  check_ids(ids);  // the whole prompt before its first chunk touches the state
  const CallSpec call{st.pos, n};
  if (chunk <= 0) chunk = n;
  std::vector<float> out, part;
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t m = std::min(chunk, n - c0);
    const bool last = c0 + m == n;
    forward(ids.subspan(size_t(c0), size_t(m)), st, call, (all_rows || last) ? &part : nullptr, all_rows, tr);
    if (all_rows || last) out.insert(out.end(), part.begin(), part.end());
    if (progress) progress(c0 + m, n);
  }
  return out;
}

std::vector<float> Model::decode(int32_t id, SequenceState& st, Trace* tr) const {
  std::vector<float> out;
  const int32_t ids[1] = {id};
  forward(ids, st, CallSpec{st.pos, 1}, &out, false, tr);
  return out;
}

}  // namespace sala
