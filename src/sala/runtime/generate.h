// Generation loop: prefill the prompt (in chunks), then decode token by token until a stop id, max_new_tokens, a stop
// requested by the callback, or the context limit. Prints nothing itself; progress and tokens go to the callbacks.
// Invariants: the logits of every step (the prompt's last row and each decode step) are checked for NaN/Inf before
// sampling, so a broken model fails with an error naming the position instead of producing tokens; the last token of
// `tokens` was sampled but never fed back, so after a call st.pos == start + prompt + max(tokens - 1, 0).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "sala/model/model.h"
#include "sala/runtime/sampler.h"

namespace sala {

// Why generation ended.
enum class StopReason {
  kEos,         // sampled a stop id (not appended to tokens)
  kLength,      // max_new_tokens generated
  kStopString,  // the callback found a stop string in the text
  kCallback,    // the callback asked to stop for another reason
  kContext,     // the sequence reached the state's context limit
};

// What on_token answers for each new token: go on, or stop (and why). Converts from bool (true = go on).
struct TokenVerdict {
  bool keep_going = true;
  std::string stop_string;  // set when stopping because this string appeared in the generated text
  TokenVerdict(bool go = true) : keep_going(go) {}  // NOLINT: implicit, so `return true;` callbacks keep working
  static TokenVerdict stop_at(std::string s) {
    TokenVerdict v(false);
    v.stop_string = std::move(s);
    return v;
  }
};

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  int64_t prefill_chunk = 0;  // 0 = the whole prompt in one call
  SamplingParams sampling;
  // Draw on the device where the model's backend samples (CUDA: no logits cross to the host; greedy gives the host's
  // tokens, a random draw uses the backend's counter-based stream); false: always the host Sampler.
  bool sample_on_device = true;
  std::vector<int64_t> stop_ids;  // empty = the config's eos ids
  bool ignore_eos = false;
  std::function<TokenVerdict(int32_t)> on_token;                // called after each kept token
  std::function<void(int64_t, int64_t)> on_prefill_progress;    // (tokens done, total) after each prefill chunk
  std::vector<int32_t> history;  // tokens before the prompt that the repetition penalty also sees (earlier chat turns)
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without the stop token (the last one is not yet in the cache)
  int32_t stop_token = -1;      // the stop id that ended generation (kEos), or -1
  StopReason stop_reason = StopReason::kLength;
  std::string stop_string;      // kStopString: the string that matched
  int64_t max_new_tokens = 0;   // the limit this call ran with (for the words of kLength)
  int64_t context_limit = 0;    // the state's max_len (for the words of kContext)
  int64_t prompt_tokens = 0;
  int64_t decode_steps = 0;     // Model::decode calls (tokens fed back): tokens - 1 unless stopped by a stop id
  double prefill_seconds = 0;   // the prompt's forward pass
  double decode_seconds = 0;    // sampling every token + the decode steps
};

// Short, stable name: "eos", "length", "stop_string", "callback", "context".
const char* stop_reason_name(StopReason r);
// In words: "end-of-sequence token 73440", "reached -n 64 tokens", "stop string \"<|im_end|>\"",
// "context limit of 4096 tokens", "stopped by the caller".
std::string stop_reason_words(const GenerateResult& r);
// Tokens per second, or a negative value when there is nothing meaningful to divide (no tokens or no measured time).
double prefill_rate(const GenerateResult& r);
double decode_rate(const GenerateResult& r);  // decode_steps / decode_seconds
// The stats line the CLI prints: "[load 0.10s | prefill 12 tok in 0.004s (3000.0 tok/s) | decode 8 tok in 0.010s
// (700.0 tok/s) | stop: reached -n 8 tokens]"; a rate is left out when there is nothing to measure (0 tokens, 0 s).
// load_s < 0 leaves out the load part.
std::string format_stats(const GenerateResult& r, double load_s);

GenerateResult generate(const Model& m, SequenceState& st, std::span<const int32_t> prompt, const GenerateOptions& o);

}  // namespace sala
