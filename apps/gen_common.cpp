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

void print_stats(const GenerateResult& r, double load_s) { fmt::print(stderr, "{}\n", format_stats(r, load_s)); }

TokenVerdict TextStream::push(int32_t id) {
  auto r = stops.push(dec.push(id));
  emit(r.text);
  stopped = r.stopped;
  return r.stopped ? TokenVerdict::stop_at(r.stop) : TokenVerdict(true);
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
