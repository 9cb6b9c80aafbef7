// Config parsing: every SALA field, dense teachers (MiniCPM4 LongRoPE, Llama), clear errors naming field and value.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "sala/model/config.h"
#include "sala/model/info.h"
#include "sala/model/presets.h"
#include "sala/model/weights.h"
#include "test_util.h"

using namespace sala;
using nlohmann::json;

namespace {
json sala9b() { return config_to_json(preset_config("minicpm-sala-9b")); }
}  // namespace

TEST(Config, ReleasedSalaConfigFields) {
  ModelConfig c = preset_config("minicpm-sala-9b");
  EXPECT_TRUE(c.is_sala());
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.count_layers(LayerKind::Sparse), 8);
  EXPECT_EQ(c.count_layers(LayerKind::Lightning), 24);
  for (int l : {0, 9, 16, 17, 22, 29, 30, 31}) EXPECT_EQ(c.layer_kinds[size_t(l)], LayerKind::Sparse) << l;
  EXPECT_EQ(c.sparse.total_topk(), 96);
  EXPECT_EQ(c.sparse.local_blocks(), 32);
  EXPECT_EQ(c.sparse_head_dim(), 128);
  EXPECT_EQ(c.lightning_kv_heads(), 32);
  EXPECT_NEAR(c.residual_scale(), 1.4 / std::sqrt(32.0), 1e-15);
  EXPECT_NEAR(c.logits_scale(), 1.0 / 16, 1e-15);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 73440}));
  EXPECT_FALSE(c.attn_use_rope);
  EXPECT_TRUE(c.lightning_use_rope);
  // round trip through JSON
  ModelConfig d = parse_config(config_to_json(c), "roundtrip");
  EXPECT_EQ(config_to_json(d), config_to_json(c));
}

TEST(Config, ParameterCountAndMemoryOfTheReleasedModel) {
  ModelConfig c = preset_config("minicpm-sala-9b");
  MemoryEstimate m = estimate_memory(c, 2, 2);
  EXPECT_NEAR(double(m.params) / 1e9, 9.477, 0.005);  // §1.2: ≈ 9.477B
  EXPECT_DOUBLE_EQ(m.kv_bytes_per_token, 8 * 1024.0);  // §4.7: 8 KiB/token of K+V in bf16
  EXPECT_NEAR(m.compressed_bytes_per_token, 320.0, 1e-9);  // 8 layers x 512 B x (1/16 + 1/64)
  EXPECT_DOUBLE_EQ(m.state_bytes, 48.0 * 1024 * 1024);  // 24 x 32 x 128 x 128 x 4 B
}

TEST(Config, MiniCPM4TeacherWithLongRope) {
  SALA_REQUIRE_SHARED("fixtures/minicpm-tokenizer/minicpm4-8b/config.json");
  ModelConfig c = load_config(test::shared_path("fixtures/minicpm-tokenizer/minicpm4-8b/config.json"));
  EXPECT_EQ(c.model_type, "minicpm");
  EXPECT_EQ(c.count_layers(LayerKind::Dense), 32);
  EXPECT_TRUE(c.rope.longrope());
  EXPECT_EQ(c.rope.short_factor.size(), 64u);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 32768);
  EXPECT_EQ(c.dense_head_dim(), 128);
  EXPECT_NEAR(c.residual_scale(), 1.4 / std::sqrt(32.0), 1e-15);
  EXPECT_NEAR(double(parameter_count(c)) / 1e9, 8.19, 0.01);
}

TEST(Config, PlainLlamaConfig) {
  json j = {{"model_type", "llama"}, {"vocab_size", 32000}, {"hidden_size", 4096}, {"intermediate_size", 11008},
            {"num_hidden_layers", 32}, {"num_attention_heads", 32}, {"num_key_value_heads", 32},
            {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", false}, {"rope_scaling", nullptr},
            {"max_position_embeddings", 4096}, {"bos_token_id", 1}, {"eos_token_id", 2}};
  ModelConfig c = parse_config(j, "llama.json");
  EXPECT_DOUBLE_EQ(c.residual_scale(), 1.0);
  EXPECT_DOUBLE_EQ(c.logits_scale(), 1.0);
  EXPECT_DOUBLE_EQ(c.scale_emb, 1.0);
  EXPECT_NEAR(double(parameter_count(c)) / 1e9, 6.738, 0.001);  // Llama-2-7B
}

TEST(Config, ErrorsNameTheFieldAndValue) {
  auto with = [](const char* key, json v) {
    json j = sala9b();
    j[key] = v;
    return j;
  };
  test::expect_error([&] { parse_config(with("model_type", "gpt2"), "c.json"); }, {"c.json", "model_type", "gpt2"});
  test::expect_error([&] { parse_config(with("hidden_act", "gelu"), "c.json"); }, {"hidden_act", "gelu"});
  json mt = sala9b()["mixer_types"];
  mt[3] = "mamba";
  test::expect_error([&] { parse_config(with("mixer_types", mt), "c.json"); }, {"mixer_types[3]", "mamba"});
  mt = sala9b()["mixer_types"];
  mt.erase(mt.begin());
  test::expect_error([&] { parse_config(with("mixer_types", mt), "c.json"); }, {"mixer_types", "31", "32"});
  test::expect_error([&] { parse_config(with("hidden_size", "big"), "c.json"); }, {"hidden_size", "\"big\"", "integer"});
  test::expect_error([&] { parse_config(with("rope_scaling", json{{"rope_type", "yarn"}}), "c.json"); },
                     {"rope_scaling.rope_type", "yarn"});
  test::expect_error([&] { parse_config(with("lightning_scale", "2"), "c.json"); }, {"lightning_scale", "\"2\""});
  test::expect_error([&] { parse_config(with("num_key_value_heads", 3), "c.json"); }, {"num_key_value_heads", "3"});
  json sc = sala9b()["sparse_config"];
  sc["kernel_size"] = 48;
  test::expect_error([&] { parse_config(with("sparse_config", sc), "c.json"); }, {"sparse_config.kernel_size", "48"});
  json j = sala9b();
  j.erase("vocab_size");
  test::expect_error([&] { parse_config(j, "c.json"); }, {"missing", "vocab_size"});
  test::expect_error([&] { load_config("/nonexistent/dir"); }, {"/nonexistent/dir", "cannot open"});
}

TEST(Config, HuggingFaceDefaultsPerModelType) {
  json j = {{"model_type", "minicpm"}, {"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128},
            {"num_hidden_layers", 4}, {"num_attention_heads", 4}};
  ModelConfig c = parse_config(j, "m.json");
  EXPECT_NEAR(c.residual_scale(), 1.0 / 2.0, 1e-15);  // MiniCPMConfig: scale_depth 1 -> 1/sqrt(4)
  EXPECT_NEAR(c.logits_scale(), 1.0 / 64, 1e-15);     // dim_model_base 1 -> logits / hidden
  EXPECT_TRUE(c.tie_word_embeddings);
  j["model_type"] = "llama";
  j["scale_depth"] = 1.4;  // not read by HF Llama
  c = parse_config(j, "l.json");
  EXPECT_DOUBLE_EQ(c.residual_scale(), 1.0);
  EXPECT_FALSE(c.tie_word_embeddings);
  j["model_type"] = "mistral";
  j["sliding_window"] = 4096;
  test::expect_error([&] { parse_config(j, "mi.json"); }, {"sliding_window", "4096"});
  json s = sala9b();
  s.erase("qk_norm");
  test::expect_error([&] { parse_config(s, "s.json"); }, {"qk_norm", "missing"});
}

TEST(Config, MupValuesAreUsedAsGivenOrRefused) {
  // The reference multiplies by scale_depth / sqrt(L) and divides logits by hidden / dim_model_base whatever their
  // values: sala must not swap a non-positive value for "no scaling"; it refuses it, naming the field.
  json j = sala9b();
  j["scale_depth"] = 2.0;
  j["dim_model_base"] = 1024;
  ModelConfig c = parse_config(j, "cfg.json");
  EXPECT_NEAR(c.residual_scale(), 2.0 / std::sqrt(32.0), 1e-15);
  EXPECT_NEAR(c.logits_scale(), 1024.0 / 4096.0, 1e-15);
  for (const char* f : {"scale_depth", "dim_model_base", "scale_emb"})
    for (double v : {0.0, -1.5}) {
      json k = sala9b();
      k[f] = v;
      test::expect_error([&] { parse_config(k, "cfg.json"); }, {"cfg.json", f, "must be a positive number"});
    }
}

TEST(Config, SizesAndLimitsAreValidated) {
  for (int64_t v : {int64_t(0), int64_t(-4096)}) {
    json j = sala9b();
    j["max_position_embeddings"] = v;
    test::expect_error([&] { parse_config(j, "cfg.json"); }, {"cfg.json", "max_position_embeddings", "positive"});
  }
  // absurd sizes are refused before anything multiplies them (no int64 overflow, no bad_alloc)
  for (auto [f, v] : {std::pair{"hidden_size", int64_t(1) << 40}, std::pair{"vocab_size", int64_t(1) << 40},
                      std::pair{"intermediate_size", int64_t(1) << 40}, std::pair{"num_hidden_layers", int64_t(1) << 20}}) {
    json j = config_to_json(preset_config("llama-tiny"));
    j[f] = v;
    test::expect_error([&] { parse_config(j, "cfg.json"); }, {"cfg.json", f, "larger than sala supports"});
  }
  // at the bounds every tensor size and the parameter count still fit int64
  json j = config_to_json(preset_config("llama-tiny"));
  j["vocab_size"] = int64_t(1) << 30;
  j["hidden_size"] = int64_t(1) << 18;
  j["intermediate_size"] = int64_t(1) << 20;
  j["num_hidden_layers"] = int64_t(1) << 12;
  j["num_attention_heads"] = 1 << 12;
  j["num_key_value_heads"] = 1 << 12;
  j["head_dim"] = 1 << 6;
  ModelConfig c = parse_config(j, "cfg.json");
  EXPECT_GT(parameter_count(c), int64_t(1) << 50);
  json n = sala9b();
  n["rms_norm_eps"] = -1e-6;
  test::expect_error([&] { parse_config(n, "cfg.json"); }, {"rms_norm_eps"});
}

TEST(Config, AFieldGivenTwiceIsRefused) {
  const test::TempDir tmp("dup_cfg");
  const std::string p = tmp.file("config.json");
  std::string text = config_to_json(preset_config("sala-tiny")).dump(1);
  text.insert(text.find("\"vocab_size\""), "\"vocab_size\": 99,\n ");
  std::ofstream(p) << text;
  test::expect_error([&] { load_config(p); }, {p, "'vocab_size' twice"});
  std::ofstream(p) << "{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"longrope\", \"type\": \"x\"}}";
  test::expect_error([&] { load_config(p); }, {p, "'type' twice (in 'rope_scaling')"});
}
