// sala generate | dump: run a model on token ids.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fmt/format.h>

#include "commands.h"
#include "common.h"
#include "gen_common.h"
#include "sala/core/error.h"
#include "sala/io/safetensors.h"
#include "sala/model/llama2c.h"
#include "sala/model/model.h"
#include "sala/runtime/generate.h"
#include "sala/text/tokenizer.h"
#include <iostream>

namespace sala::app {

void add_generate_commands(CLI::App& app) {
  {
    static GenArgs a;
    auto* cmd = app.add_subcommand("generate", "Generate from a prompt (text or token ids), greedy or sampled; streams text when the model has a tokenizer");
    cmd->add_option("model", a.model, "Model folder (config.json + safetensors)")->required();
    cmd->add_option("-p,--prompt", a.prompt, "Prompt text (needs tokenizer.json or tokenizer.model beside the model)");
    auto* ids_opt = cmd->add_option("--ids", a.ids, "Prompt token ids instead of text, e.g. 1,450,4996 (default: BOS)");
    cmd->add_option("--tokenizer", a.tokenizer, "Tokenizer folder or file (default: the model folder)");
    cmd->add_option("--stop", a.stop_strings, "Stop string (repeatable)");
    cmd->add_option("-n,--max-new-tokens", a.max_new, "Tokens to generate at most")->capture_default_str();
    cmd->add_option("--chunk", a.chunk, "Prefill chunk size (0 = whole prompt at once)")->capture_default_str();
    cmd->add_option("--context", a.context, "Context limit (default: max_position_embeddings)");
    auto* stop_opt =
        cmd->add_option("--stop-ids", a.stop, "Extra stop ids (the config's and tokenizer's eos ids always stop)");
    cmd->add_flag("--ignore-eos", a.ignore_eos, "Do not stop at eos");
    cmd->add_flag("-q,--quiet", a.quiet, "Print only the generated ids");
    add_check_weights_flag(cmd, a.check_weights);
    add_device_option(cmd, a.device);
    add_sampling(cmd, a);
    cmd->callback([ids_opt, stop_opt] {
      // Everything that can be checked is checked before the prompt is echoed, so a failed command prints no text.
      if (ids_opt->count() && !a.prompt.empty()) fail_usage("give --prompt or --ids, not both");
      check_lengths(a.max_new, a.chunk, a.context);
      a.s.validate();
      const std::vector<int32_t> given_ids = ids_opt->count() ? parse_ids(a.ids, "--ids") : std::vector<int32_t>{};
      const std::vector<int32_t> extra_stops = stop_opt->count() ? parse_ids(a.stop, "--stop-ids") : std::vector<int32_t>{};
      auto t0 = std::chrono::steady_clock::now();
      Model m = load_for_run(a.model, a.device, a.check_weights, a.context);
      const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const ModelConfig& cfg = m.config();
      std::vector<int32_t> prompt = ids_opt->count() ? given_ids : std::vector<int32_t>{int32_t(cfg.bos_token_id)};
      const std::string tok_path = a.tokenizer.empty() ? a.model : a.tokenizer;
      std::unique_ptr<text::Tokenizer> tok;
      if (!a.prompt.empty() || !a.tokenizer.empty() || (!a.quiet && has_tokenizer(tok_path)))
        tok = text::Tokenizer::load(tok_path);
      if (!a.prompt.empty()) {
        prompt = tok->encode(a.prompt);
        if (prompt.empty()) fail("--prompt: the prompt encodes to no tokens");
      }
      if (tok && tok->vocab_size() > cfg.vocab_size)
        fail("{}: tokenizer has {} ids but the model's vocab_size is {}", tok_path, tok->vocab_size(), cfg.vocab_size);
      check_ids_in_vocab(prompt, cfg, ids_opt->count() ? "--ids" : "--prompt");
      if (stop_opt->count()) check_ids_in_vocab(extra_stops, cfg, "--stop-ids");
      const int64_t limit = context_limit(cfg, a.context);
      if (int64_t(prompt.size()) > limit)
        fail("the prompt has {} tokens, over the context limit of {} (--context)", prompt.size(), limit);
      GenerateOptions o;
      o.max_new_tokens = a.max_new;
      o.prefill_chunk = a.chunk;
      o.sampling = a.s;
      if (!a.ignore_eos) o.stop_ids = stop_ids_for(m, tok.get());
      if (stop_opt->count())
        for (int32_t x : extra_stops) o.stop_ids.push_back(x);
      o.ignore_eos = a.ignore_eos && o.stop_ids.empty();  // --ignore-eos keeps explicit --stop-ids
      SequenceState st = m.new_state(limit);
      // Long prompts: prefill in 2048-token chunks (same result, §docs/model.md) with progress on stderr.
      if (o.prefill_chunk == 0 && prompt.size() > 4096) o.prefill_chunk = 2048;
      const auto t_pre = std::chrono::steady_clock::now();
      if (!a.quiet && prompt.size() > 4096)
        o.on_prefill_progress = [t_pre](int64_t done, int64_t total) {
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_pre).count();
          const double rate = double(done) / std::max(s, 1e-9);
          fmt::print(stderr, "\rprefill {}/{} tokens, {:.0f} tok/s, ETA {:.0f}s   ", done, total, rate,
                     double(total - done) / std::max(rate, 1e-9));
          if (done == total) fmt::print(stderr, "\n");
        };
      std::unique_ptr<TextStream> ts;
      if (tok && !a.quiet) {
        ts = std::make_unique<TextStream>(*tok, a.stop_strings);
        if (!a.prompt.empty()) ts->emit(a.prompt);
        o.on_token = [&](int32_t id) { return ts->push(id); };
      }
      GenerateResult r = generate(m, st, prompt, o);
      if (ts) {
        ts->finish();
        fmt::print("\n");
        std::fflush(stdout);
      } else {
        fmt::print("{}\n", join_ids(r.tokens));
        const auto vocab_path = std::filesystem::path(a.model) / "llama2c_tokenizer.bin";
        if (!a.quiet && std::filesystem::exists(vocab_path)) {
          Llama2cVocab v = Llama2cVocab::load(vocab_path.string());
          fmt::print("{}\n", v.decode(r.tokens, prompt.back()));
        }
      }
      if (!a.quiet) print_stats(r, load_s);
    });
  }
  {
    static std::string model, ids, decode_ids, out;
    static int64_t chunk = 0;
    static bool check_weights = false;
    static std::string device = "cpu";
    auto* cmd = app.add_subcommand(
        "dump", "Run a prefill (and optional decode steps) and write logits + named per-layer intermediates to a "
                "safetensors file, for tensor-by-tensor comparison with another implementation");
    cmd->add_option("model", model, "Model folder")->required();
    cmd->add_option("--ids", ids, "Prompt token ids")->required();
    cmd->add_option("--decode-ids", decode_ids, "Token ids fed one at a time after the prefill");
    cmd->add_option("--chunk", chunk, "Prefill chunk size (0 = one call)")->capture_default_str();
    cmd->add_option("--out", out, "Output .safetensors")->required();
    add_check_weights_flag(cmd, check_weights);
    add_device_option(cmd, device);
    cmd->callback([] {
      check_lengths(0, chunk, 0);
      const std::vector<int32_t> prompt = parse_ids(ids, "--ids");
      const std::vector<int32_t> steps = decode_ids.empty() ? std::vector<int32_t>{} : parse_ids(decode_ids, "--decode-ids");
      Model m = load_for_run(model, device, check_weights, 0);
      check_ids_in_vocab(prompt, m.config(), "--ids");
      check_ids_in_vocab(steps, m.config(), "--decode-ids");
      SequenceState st = m.new_state();
      Trace tr;
      tr.prefix = "prefill.";
      m.prefill(prompt, st, chunk, &tr, true);
      int step = 0;
      for (int32_t id : steps) {
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
