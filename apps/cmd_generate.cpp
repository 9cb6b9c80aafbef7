// sala generate | dump: run a model on token ids.
#include <chrono>
#include <filesystem>
#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "sala/core/error.h"
#include "sala/io/safetensors.h"
#include "sala/model/llama2c.h"
#include "sala/model/model.h"
#include "sala/runtime/generate.h"

namespace sala::app {

namespace {

struct GenArgs {
  std::string model, ids, stop;
  int64_t max_new = 64, chunk = 0, context = 0;
  SamplingParams s;
  bool ignore_eos = false, quiet = false;
};

void add_sampling(CLI::App* cmd, GenArgs& a) {
  cmd->add_option("--temperature", a.s.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", a.s.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", a.s.top_p, "Nucleus mass (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", a.s.min_p, "Drop tokens below min-p x the top probability")->capture_default_str();
  cmd->add_option("--repetition-penalty", a.s.repetition_penalty, "HF-style penalty on seen tokens")->capture_default_str();
  cmd->add_option("--seed", a.s.seed, "Sampling seed")->capture_default_str();
}

}  // namespace

void add_generate_commands(CLI::App& app) {
  {
    static GenArgs a;
    auto* cmd = app.add_subcommand("generate", "Generate tokens from a prompt of token ids (greedy or sampled)");
    cmd->add_option("model", a.model, "Model folder (config.json + safetensors)")->required();
    cmd->add_option("--ids", a.ids, "Prompt token ids, e.g. 1,450,4996 (default: BOS)");
    cmd->add_option("-n,--max-new-tokens", a.max_new, "Tokens to generate at most")->capture_default_str();
    cmd->add_option("--chunk", a.chunk, "Prefill chunk size (0 = whole prompt at once)")->capture_default_str();
    cmd->add_option("--context", a.context, "Context limit (default: max_position_embeddings)");
    cmd->add_option("--stop-ids", a.stop, "Stop ids (default: the config's eos ids)");
    cmd->add_flag("--ignore-eos", a.ignore_eos, "Do not stop at eos");
    cmd->add_flag("-q,--quiet", a.quiet, "Print only the generated ids");
    add_sampling(cmd, a);
    cmd->callback([] {
      auto t0 = std::chrono::steady_clock::now();
      Model m = Model::load(a.model);
      const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::vector<int32_t> prompt =
          a.ids.empty() ? std::vector<int32_t>{int32_t(m.config().bos_token_id)} : parse_ids(a.ids, "--ids");
      GenerateOptions o;
      o.max_new_tokens = a.max_new;
      o.prefill_chunk = a.chunk;
      o.sampling = a.s;
      o.ignore_eos = a.ignore_eos;
      if (!a.stop.empty())
        for (int32_t x : parse_ids(a.stop, "--stop-ids")) o.stop_ids.push_back(x);
      SequenceState st = m.new_state(a.context);
      GenerateResult r = generate(m, st, prompt, o);
      fmt::print("{}\n", join_ids(r.tokens));
      const auto vocab_path = std::filesystem::path(a.model) / "llama2c_tokenizer.bin";
      if (!a.quiet && std::filesystem::exists(vocab_path)) {
        Llama2cVocab v = Llama2cVocab::load(vocab_path.string());
        fmt::print("{}\n", v.decode(r.tokens, prompt.back()));
      }
      if (!a.quiet) {
        const double ptoks = double(r.prompt_tokens), dtoks = double(std::max<size_t>(r.tokens.size(), 1));
        fmt::print(stderr,
                   "load {:.2f}s | prefill {} tok in {:.3f}s ({:.1f} tok/s) | decode {} tok in {:.3f}s ({:.1f} tok/s) "
                   "| stop: {}\n",
                   load_s, r.prompt_tokens, r.prefill_seconds, ptoks / std::max(r.prefill_seconds, 1e-9),
                   r.tokens.size(), r.decode_seconds, dtoks / std::max(r.decode_seconds, 1e-9), r.stop_reason);
      }
    });
  }
  {
    static std::string model, ids, decode_ids, out;
    static int64_t chunk = 0;
    auto* cmd = app.add_subcommand(
        "dump", "Run a prefill (and optional decode steps) and write logits + named per-layer intermediates to a "
                "safetensors file, for tensor-by-tensor comparison with another implementation");
    cmd->add_option("model", model, "Model folder")->required();
    cmd->add_option("--ids", ids, "Prompt token ids")->required();
    cmd->add_option("--decode-ids", decode_ids, "Token ids fed one at a time after the prefill");
    cmd->add_option("--chunk", chunk, "Prefill chunk size (0 = one call)")->capture_default_str();
    cmd->add_option("--out", out, "Output .safetensors")->required();
    cmd->callback([] {
      Model m = Model::load(model);
      SequenceState st = m.new_state();
      Trace tr;
      tr.prefix = "prefill.";
      m.prefill(parse_ids(ids, "--ids"), st, chunk, &tr, true);
      int step = 0;
      if (!decode_ids.empty())
        for (int32_t id : parse_ids(decode_ids, "--decode-ids")) {
          tr.prefix = fmt::format("step{}.", step++);
          m.decode(id, st, &tr);
        }
      std::vector<io::TensorToWrite> tw;
      for (auto& e : tr.entries()) tw.push_back({e.name, e.dtype, e.shape, std::span<const std::byte>(e.data)});
      io::write_safetensors(out, tw, {{"model", model}, {"ids", ids}, {"decode_ids", decode_ids}});
      fmt::print("wrote {} tensors to {}\n", tw.size(), out);
      const auto* lg = tr.find("prefill.logits");
      if (lg)
        fmt::print("prefill logits fingerprint #{:08x}\n",
                   fingerprint({reinterpret_cast<const float*>(lg->data.data()), lg->data.size() / 4}));
    });
  }
}

}  // namespace sala::app
