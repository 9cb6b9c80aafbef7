// ModelConfig: one config type for the whole family sala runs, parsed from a Hugging Face config.json.
//  - minicpm_sala: hybrid InfLLM-V2 sparse ("minicpm4") + Lightning ("lightning-attn") layers, per mixer_types;
//  - minicpm (MiniCPM4, the teacher family) and llama: every layer dense softmax GQA attention with RoPE.
// Semantics follow the official code (shared/research/sala-model.md §1, §4.9): sparse layers use
// hidden/heads as head size; lightning layers use num_attention_heads, head_dim and lightning_nkv.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace sala {

enum class LayerKind : uint8_t { Sparse, Lightning, Dense };
const char* layer_kind_name(LayerKind k);  // "minicpm4", "lightning-attn", "dense"

struct SparseConfig {
  int64_t block_size = 64;     // attention block (tokens)
  int64_t dense_len = 8192;    // a call whose last position + 1 >= dense_len uses block selection
  int64_t init_blocks = 1;     // leading blocks always selected
  int64_t kernel_size = 32;    // K1 window; K2 uses 4x kernel and stride
  int64_t kernel_stride = 16;
  int64_t topk = 64;           // free picks; total selected = topk + window_size / block_size
  int64_t window_size = 2048;  // local window; window_size / block_size blocks before the query's own
  bool use_nope = false;
  int64_t local_blocks() const { return window_size / block_size; }
  int64_t total_topk() const { return topk + local_blocks(); }
};

struct RopeConfig {
  double theta = 10000.0;
  // LongRoPE (MiniCPM4): per-frequency divisors and a cos/sin scale; empty factors = plain RoPE.
  std::vector<double> short_factor, long_factor;
  int64_t original_max_position_embeddings = 0;
  bool longrope() const { return !short_factor.empty(); }
};

struct ModelConfig {
  std::string model_type;    // "minicpm_sala" | "minicpm" | "llama"
  std::string architecture;  // architectures[0], written back unchanged
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // explicit or hidden/heads
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  // muP scales: MiniCPM types always apply them (HF defaults 1 when absent); llama and mistral have none (mup false).
  bool mup = false;
  double scale_emb = 1.0;
  double scale_depth = 1.0;
  double dim_model_base = 1.0;
  int64_t bos_token_id = 1;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;
  std::string torch_dtype = "bfloat16";
  double initializer_range = 0.02;

  std::vector<LayerKind> layer_kinds;  // one per layer
  SparseConfig sparse;
  // Lightning (only minicpm_sala)
  int64_t lightning_nh = 0, lightning_nkv = 0, lightning_head_dim = 0;  // nh, head_dim are not read (§4.9.6)
  std::string lightning_scale = "1/sqrt(d)";
  bool qk_norm = false, use_output_gate = false, use_output_norm = false;
  bool attn_use_output_gate = false, attn_use_rope = true, lightning_use_rope = true;

  // ---- derived quantities (the one place the model math reads them) ----
  bool is_sala() const { return model_type == "minicpm_sala"; }
  int64_t sparse_head_dim() const { return hidden_size / num_attention_heads; }
  int64_t dense_head_dim() const { return head_dim; }
  int64_t lightning_heads() const { return num_attention_heads; }
  int64_t lightning_kv_heads() const { return lightning_nkv; }
  int64_t lightning_dim() const { return head_dim; }
  double residual_scale() const;   // scale_depth / sqrt(L) with muP, else 1
  double logits_scale() const;     // dim_model_base / hidden with muP, else 1
  double lightning_q_scale() const;
  int64_t count_layers(LayerKind k) const;
};

ModelConfig parse_config(const nlohmann::json& j, const std::string& source);
ModelConfig load_config(const std::string& path);  // a config.json file or a folder holding one
nlohmann::json config_to_json(const ModelConfig& c);
void save_config(const ModelConfig& c, const std::string& dir);  // writes dir/config.json atomically
// Throws sala::Error naming the field if the config is inconsistent (called by parse_config).
void validate_config(const ModelConfig& c, const std::string& source);

}  // namespace sala
