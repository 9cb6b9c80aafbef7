// What `generate` and `chat` share: sampling options, streamed text output with stop strings, the stop ids of a
// model + tokenizer, and the stats line.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "sala/model/model.h"
#include "sala/runtime/generate.h"
#include "sala/runtime/sampler.h"
#include "sala/text/tokenizer.h"

namespace sala::app {

struct GenArgs {
  std::string model, ids, stop, prompt, tokenizer, system;
  std::vector<std::string> stop_strings;
  int64_t max_new = 64, chunk = 0, context = 0;
  SamplingParams s;
  bool ignore_eos = false, quiet = false, check_weights = false;
  std::string device = "cpu";
};

void add_sampling(CLI::App* cmd, GenArgs& a);
bool has_tokenizer(const std::string& dir);
// The stats line (format_stats) on stderr; load_s < 0 leaves out the load time.
void print_stats(const GenerateResult& r, double load_s);

// Streams generated text: ids -> complete UTF-8 -> stop-string filter -> stdout (unless echo is off). push returns
// a stop verdict naming the stop string once one is hit (generation ends there).
struct TextStream {
  text::StreamDecoder dec;
  text::StopStrings stops;
  std::string text;
  bool stopped = false, echo = true;
  TextStream(const text::Tokenizer& t, std::vector<std::string> s) : dec(t), stops(std::move(s)) {}
  TokenVerdict push(int32_t id);
  void finish();
  void emit(const std::string& s);
};

// The config's eos ids plus the tokenizer's.
std::vector<int64_t> stop_ids_for(const Model& m, const text::Tokenizer* tok);

}  // namespace sala::app
