#include "gen_common.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>

namespace sala::app {

void add_sampling(CLI::App* cmd, GenArgs& a) {
  cmd->add_option("--temperature", a.s.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", a.s.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", a.s.top_p, "Nucleus mass (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", a.s.min_p, "Drop tokens below min-p x the top probability")->capture_default_str();
  cmd->add_option("--repetition-penalty", a.s.repetition_penalty, "HF-style penalty on seen tokens")->capture_default_str();
  cmd->add_option("--seed", a.s.seed, "Sampling seed")->capture_default_str();
}

bool has_tokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  return fs::exists(fs::path(dir) / "tokenizer.json") || fs::exists(fs::path(dir) / "tokenizer.model");
}

void print_stats(const GenerateResult& r, double load_s) {
  const double ptoks = double(r.prompt_tokens), dtoks = double(std::max<size_t>(r.tokens.size(), 1));
  fmt::print(stderr,
             "[load {:.2f}s | prefill {} tok in {:.3f}s ({:.1f} tok/s) | decode {} tok in {:.3f}s ({:.1f} tok/s) | "
             "stop: {}]\n",
             load_s, r.prompt_tokens, r.prefill_seconds, ptoks / std::max(r.prefill_seconds, 1e-9), r.tokens.size(),
             r.decode_seconds, dtoks / std::max(r.decode_seconds, 1e-9), r.stop_reason);
}

bool TextStream::push(int32_t id) {
  auto r = stops.push(dec.push(id));
  emit(r.text);
  stopped = r.stopped;
  return !r.stopped;
}

void TextStream::finish() {
  if (!stopped) {
    auto r = stops.push(dec.finish());
    emit(r.text);
    if (!r.stopped) emit(stops.flush());
  }
}

void TextStream::emit(const std::string& s) {
  text += s;
  if (!echo) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

std::vector<int64_t> stop_ids_for(const Model& m, const text::Tokenizer* tok) {
  std::vector<int64_t> ids = m.config().eos_token_ids;
  if (tok)
    for (int32_t e : tok->eos_ids())
      if (std::find(ids.begin(), ids.end(), int64_t(e)) == ids.end()) ids.push_back(e);
  return ids;
}


}  // namespace sala::app
