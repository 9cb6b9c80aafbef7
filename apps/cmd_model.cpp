// sala info | init | import: describe a model, write a random-weight checkpoint, import foreign checkpoints.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "sala/core/error.h"
#include "sala/io/checkpoint.h"
#include "sala/model/info.h"
#include "sala/model/llama2c.h"
#include "sala/model/model.h"
#include "sala/model/presets.h"
#include "sala/model/weights.h"

namespace sala::app {

namespace {

DType parse_dtype(const std::string& s) {
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "f16" || s == "float16") return DType::F16;
  if (s == "f32" || s == "float32") return DType::F32;
  fail_usage("--dtype '{}' is not supported (bf16, f16, f32)", s);
}

void print_info(const ModelConfig& c, const std::string& source, int64_t ctx, const std::string& model_dir,
                bool check_weights, Device device) {
  // The checkpoint is checked before anything is printed, so a failure leaves no half-printed summary.
  std::optional<io::Checkpoint> ck;
  std::vector<std::string> unused;
  if (!model_dir.empty() && std::filesystem::is_directory(model_dir)) {
    ck = io::Checkpoint::open(model_dir);
    unused = validate_checkpoint(c, *ck);
    if (check_weights) check_weights_finite(c, *ck);
  } else if (check_weights) {
    fail_usage("--check-weights needs a model folder, not {}", source);
  }
  fmt::print("model        {} ({}, {})\n", source, c.model_type, c.architecture.empty() ? "-" : c.architecture);
  fmt::print("layers       {}: {} sparse (InfLLM-V2), {} lightning, {} dense\n", c.num_hidden_layers,
             c.count_layers(LayerKind::Sparse), c.count_layers(LayerKind::Lightning), c.count_layers(LayerKind::Dense));
  std::string kinds;
  for (size_t l = 0; l < c.layer_kinds.size(); ++l)
    kinds += c.layer_kinds[l] == LayerKind::Sparse ? 'S' : c.layer_kinds[l] == LayerKind::Lightning ? 'L' : 'D';
  fmt::print("layout       {}\n", kinds);
  fmt::print("hidden       {}  intermediate {}  vocab {}\n", c.hidden_size, c.intermediate_size, c.vocab_size);
  fmt::print("heads        {} query, {} kv (head {}){}\n", c.num_attention_heads, c.num_key_value_heads,
             c.is_sala() ? c.sparse_head_dim() : c.dense_head_dim(), c.is_sala() ? " in sparse layers" : "");
  if (c.is_sala()) {
    fmt::print("lightning    {} heads, {} kv, head {}, scale {}, qk_norm {}, rope {}, decay: ALiBi slopes\n",
               c.lightning_heads(), c.lightning_kv_heads(), c.lightning_dim(), c.lightning_scale, c.qk_norm,
               c.lightning_use_rope);
    const SparseConfig& s = c.sparse;
    const int64_t forced = s.init_blocks + s.local_blocks() + 1;
    fmt::print("sparse       block {}, top-{} (topk {} + window {}/{}): {} forced ({} init + {} local) + {} by score, "
               "K1 {}/{}, K2 {}/{}, dense below {} tokens, rope {}\n",
               s.block_size, s.total_topk(), s.topk, s.window_size, s.block_size, forced, s.init_blocks,
               s.local_blocks() + 1, std::max<int64_t>(0, s.total_topk() - forced), s.kernel_size, s.kernel_stride,
               4 * s.kernel_size, 4 * s.kernel_stride, s.dense_len, c.attn_use_rope);
  }
  fmt::print("rope         theta {}{}\n", c.rope.theta, c.rope.longrope() ? " (LongRoPE)" : "");
  fmt::print("muP          scale_emb {}, residual x{:.5f}, logits x{:.5f}\n", c.scale_emb, c.residual_scale(),
             c.logits_scale());
  fmt::print("context      max_position_embeddings {}\n", c.max_position_embeddings);
  MemoryEstimate m = estimate_memory(c, 2, 2);
  fmt::print("parameters   {} ({:.3f}B)\n", m.params, double(m.params) / 1e9);
  fmt::print("weights      {} bf16, {} fp32\n", human_bytes(m.weight_bytes), human_bytes(m.weight_bytes * 2));
  fmt::print("per token    KV {} + compressed keys {} (bf16 cache)\n", human_bytes(m.kv_bytes_per_token),
             human_bytes(m.compressed_bytes_per_token));
  fmt::print("per sequence lightning state {} (fp32)\n", human_bytes(m.state_bytes));
  fmt::print("at {} tokens cache {} (bf16 KV) / {} (fp32 KV, sala CPU); weights + cache {}\n", ctx,
             human_bytes(m.cache_bytes(ctx)), human_bytes(estimate_memory(c, 2, 4).cache_bytes(ctx)),
             human_bytes(m.weight_bytes + m.cache_bytes(ctx)));
  if (device == Device::CUDA) {
    // The CUDA backend's plan for one sequence at this context (cuda_backend.cpp plan_cache): bf16 weights, bf16 KV
    // in 64-token pages with their compressed keys, fp32 state, activations of 2048-row steps.
    const int64_t rows = Model::kDefaultChunk, pages = (ctx + 63) / 64 + 1;
    const double kv = double(pages) * 64 * (m.kv_bytes_per_token + m.compressed_bytes_per_token);
    const int64_t width = 2 * c.hidden_size + 2 * c.num_attention_heads * c.head_dim * 2 + 3 * c.intermediate_size;
    const double act = double(rows) * (double(width) * 2 + double(c.hidden_size) * 8) +
                       double(rows) * double(c.vocab_size) * 4;
    fmt::print("plan (cuda)  weights {} + KV pages {} + state {} + activations {} = {}\n", human_bytes(m.weight_bytes),
               human_bytes(kv), human_bytes(m.state_bytes), human_bytes(act),
               human_bytes(m.weight_bytes + kv + m.state_bytes + act));
  } else {
    fmt::print("plan (cpu)   weights {} (mapped as stored) + cache up to {} (fp32)\n", human_bytes(m.weight_bytes),
               human_bytes(estimate_memory(c, 2, 4).cache_bytes(ctx)));
  }
  if (ck) {
    fmt::print("checkpoint   {} tensors, all present with the expected shapes", ck->names().size());
    if (!unused.empty()) fmt::print(" ({} unused, e.g. '{}')", unused.size(), unused[0]);
    fmt::print("\n");
    if (check_weights) fmt::print("weights      all finite (no NaN or Inf)\n");
  }
}

}  // namespace

void add_model_commands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand("info", "Summarise a model: layers, shapes, parameters, memory per context length");
    static std::string model, preset;
    static int64_t ctx = 0;
    static bool check_weights = false;
    static std::string device = "cpu";
    cmd->add_option("model", model, "Model folder or config.json");
    cmd->add_option("--preset", preset, "A named config instead of a folder (see `sala init --help`)");
    cmd->add_option("--context", ctx, "Context length for the memory estimate (default: max_position_embeddings)");
    add_check_weights_flag(cmd, check_weights);
    add_device_option(cmd, device);
    cmd->callback([] {
      const Device d = parse_device(device);
      if (!model.empty() && !preset.empty()) fail_usage("give a model or --preset, not both");
      ModelConfig c = resolve_config(model, preset);
      const int64_t n = context_limit(c, ctx);
      print_info(c, preset.empty() ? model : "preset " + preset, n, preset.empty() ? model : "", check_weights, d);
    });
  }
  {
    std::string names;
    for (auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    auto* cmd = app.add_subcommand("init", "Write a random-weight checkpoint for a named or given config");
    static std::string preset, config, out, dtype = "bf16";
    static uint64_t seed = 0;
    static double shard_gb = 5;
    cmd->add_option("--preset", preset, "Named config: " + names);
    cmd->add_option("--config", config, "A config.json to use instead of a preset");
    cmd->add_option("--out", out, "Output folder (config.json + safetensors)")->required();
    cmd->add_option("--dtype", dtype, "Storage dtype: bf16, f16, f32")->capture_default_str();
    cmd->add_option("--seed", seed, "Random seed")->capture_default_str();
    cmd->add_option("--shard-gb", shard_gb, "Largest shard in GB (HF index when more than one)")->capture_default_str();
    cmd->callback([] {
      if (preset.empty() == config.empty()) fail_usage("give exactly one of --preset or --config");
      if (!(shard_gb > 0) || !std::isfinite(shard_gb)) fail_usage("--shard-gb = {} must be a positive number", shard_gb);
      const DType dt = parse_dtype(dtype);
      ModelConfig c = preset.empty() ? load_config(config) : preset_config(preset);
      const auto bytes = uint64_t(std::min(shard_gb * 1e9, 1.8e19));
      const auto t0 = std::chrono::steady_clock::now();
      write_random_model(c, out, dt, seed, bytes, [&](size_t i, size_t n, uint64_t done, uint64_t total) {
        if (n < 2) return;
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double rate = double(done) / std::max(s, 1e-9);
        fmt::print(stderr, "shard {}/{}: {} of {} written, {}/s, ETA {:.0f}s\n", i, n, human_bytes(double(done)),
                   human_bytes(double(total)), human_bytes(rate), double(total - done) / std::max(rate, 1.0));
      });
      fmt::print("wrote {} ({} parameters, {}) to {}\n", preset.empty() ? config : preset, parameter_count(c), dtype, out);
    });
  }
  {
    auto* cmd = app.add_subcommand("import", "Import a foreign checkpoint into the Hugging Face layout");
    cmd->require_subcommand(1);
    auto* l2c = cmd->add_subcommand("llama2c", "llama2.c .bin (legacy or version 1) -> dense Llama checkpoint");
    static std::string in, out, vocab, dtype = "f32";
    l2c->add_option("checkpoint", in, "llama2.c checkpoint (.bin)")->required()->check(CLI::ExistingFile);
    l2c->add_option("--out", out, "Output folder")->required();
    l2c->add_option("--vocab", vocab, "llama2.c tokenizer.bin, copied beside as llama2c_tokenizer.bin")
        ->check(CLI::ExistingFile);
    l2c->add_option("--dtype", dtype, "Storage dtype: f32, bf16, f16")->capture_default_str();
    l2c->callback([] {
      // Everything is read and checked before the output folder is touched.
      const DType dt = parse_dtype(dtype);
      Llama2cModel m = read_llama2c(in);
      if (!vocab.empty()) {
        Llama2cVocab v = Llama2cVocab::load(vocab);
        if (v.size() != m.config.vocab_size)
          fail("{}: the vocabulary has {} tokens but the checkpoint {} has vocab_size {}", vocab, v.size(), in,
               m.config.vocab_size);
      }
      save_model(m.config, m.weights, out, dt);
      const auto vocab_out = std::filesystem::path(out) / "llama2c_tokenizer.bin";
      if (!vocab.empty())
        std::filesystem::copy_file(vocab, vocab_out, std::filesystem::copy_options::overwrite_existing);
      else
        std::filesystem::remove(vocab_out);  // an earlier import's vocabulary would decode this model's ids
      fmt::print("imported {} ({} layers, dim {}, vocab {}) to {}\n", in, m.config.num_hidden_layers,
                 m.config.hidden_size, m.config.vocab_size, out);
    });
  }
}

}  // namespace sala::app
