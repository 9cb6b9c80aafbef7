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
                           {"sala-tiny", sala_tiny},
                           {"sala-100m", sala_100m},
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
