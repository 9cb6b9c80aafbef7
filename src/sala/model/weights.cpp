#include "sala/model/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "sala/core/error.h"
#include "sala/core/rng.h"
#include "sala/io/atomic_file.h"
#include "sala/io/checkpoint.h"
#include "sala/io/safetensors.h"

namespace sala {

bool TensorSpec::is_norm() const {
  return role == TensorRole::FinalNorm || role == TensorRole::InNorm || role == TensorRole::PostNorm ||
         role == TensorRole::QNorm || role == TensorRole::KNorm || role == TensorRole::ONorm;
}
int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::vector<TensorSpec> tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> s;
  const int64_t hid = c.hidden_size, inter = c.intermediate_size;
  s.push_back({"model.embed_tokens.weight", {c.vocab_size, hid}, TensorRole::Embed});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const int li = int(l);
    const LayerKind kind = c.layer_kinds[size_t(l)];
    s.push_back({p + "input_layernorm.weight", {hid}, TensorRole::InNorm, li});
    int64_t hq, hkv, d;
    if (kind == LayerKind::Sparse) hq = c.num_attention_heads, hkv = c.num_key_value_heads, d = c.sparse_head_dim();
    else if (kind == LayerKind::Lightning) hq = c.lightning_heads(), hkv = c.lightning_kv_heads(), d = c.lightning_dim();
    else hq = c.num_attention_heads, hkv = c.num_key_value_heads, d = c.dense_head_dim();
    s.push_back({p + "self_attn.q_proj.weight", {hq * d, hid}, TensorRole::Q, li});
    s.push_back({p + "self_attn.k_proj.weight", {hkv * d, hid}, TensorRole::K, li});
    s.push_back({p + "self_attn.v_proj.weight", {hkv * d, hid}, TensorRole::V, li});
    s.push_back({p + "self_attn.o_proj.weight", {hid, hq * d}, TensorRole::O, li});
    if (kind == LayerKind::Sparse && c.attn_use_output_gate)
      s.push_back({p + "self_attn.o_gate.weight", {hq * d, hid}, TensorRole::OGate, li});
    if (kind == LayerKind::Lightning) {
      if (c.use_output_gate) s.push_back({p + "self_attn.z_proj.weight", {hq * d, hid}, TensorRole::Z, li});
      if (c.qk_norm) {
        s.push_back({p + "self_attn.q_norm.weight", {d}, TensorRole::QNorm, li});
        s.push_back({p + "self_attn.k_norm.weight", {d}, TensorRole::KNorm, li});
      }
      if (c.use_output_norm) s.push_back({p + "self_attn.o_norm.weight", {hq * d}, TensorRole::ONorm, li});
    }
    s.push_back({p + "post_attention_layernorm.weight", {hid}, TensorRole::PostNorm, li});
    s.push_back({p + "mlp.gate_proj.weight", {inter, hid}, TensorRole::Gate, li});
    s.push_back({p + "mlp.up_proj.weight", {inter, hid}, TensorRole::Up, li});
    s.push_back({p + "mlp.down_proj.weight", {hid, inter}, TensorRole::Down, li});
  }
  s.push_back({"model.norm.weight", {hid}, TensorRole::FinalNorm});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {c.vocab_size, hid}, TensorRole::LmHead});
  return s;
}

int64_t parameter_count(const ModelConfig& c) {
  int64_t n = 0;
  for (auto& s : tensor_specs(c)) n += s.numel();
  return n;
}

std::vector<float>& Weights::get(const TensorSpec& s) {
  switch (s.role) {
    case TensorRole::Embed: return embed;
    case TensorRole::FinalNorm: return final_norm;
    case TensorRole::LmHead: return lm_head;
    default: break;
  }
  LayerWeights& L = layers.at(size_t(s.layer));
  switch (s.role) {
    case TensorRole::InNorm: return L.in_norm;
    case TensorRole::PostNorm: return L.post_norm;
    case TensorRole::Q: return L.q;
    case TensorRole::K: return L.k;
    case TensorRole::V: return L.v;
    case TensorRole::O: return L.o;
    case TensorRole::OGate: return L.o_gate;
    case TensorRole::Z: return L.z;
    case TensorRole::QNorm: return L.q_norm;
    case TensorRole::KNorm: return L.k_norm;
    case TensorRole::ONorm: return L.o_norm;
    case TensorRole::Gate: return L.gate;
    case TensorRole::Up: return L.up;
    case TensorRole::Down: return L.down;
    default: break;
  }
  fail("internal: no slot for tensor {}", s.name);
}
const std::vector<float>& Weights::get(const TensorSpec& s) const { return const_cast<Weights*>(this)->get(s); }

std::vector<std::string> validate_checkpoint(const ModelConfig& c, const io::Checkpoint& ckpt) {
  std::set<std::string> used;
  for (const TensorSpec& s : tensor_specs(c)) {
    const io::TensorInfo* t = ckpt.find(s.name);
    if (!t)
      fail("{}: checkpoint is missing tensor '{}' (expected shape {}, a float dtype)", ckpt.path(), s.name,
           shape_str(s.shape));
    if (!dtype_is_float(t->dtype))
      fail("{}: tensor '{}': dtype {}, expected a float dtype (BF16, F16, F32)", ckpt.file_of(s.name), s.name,
           dtype_name(t->dtype));
    if (t->shape != s.shape)
      fail("{}: tensor '{}': shape {}, expected {}", ckpt.file_of(s.name), s.name, shape_str(t->shape),
           shape_str(s.shape));
    used.insert(s.name);
  }
  std::vector<std::string> unused;
  for (auto& n : ckpt.names()) {
    if (used.count(n)) continue;
    if (c.tie_word_embeddings && n == "lm_head.weight") continue;  // tied: the reference ignores it too
    unused.push_back(n);
  }
  return unused;
}

static Weights empty_weights(const ModelConfig& c) {
  Weights w;
  w.layers.resize(size_t(c.num_hidden_layers));
  for (size_t l = 0; l < w.layers.size(); ++l) w.layers[l].kind = c.layer_kinds[l];
  return w;
}

Weights load_weights(const ModelConfig& c, const io::Checkpoint& ckpt) {
  validate_checkpoint(c, ckpt);
  Weights w = empty_weights(c);
  for (const TensorSpec& s : tensor_specs(c)) w.get(s) = ckpt.read_f32(s.name);
  return w;
}

namespace {

// Index of the first NaN/Inf element (all exponent bits set), or -1. Raw bits, so no conversion and no FP traps.
template <class U>
int64_t first_non_finite(const std::byte* p, int64_t n, U exp_mask) {
  int64_t first = n;
#pragma omp parallel for reduction(min : first) schedule(static) if (n > (1 << 20))
  for (int64_t i = 0; i < n; ++i) {
    U u;
    std::memcpy(&u, p + size_t(i) * sizeof(U), sizeof(U));
    if ((u & exp_mask) == exp_mask && i < first) first = i;
  }
  return first == n ? -1 : first;
}

}  // namespace

void check_weights_finite(const ModelConfig& c, const io::Checkpoint& ckpt) {
  for (const TensorSpec& s : tensor_specs(c)) {
    const io::TensorInfo* t = ckpt.find(s.name);
    SALA_CHECK(t != nullptr);
    auto b = ckpt.bytes(s.name);
    const int64_t n = t->numel();
    int64_t bad = -1;
    switch (t->dtype) {
      case DType::BF16: bad = first_non_finite<uint16_t>(b.data(), n, 0x7f80); break;
      case DType::F16: bad = first_non_finite<uint16_t>(b.data(), n, 0x7c00); break;
      case DType::F32: bad = first_non_finite<uint32_t>(b.data(), n, 0x7f800000u); break;
      case DType::F64: bad = first_non_finite<uint64_t>(b.data(), n, 0x7ff0000000000000ull); break;
      default: fail("{}: tensor '{}': dtype {} is not a float dtype", ckpt.file_of(s.name), s.name, dtype_name(t->dtype));
    }
    if (bad >= 0) {
      uint64_t raw = 0;  // aligned copy of the element
      std::memcpy(&raw, b.data() + size_t(bad) * dtype_size(t->dtype), dtype_size(t->dtype));
      float v = 0;
      convert_to_f32(&v, &raw, t->dtype, 1);
      fail("{}: tensor '{}': element {} of {} is {} (the checkpoint holds non-finite weights)", ckpt.file_of(s.name),
           s.name, bad, n, v != v ? "NaN" : v > 0 ? "+Inf" : "-Inf");
    }
  }
}

void fill_random(const TensorSpec& s, float std, uint64_t seed, float* out) {
  const int64_t n = s.numel();
  if (s.is_norm()) {
    std::fill(out, out + n, 1.0f);
    return;
  }
  uint64_t h = seed;
  for (unsigned char ch : s.name) h = (h ^ ch) * 0x100000001b3ull;  // FNV-1a: same stream on every platform
  const int64_t rows = s.shape.size() > 1 ? s.shape[0] : 1, cols = n / std::max<int64_t>(rows, 1);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    Rng rng(h + uint64_t(r) * 0x9e3779b97f4a7c15ull);
    rng.fill_normal(out + r * cols, cols, std);
  }
}

Weights random_weights(const ModelConfig& c, uint64_t seed) {
  Weights w = empty_weights(c);
  for (const TensorSpec& s : tensor_specs(c)) {
    auto& v = w.get(s);
    v.resize(size_t(s.numel()));
    fill_random(s, float(c.initializer_range), seed, v.data());
  }
  return w;
}

namespace {

// Writes config.json and the tensors of tensor_specs(c) through the one checkpoint writer; `produce` fills one
// tensor's bytes in `dtype`.
void write_model(const ModelConfig& c, const std::string& dir, DType dtype, uint64_t max_bytes,
                 const std::function<void(const TensorSpec&, std::span<std::byte>)>& produce,
                 const io::WriteProgress& progress = {}) {
  const std::vector<TensorSpec> specs = tensor_specs(c);
  std::vector<io::TensorToWrite> tw;
  tw.reserve(specs.size());
  for (const TensorSpec& s : specs) tw.push_back({s.name, dtype, s.shape, {}});
  io::write_checkpoint(
      dir, tw, [&](size_t i, std::span<std::byte> out) { produce(specs[i], out); }, max_bytes, {{"format", "pt"}},
      progress);
  save_config(c, dir);
}

}  // namespace

void save_model(const ModelConfig& c, const Weights& w, const std::string& dir, DType dtype, uint64_t max_shard_bytes) {
  write_model(c, dir, dtype, max_shard_bytes, [&](const TensorSpec& s, std::span<std::byte> out) {
    const auto& v = w.get(s);
    SALA_CHECK(out.size() == v.size() * dtype_size(dtype));
    convert_from_f32(out.data(), v.data(), dtype, v.size());
  });
}

void write_random_model(const ModelConfig& c, const std::string& dir, DType dtype, uint64_t seed,
                        uint64_t max_shard_bytes,
                        const std::function<void(size_t, size_t, uint64_t, uint64_t)>& progress) {
  write_model(
      c, dir, dtype, max_shard_bytes,
      [&](const TensorSpec& s, std::span<std::byte> out) {
        const int64_t n = s.numel();
        std::vector<float> tmp(static_cast<size_t>(n));  // one tensor's fp32 scratch (largest: the 9B embedding)
        fill_random(s, float(c.initializer_range), seed, tmp.data());
        convert_from_f32(out.data(), tmp.data(), dtype, size_t(n));
      },
      progress);
}

}  // namespace sala
