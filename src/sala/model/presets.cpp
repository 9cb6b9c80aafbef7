#include "sala/model/presets.h"

#include <nlohmann/json.hpp>

#include "sala/core/error.h"

namespace sala {

namespace {

using nlohmann::json;

// The released MiniCPM-SALA config.json (sala-model.md §1.1, §2.1).
json sala_9b() {
  json mt = json::array();
  const int sparse[] = {0, 9, 16, 17, 22, 29, 30, 31};
  for (int l = 0; l < 32; ++l) {
    bool s = std::find(std::begin(sparse), std::end(sparse), l) != std::end(sparse);
    mt.push_back(s ? "minicpm4" : "lightning-attn");
  }
  return {{"architectures", {"MiniCPMSALAForCausalLM"}},
          {"model_type", "minicpm_sala"},
          {"num_hidden_layers", 32},
          {"hidden_size", 4096},
          {"intermediate_size", 16384},
          {"num_attention_heads", 32},
          {"num_key_value_heads", 2},
          {"head_dim", 128},
          {"lightning_nh", 32},
          {"lightning_nkv", 32},
          {"lightning_head_dim", 128},
          {"lightning_scale", "1/sqrt(d)"},
          {"lightning_use_rope", true},
          {"attn_use_rope", false},
          {"qk_norm", true},
          {"use_output_gate", true},
          {"use_output_norm", true},
          {"attn_use_output_gate", true},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"hidden_act", "silu"},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0},
          {"rope_scaling", nullptr},
          {"max_position_embeddings", 524288},
          {"vocab_size", 73448},
          {"tie_word_embeddings", false},
          {"scale_emb", 12},
          {"scale_depth", 1.4},
          {"dim_model_base", 256},
          {"mup_denominator", 32},
          {"initializer_range", 0.1},
          {"bos_token_id", 1},
          {"eos_token_id", {2, 73440}},
          {"pad_token_id", 2},
          {"torch_dtype", "bfloat16"},
          {"sparse_config",
           {{"block_size", 64}, {"dense_len", 8192}, {"init_blocks", 1}, {"kernel_size", 32},
            {"kernel_stride", 16}, {"topk", 64}, {"use_nope", false}, {"window_size", 2048}}},
          {"mixer_types", mt}};
}

// The released config with smaller shapes (lightning heads = query heads, as released); eos 2 only.
json scaled_sala(int layers, int hidden, int inter, int heads, int kv_heads, int head_dim, int vocab, int max_pos,
                 double init) {
  json j = sala_9b();
  j["num_hidden_layers"] = layers;
  j["hidden_size"] = hidden;
  j["intermediate_size"] = inter;
  j["num_attention_heads"] = heads;
  j["num_key_value_heads"] = kv_heads;
  j["head_dim"] = head_dim;
  j["lightning_nh"] = heads;
  j["lightning_nkv"] = heads;
  j["lightning_head_dim"] = head_dim;
  j["vocab_size"] = vocab;
  j["max_position_embeddings"] = max_pos;
  j["initializer_range"] = init;
  j["eos_token_id"] = 2;
  return j;
}

// A small SALA model with the real head grouping (16 query heads per KV head) and a scaled-down sparse config, so
// block selection (not just dense attention) runs within a few hundred tokens.
json sala_tiny() {
  json j = scaled_sala(4, 256, 512, 16, 1, 16, 512, 4096, 0.05);
  j["sparse_config"] = {{"block_size", 16}, {"dense_len", 128}, {"init_blocks", 1}, {"kernel_size", 8},
                        {"kernel_stride", 4}, {"topk", 4},     {"use_nope", false}, {"window_size", 32}};
  j["mixer_types"] = {"minicpm4", "lightning-attn", "lightning-attn", "minicpm4"};
  return j;
}

// ~100M parameters, SALA ratio (1 sparse : 3 lightning), real sparse config.
json sala_100m() {
  json j = scaled_sala(12, 768, 2048, 16, 1, 48, 8192, 65536, 0.02);
  json mt = json::array();
  for (int l = 0; l < 12; ++l) mt.push_back(l == 0 || l == 5 || l == 10 || l == 11 ? "minicpm4" : "lightning-attn");
  j["mixer_types"] = mt;
  return j;
}

// The GPU kernels' shapes at small size: head 64, 16 query heads per KV head, the real block 64 / kernel 32 /
// stride 16 sparse config with a short window and dense_len 512, so block selection runs within ~1K tokens.
json sala_tiny64() {
  json j = scaled_sala(4, 1024, 2048, 16, 1, 64, 512, 16384, 0.02);
  j["sparse_config"] = {{"block_size", 64}, {"dense_len", 512}, {"init_blocks", 1}, {"kernel_size", 32},
                        {"kernel_stride", 16}, {"topk", 2},     {"use_nope", false}, {"window_size", 128}};
  j["mixer_types"] = {"minicpm4", "lightning-attn", "lightning-attn", "minicpm4"};
  return j;
}

// ~120M parameters in the GPU kernels' shapes (head 64), 1 sparse : 3 lightning, the released sparse config.
json sala_small() {
  json j = scaled_sala(8, 1024, 2816, 16, 1, 64, 8192, 1 << 20, 0.02);
  json mt = json::array();
  for (int l = 0; l < 8; ++l) mt.push_back(l == 0 || l == 7 ? "minicpm4" : "lightning-attn");
  j["mixer_types"] = mt;
  return j;
}

// Full-attention baselines with the released model's sizes (random weights; for `sala bench`):
// minicpm4-8b: SALA-9B's shapes with 32 dense GQA layers (32 query / 2 KV heads, head 128) and plain RoPE.
json minicpm4_8b() {
  json j = sala_9b();
  j["architectures"] = {"MiniCPMForCausalLM"};
  j["model_type"] = "minicpm";
  j["max_position_embeddings"] = 1 << 21;
  for (const char* k : {"mixer_types", "sparse_config", "lightning_nh", "lightning_nkv", "lightning_head_dim",
                        "lightning_scale", "lightning_use_rope", "qk_norm", "use_output_gate", "use_output_norm",
                        "attn_use_output_gate", "attn_use_rope"})
    j.erase(k);
  return j;
}

// qwen3-8b: Qwen3-8B's shapes (36 layers, hidden 4096, 32 query / 8 KV heads of 128, MLP 12288, vocab 151936,
// theta 1e6) as a Llama-type model: Qwen3's per-head q/k RMSNorm is left out (a few elementwise passes per layer).
json qwen3_8b() {
  return {{"architectures", {"Qwen3ForCausalLM"}},
          {"model_type", "llama"},
          {"num_hidden_layers", 36},
          {"hidden_size", 4096},
          {"intermediate_size", 12288},
          {"num_attention_heads", 32},
          {"num_key_value_heads", 8},
          {"head_dim", 128},
          {"vocab_size", 151936},
          {"max_position_embeddings", 1 << 21},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 1000000.0},
          {"tie_word_embeddings", false},
          {"initializer_range", 0.02},
          {"bos_token_id", 151643},
          {"eos_token_id", 151645},
          {"hidden_act", "silu"}};
}

// MiniCPM4-style dense teacher, tiny.
json minicpm_tiny() {
  return {{"architectures", {"MiniCPMForCausalLM"}},
          {"model_type", "minicpm"},
          {"num_hidden_layers", 2},
          {"hidden_size", 128},
          {"intermediate_size", 256},
          {"num_attention_heads", 8},
          {"num_key_value_heads", 2},
          {"vocab_size", 512},
          {"max_position_embeddings", 2048},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0},
          {"scale_emb", 12},
          {"scale_depth", 1.4},
          {"dim_model_base", 32},
          {"tie_word_embeddings", false},
          {"initializer_range", 0.05},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"hidden_act", "silu"}};
}

json llama_tiny() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"num_hidden_layers", 2},
          {"hidden_size", 64},
          {"intermediate_size", 172},
          {"num_attention_heads", 8},
          {"num_key_value_heads", 4},
          {"vocab_size", 512},
          {"max_position_embeddings", 512},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", true},
          {"initializer_range", 0.05},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"hidden_act", "silu"}};
}

struct Preset {
  const char* name;
  json (*make)();
};
const Preset kPresets[] = {{"minicpm-sala-9b", sala_9b},
                           {"minicpm4-8b", minicpm4_8b},
                           {"qwen3-8b", qwen3_8b},
                           {"sala-tiny", sala_tiny},
                           {"sala-tiny64", sala_tiny64},
                           {"sala-100m", sala_100m},
                           {"sala-small", sala_small},
                           {"minicpm-tiny", minicpm_tiny},
                           {"llama-tiny", llama_tiny}};

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> n;
  for (auto& p : kPresets) n.push_back(p.name);
  return n;
}

ModelConfig preset_config(const std::string& name) {
  for (auto& p : kPresets)
    if (name == p.name) return parse_config(p.make(), "preset " + name);
  std::string known;
  for (auto& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
  fail("unknown config preset '{}' (known: {})", name, known);
}

}  // namespace sala
