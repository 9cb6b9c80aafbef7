#include "sala/model/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sala/core/error.h"
#include "sala/io/atomic_file.h"
#include "sala/io/json.h"
#include "sala/io/file.h"

namespace sala {

using nlohmann::json;

const char* layer_kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::Sparse: return "minicpm4";
    case LayerKind::Lightning: return "lightning-attn";
    case LayerKind::Dense: return "dense";
  }
  return "?";
}

double ModelConfig::residual_scale() const {
  return mup ? scale_depth / std::sqrt(double(num_hidden_layers)) : 1.0;
}
double ModelConfig::logits_scale() const { return mup ? dim_model_base / double(hidden_size) : 1.0; }
double ModelConfig::lightning_q_scale() const {
  return lightning_scale == "1" ? 1.0 : 1.0 / std::sqrt(double(lightning_dim()));
}
int64_t ModelConfig::count_layers(LayerKind k) const {
  int64_t n = 0;
  for (auto x : layer_kinds) n += x == k;
  return n;
}

namespace {

// Typed field readers: every error names the config source and the field.
struct Reader {
  const json& j;
  const std::string& src;
  std::string prefix;

  const json* get(const char* key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void bad(const char* key, const json& v, const char* want) const {
    fail("{}: field '{}{}' = {} : expected {}", src, prefix, key, v.dump(), want);
  }
  int64_t integer(const char* key, std::optional<int64_t> def = std::nullopt) const {
    const json* v = get(key);
    if (!v) {
      if (def) return *def;
      fail("{}: missing required field '{}{}'", src, prefix, key);
    }
    if (v->is_number_integer() || v->is_number_unsigned()) return v->get<int64_t>();
    if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()) return int64_t(v->get<double>());
    bad(key, *v, "an integer");
  }
  double number(const char* key, std::optional<double> def = std::nullopt) const {
    const json* v = get(key);
    if (!v) {
      if (def) return *def;
      fail("{}: missing required field '{}{}'", src, prefix, key);
    }
    if (v->is_number()) return v->get<double>();
    bad(key, *v, "a number");
  }
  bool boolean(const char* key, bool def) const {
    const json* v = get(key);
    if (!v) return def;
    if (v->is_boolean()) return v->get<bool>();
    bad(key, *v, "true or false");
  }
  std::string string(const char* key, std::string def) const {
    const json* v = get(key);
    if (!v) return def;
    if (v->is_string()) return v->get<std::string>();
    bad(key, *v, "a string");
  }
  std::vector<double> numbers(const json& arr, const char* key) const {
    if (!arr.is_array()) bad(key, arr, "a list of numbers");
    std::vector<double> out;
    for (auto& x : arr) {
      if (!x.is_number()) bad(key, arr, "a list of numbers");
      out.push_back(x.get<double>());
    }
    return out;
  }
};

std::vector<int64_t> parse_id_list(const Reader& r, const char* key) {
  const json* v = r.get(key);
  if (!v) return {};
  if (v->is_number_integer()) return {v->get<int64_t>()};
  std::vector<int64_t> out;
  if (!v->is_array()) r.bad(key, *v, "an integer or a list of integers");
  for (auto& x : *v) {
    if (!x.is_number_integer()) r.bad(key, *v, "an integer or a list of integers");
    out.push_back(x.get<int64_t>());
  }
  return out;
}

}  // namespace

ModelConfig parse_config(const json& j, const std::string& src) {
  if (!j.is_object()) fail("{}: config must be a JSON object", src);
  Reader r{j, src, ""};
  ModelConfig c;
  c.model_type = r.string("model_type", "");
  if (c.model_type.empty()) fail("{}: missing required field 'model_type'", src);
  if (c.model_type != "minicpm_sala" && c.model_type != "minicpm" && c.model_type != "llama" &&
      c.model_type != "mistral")
    fail("{}: field 'model_type' = \"{}\" is not supported (supported: minicpm_sala, minicpm, llama, mistral)", src,
         c.model_type);
  if (auto* a = r.get("architectures"); a && a->is_array() && !a->empty() && (*a)[0].is_string())
    c.architecture = (*a)[0].get<std::string>();
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.intermediate_size = r.integer("intermediate_size");
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.num_attention_heads = r.integer("num_attention_heads");
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads);
  if (c.num_attention_heads <= 0) fail("{}: field 'num_attention_heads' = {} must be positive", src, c.num_attention_heads);
  c.head_dim = r.integer("head_dim", c.hidden_size / c.num_attention_heads);
  c.max_position_embeddings = r.integer("max_position_embeddings", 4096);
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.rope.theta = r.number("rope_theta", 10000.0);
  const bool minicpm = c.model_type == "minicpm" || c.model_type == "minicpm_sala";
  // Defaults of the HF config classes: MiniCPMConfig ties embeddings and always applies its muP scales (1 when absent);
  // LlamaConfig / MistralConfig do not tie and have no muP (their keys, if present, are not read by HF either).
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", minicpm && c.model_type == "minicpm");
  c.mup = minicpm;
  if (minicpm) {
    c.scale_emb = r.number("scale_emb", 1.0);
    c.scale_depth = r.number("scale_depth", 1.0);
    c.dim_model_base = r.number("dim_model_base", 1.0);
  }
  if (const json* sw = r.get("sliding_window"); sw && c.model_type == "mistral")
    fail("{}: field 'sliding_window' = {} is not supported (sliding-window attention)", src, sw->dump());
  c.bos_token_id = r.integer("bos_token_id", 1);
  c.eos_token_ids = parse_id_list(r, "eos_token_id");
  c.pad_token_id = r.get("pad_token_id") && r.get("pad_token_id")->is_number_integer() ? r.integer("pad_token_id") : -1;
  c.torch_dtype = r.string("torch_dtype", r.string("dtype", "bfloat16"));
  c.initializer_range = r.number("initializer_range", 0.02);

  std::string act = r.string("hidden_act", "silu");
  if (act != "silu") fail("{}: field 'hidden_act' = \"{}\" is not supported (only silu)", src, act);
  if (r.boolean("attention_bias", false)) fail("{}: field 'attention_bias' = true is not supported", src);
  if (r.boolean("mlp_bias", false)) fail("{}: field 'mlp_bias' = true is not supported", src);
  if (int64_t tp = r.integer("pretraining_tp", 1); tp != 1)
    fail("{}: field 'pretraining_tp' = {} is not supported (only 1)", src, tp);

  if (const json* rs = r.get("rope_scaling")) {
    if (!rs->is_object()) r.bad("rope_scaling", *rs, "null or an object");
    Reader rr{*rs, src, "rope_scaling."};
    std::string type = rr.string("rope_type", rr.string("type", ""));
    if (type != "longrope")
      fail("{}: field 'rope_scaling.rope_type' = \"{}\" is not supported (supported: null, longrope)", src, type);
    const json* sf = rr.get("short_factor");
    const json* lf = rr.get("long_factor");
    if (!sf) fail("{}: missing required field 'rope_scaling.short_factor'", src);
    if (!lf) fail("{}: missing required field 'rope_scaling.long_factor'", src);
    c.rope.short_factor = rr.numbers(*sf, "short_factor");
    c.rope.long_factor = rr.numbers(*lf, "long_factor");
    c.rope.original_max_position_embeddings = rr.integer("original_max_position_embeddings", c.max_position_embeddings);
  }

  if (c.is_sala()) {
    const json* mt = r.get("mixer_types");
    if (!mt) fail("{}: missing required field 'mixer_types' (model_type minicpm_sala)", src);
    if (!mt->is_array()) r.bad("mixer_types", *mt, "a list of strings");
    for (size_t i = 0; i < mt->size(); ++i) {
      const json& m = (*mt)[i];
      std::string s = m.is_string() ? m.get<std::string>() : m.dump();
      if (s == "minicpm4") c.layer_kinds.push_back(LayerKind::Sparse);
      else if (s == "lightning-attn" || s == "lightning_attn" || s == "lightning")
        c.layer_kinds.push_back(LayerKind::Lightning);
      else
        fail("{}: field 'mixer_types[{}]' = {} is not supported (supported: \"minicpm4\", \"lightning-attn\")", src,
             i, m.dump());
    }
    if (const json* sc = r.get("sparse_config")) {
      if (!sc->is_object()) r.bad("sparse_config", *sc, "an object");
      Reader sr{*sc, src, "sparse_config."};
      c.sparse.block_size = sr.integer("block_size", 64);
      c.sparse.dense_len = sr.integer("dense_len", 8192);
      c.sparse.init_blocks = sr.integer("init_blocks", 1);
      c.sparse.kernel_size = sr.integer("kernel_size", 32);
      c.sparse.kernel_stride = sr.integer("kernel_stride", 16);
      c.sparse.topk = sr.integer("topk", 64);
      c.sparse.window_size = sr.integer("window_size", 2048);
      c.sparse.use_nope = sr.boolean("use_nope", false);
    }
    c.lightning_nh = r.integer("lightning_nh", c.num_attention_heads);
    c.lightning_nkv = r.integer("lightning_nkv", c.num_attention_heads);
    c.lightning_head_dim = r.integer("lightning_head_dim", c.head_dim);
    c.lightning_scale = r.string("lightning_scale", "1/sqrt(d)");
    // No public copy of configuration_minicpm_sala.py gives these defaults: the released config states them all, so
    // they are required rather than guessed.
    for (const char* key : {"qk_norm", "use_output_gate", "use_output_norm", "attn_use_output_gate"})
      if (!r.get(key)) fail("{}: missing required field '{}' (model_type minicpm_sala)", src, key);
    c.qk_norm = r.boolean("qk_norm", true);
    c.use_output_gate = r.boolean("use_output_gate", true);
    c.use_output_norm = r.boolean("use_output_norm", true);
    c.attn_use_output_gate = r.boolean("attn_use_output_gate", true);
    c.attn_use_rope = r.boolean("attn_use_rope", false);
    c.lightning_use_rope = r.boolean("lightning_use_rope", true);
  } else {
    c.layer_kinds.assign(size_t(std::max<int64_t>(c.num_hidden_layers, 0)), LayerKind::Dense);
  }
  validate_config(c, src);
  return c;
}

void validate_config(const ModelConfig& c, const std::string& src) {
  auto positive = [&](const char* f, int64_t v) {
    if (v <= 0) fail("{}: field '{}' = {} must be positive", src, f, v);
  };
  // Bounds far above any real model that keep every tensor size, parameter count and byte count inside int64 (and
  // token ids inside int32), so an absurd config is refused here rather than overflowing or exhausting memory later.
  auto at_most = [&](const char* f, int64_t v, int64_t limit) {
    if (v > limit) fail("{}: field '{}' = {} is larger than sala supports ({})", src, f, v, limit);
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("num_hidden_layers", c.num_hidden_layers);
  positive("num_attention_heads", c.num_attention_heads);
  positive("num_key_value_heads", c.num_key_value_heads);
  positive("head_dim", c.head_dim);
  positive("max_position_embeddings", c.max_position_embeddings);
  at_most("vocab_size", c.vocab_size, int64_t(1) << 30);
  at_most("hidden_size", c.hidden_size, int64_t(1) << 18);
  at_most("intermediate_size", c.intermediate_size, int64_t(1) << 20);
  at_most("num_hidden_layers", c.num_hidden_layers, int64_t(1) << 12);
  at_most("num_attention_heads", c.num_attention_heads, int64_t(1) << 12);
  at_most("head_dim", c.head_dim, int64_t(1) << 12);
  at_most("max_position_embeddings", c.max_position_embeddings, int64_t(1) << 40);
  if (c.mup) {  // the reference multiplies by scale_emb and scale_depth and divides by hidden_size / dim_model_base
    for (auto [f, v] : {std::pair{"scale_emb", c.scale_emb}, std::pair{"scale_depth", c.scale_depth},
                        std::pair{"dim_model_base", c.dim_model_base}})
      if (!(std::isfinite(v) && v > 0)) fail("{}: field '{}' = {} must be a positive number", src, f, v);
  }
  if (!std::isfinite(c.initializer_range) || c.initializer_range < 0)
    fail("{}: field 'initializer_range' = {} must be a non-negative number", src, c.initializer_range);
  if (c.num_attention_heads % c.num_key_value_heads)
    fail("{}: field 'num_key_value_heads' = {} must divide num_attention_heads = {}", src, c.num_key_value_heads,
         c.num_attention_heads);
  if (c.head_dim % 2) fail("{}: field 'head_dim' = {} must be even (RoPE)", src, c.head_dim);
  if (int64_t(c.layer_kinds.size()) != c.num_hidden_layers)
    fail("{}: field 'mixer_types' has {} entries, expected num_hidden_layers = {}", src, c.layer_kinds.size(),
         c.num_hidden_layers);
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps)) fail("{}: field 'rms_norm_eps' = {} must be positive", src, c.rms_norm_eps);
  if (!(c.rope.theta > 0) || !std::isfinite(c.rope.theta)) fail("{}: field 'rope_theta' = {} must be positive", src, c.rope.theta);
  if (c.rope.longrope()) {
    size_t half = size_t(c.head_dim / 2);
    if (c.rope.short_factor.size() != half || c.rope.long_factor.size() != half)
      fail("{}: field 'rope_scaling.short_factor/long_factor' have {}/{} entries, expected head_dim/2 = {}", src,
           c.rope.short_factor.size(), c.rope.long_factor.size(), half);
    positive("rope_scaling.original_max_position_embeddings", c.rope.original_max_position_embeddings);
  }
  if (c.bos_token_id < 0 || c.bos_token_id >= c.vocab_size)
    fail("{}: field 'bos_token_id' = {} is outside the vocabulary [0, {})", src, c.bos_token_id, c.vocab_size);
  for (auto e : c.eos_token_ids)
    if (e < 0 || e >= c.vocab_size)
      fail("{}: field 'eos_token_id' holds {} outside the vocabulary [0, {})", src, e, c.vocab_size);
  if (!c.is_sala()) return;

  if (c.hidden_size % c.num_attention_heads)
    fail("{}: field 'hidden_size' = {} must be a multiple of num_attention_heads = {} (sparse head size)", src,
         c.hidden_size, c.num_attention_heads);
  if (c.sparse_head_dim() % 2) fail("{}: sparse head size hidden_size/num_attention_heads must be even", src);
  positive("lightning_nkv", c.lightning_nkv);
  if (c.num_attention_heads % c.lightning_nkv)
    fail("{}: field 'lightning_nkv' = {} must divide num_attention_heads = {}", src, c.lightning_nkv,
         c.num_attention_heads);
  if (c.lightning_scale != "1/sqrt(d)" && c.lightning_scale != "1")
    fail("{}: field 'lightning_scale' = \"{}\" is not supported (supported: \"1/sqrt(d)\", \"1\")", src,
         c.lightning_scale);
  const SparseConfig& s = c.sparse;
  positive("sparse_config.block_size", s.block_size);
  positive("sparse_config.kernel_stride", s.kernel_stride);
  positive("sparse_config.topk", s.topk);
  at_most("sparse_config.block_size", s.block_size, int64_t(1) << 16);
  at_most("sparse_config.topk", s.topk, int64_t(1) << 16);
  at_most("sparse_config.window_size", s.window_size, int64_t(1) << 24);
  if (s.dense_len < 0) fail("{}: field 'sparse_config.dense_len' = {} must be >= 0", src, s.dense_len);
  if (s.init_blocks < 0) fail("{}: field 'sparse_config.init_blocks' = {} must be >= 0", src, s.init_blocks);
  if (s.kernel_size != 2 * s.kernel_stride)
    fail("{}: field 'sparse_config.kernel_size' = {} is not supported: InfLLM-V2 needs kernel_size = 2 * kernel_stride "
         "(= {})", src, s.kernel_size, 2 * s.kernel_stride);
  if (s.block_size % s.kernel_stride)
    fail("{}: field 'sparse_config.block_size' = {} must be a multiple of kernel_stride = {}", src, s.block_size,
         s.kernel_stride);
  if (s.window_size < 0 || s.window_size % s.block_size)
    fail("{}: field 'sparse_config.window_size' = {} must be a non-negative multiple of block_size = {}", src,
         s.window_size, s.block_size);
  if (s.use_nope) fail("{}: field 'sparse_config.use_nope' = true is not supported", src);
}

ModelConfig load_config(const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  const std::string text = io::read_file(file, "config file", 64ull << 20);  // refuses a FIFO, directory, device
  return parse_config(io::parse_json(text, file, "config"), file);  // a field given twice is an error
}

json config_to_json(const ModelConfig& c) {
  json j;
  if (!c.architecture.empty()) j["architectures"] = json::array({c.architecture});
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope.theta;
  if (c.rope.longrope())
    j["rope_scaling"] = {{"rope_type", "longrope"},
                         {"short_factor", c.rope.short_factor},
                         {"long_factor", c.rope.long_factor},
                         {"original_max_position_embeddings", c.rope.original_max_position_embeddings}};
  else
    j["rope_scaling"] = nullptr;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "llama" && c.model_type != "mistral") {
    j["scale_emb"] = c.scale_emb;
    j["scale_depth"] = c.scale_depth;
    j["dim_model_base"] = c.dim_model_base;
  }
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else j["eos_token_id"] = c.eos_token_ids;
  if (c.pad_token_id >= 0) j["pad_token_id"] = c.pad_token_id;
  j["torch_dtype"] = c.torch_dtype;
  j["initializer_range"] = c.initializer_range;
  if (c.is_sala()) {
    json mt = json::array();
    for (auto k : c.layer_kinds) mt.push_back(layer_kind_name(k));
    j["mixer_types"] = mt;
    const SparseConfig& s = c.sparse;
    j["sparse_config"] = {{"block_size", s.block_size},   {"dense_len", s.dense_len},
                          {"init_blocks", s.init_blocks}, {"kernel_size", s.kernel_size},
                          {"kernel_stride", s.kernel_stride}, {"topk", s.topk},
                          {"use_nope", s.use_nope},       {"window_size", s.window_size}};
    j["lightning_nh"] = c.lightning_nh;
    j["lightning_nkv"] = c.lightning_nkv;
    j["lightning_head_dim"] = c.lightning_head_dim;
    j["lightning_scale"] = c.lightning_scale;
    j["qk_norm"] = c.qk_norm;
    j["use_output_gate"] = c.use_output_gate;
    j["use_output_norm"] = c.use_output_norm;
    j["attn_use_output_gate"] = c.attn_use_output_gate;
    j["attn_use_rope"] = c.attn_use_rope;
    j["lightning_use_rope"] = c.lightning_use_rope;
  }
  return j;
}

void save_config(const ModelConfig& c, const std::string& dir) {
  io::write_file_atomic((std::filesystem::path(dir) / "config.json").string(), config_to_json(c).dump(2) + "\n");
}

}  // namespace sala
