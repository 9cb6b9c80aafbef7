// Generation loop: prefill the prompt (in chunks), then decode token by token until a stop id or max_new_tokens.
// Prints nothing itself; progress and tokens go to the callback.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "sala/model/model.h"
#include "sala/runtime/sampler.h"

namespace sala {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  int64_t prefill_chunk = 0;  // 0 = the whole prompt in one call
  SamplingParams sampling;
  std::vector<int64_t> stop_ids;  // empty = the config's eos ids
  bool ignore_eos = false;
  std::function<bool(int32_t)> on_token;  // return false to stop
  std::function<void(int64_t, int64_t)> on_prefill_progress;
  std::vector<int32_t> history;  // tokens before the prompt the repetition penalty also sees (earlier chat turns)  // (tokens done, total) after each prefill chunk
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without the stop token (the last one is not yet in the cache)
  int32_t stop_token = -1;      // the stop id that ended generation, or -1
  std::string stop_reason;      // "eos", "length", "callback", "context"
  double prefill_seconds = 0, decode_seconds = 0;
  int64_t prompt_tokens = 0;
};

GenerateResult generate(const Model& m, SequenceState& st, std::span<const int32_t> prompt, const GenerateOptions& o);

}  // namespace sala
