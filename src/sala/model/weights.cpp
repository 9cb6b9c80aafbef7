#include "sala/model/weights.h"

#include <algorithm>
#include <cmath>
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

static std::string shape_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::vector<std::string> validate_checkpoint(const ModelConfig& c, const io::Checkpoint& ckpt) {
  std::set<std::string> used;
  for (const TensorSpec& s : tensor_specs(c)) {
    const io::TensorInfo* t = ckpt.find(s.name);
    if (!t)
      fail("checkpoint is missing tensor '{}' (expected shape {}, a float dtype)", s.name, shape_str(s.shape));
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
    float* o = out + r * cols;
    for (int64_t i = 0; i < cols; i += 2) {  // Box-Muller gives two normals per draw: use both
      double u1 = std::max(rng.uniform(), 1e-300), u2 = rng.uniform();
      double rad = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
      o[i] = float(rad * std::cos(th)) * std;
      if (i + 1 < cols) o[i + 1] = float(rad * std::sin(th)) * std;
    }
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

// Groups tensors into shards of at most max_bytes (a tensor larger than that gets its own shard) and writes them with
// the Hugging Face names and index. `produce` fills the bytes of one tensor in the target dtype.
void write_sharded(const ModelConfig& c, const std::string& dir, DType dtype, uint64_t max_bytes,
                   const std::function<void(const TensorSpec&, std::vector<std::byte>&)>& produce,
                   const std::function<void(size_t, size_t, uint64_t, uint64_t)>& progress = {}) {
  std::filesystem::create_directories(dir);
  std::vector<TensorSpec> specs = tensor_specs(c);
  const size_t es = dtype_size(dtype);
  std::vector<std::vector<size_t>> shards(1);
  uint64_t cur = 0, total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    uint64_t b = uint64_t(specs[i].numel()) * es;
    if (cur + b > max_bytes && !shards.back().empty()) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += b;
    total += b;
  }
  const size_t n = shards.size();
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t written = 0;
  for (size_t si = 0; si < n; ++si) {
    std::string fname = n == 1 ? "model.safetensors" : io::shard_file_name(si + 1, n);
    std::vector<std::vector<std::byte>> bufs(shards[si].size());
    std::vector<io::TensorToWrite> tw;
    for (size_t j = 0; j < shards[si].size(); ++j) {
      const TensorSpec& s = specs[shards[si][j]];
      produce(s, bufs[j]);
      tw.push_back({s.name, dtype, s.shape, std::span<const std::byte>(bufs[j])});
      weight_map[s.name] = fname;
    }
    io::write_safetensors((std::filesystem::path(dir) / fname).string(), tw, {{"format", "pt"}});
    for (auto& b : bufs) written += b.size();
    if (progress) progress(si + 1, n, written, total);
  }
  if (n > 1) {
    nlohmann::json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    io::write_file_atomic((std::filesystem::path(dir) / "model.safetensors.index.json").string(), idx.dump(2) + "\n");
  }
  save_config(c, dir);
}

}  // namespace

void save_model(const ModelConfig& c, const Weights& w, const std::string& dir, DType dtype, uint64_t max_shard_bytes) {
  write_sharded(c, dir, dtype, max_shard_bytes, [&](const TensorSpec& s, std::vector<std::byte>& buf) {
    const auto& v = w.get(s);
    buf.resize(v.size() * dtype_size(dtype));
    convert_from_f32(buf.data(), v.data(), dtype, v.size());
  });
}

void write_random_model(const ModelConfig& c, const std::string& dir, DType dtype, uint64_t seed,
                        uint64_t max_shard_bytes,
                        const std::function<void(size_t, size_t, uint64_t, uint64_t)>& progress) {
  write_sharded(c, dir, dtype, max_shard_bytes, [&](const TensorSpec& s, std::vector<std::byte>& buf) {
    const int64_t n = s.numel();
    buf.resize(size_t(n) * dtype_size(dtype));
    std::vector<float> tmp(static_cast<size_t>(n));  // one tensor's fp32 scratch (largest: the 9B embedding, 1.2 GB)
    fill_random(s, float(c.initializer_range), seed, tmp.data());
    convert_from_f32(buf.data(), tmp.data(), dtype, size_t(n));
  }, progress);
}

}  // namespace sala
