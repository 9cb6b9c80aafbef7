#include "sala/runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "sala/core/error.h"

namespace sala {

GenerateResult generate(const Model& m, SequenceState& st, std::span<const int32_t> prompt, const GenerateOptions& o) {
  using clock = std::chrono::steady_clock;
  if (prompt.empty()) fail("generate: the prompt is empty (give at least one token, e.g. BOS)");
  if (o.max_new_tokens < 0) fail("generate: max_new_tokens = {} must be >= 0", o.max_new_tokens);
  std::vector<int64_t> stops = o.stop_ids.empty() ? m.config().eos_token_ids : o.stop_ids;
  if (o.ignore_eos) stops.clear();
  Sampler sampler(o.sampling);
  GenerateResult r;
  r.prompt_tokens = int64_t(prompt.size());
  std::vector<int32_t> history = o.history;
  history.insert(history.end(), prompt.begin(), prompt.end());

  auto t0 = clock::now();
  std::vector<float> logits = m.prefill(prompt, st, o.prefill_chunk, nullptr, false, o.on_prefill_progress);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.stop_reason = "length";
  auto t1 = clock::now();
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    int32_t tok = sampler.sample(logits, history);
    if (std::find(stops.begin(), stops.end(), int64_t(tok)) != stops.end()) {
      r.stop_token = tok;
      r.stop_reason = "eos";
      break;
    }
    r.tokens.push_back(tok);
    history.push_back(tok);
    if (o.on_token && !o.on_token(tok)) {
      r.stop_reason = "callback";
      break;
    }
    if (i + 1 == o.max_new_tokens) break;
    if (st.pos >= st.max_len) {
      r.stop_reason = "context";
      break;
    }
    logits = m.decode(tok, st);
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

}  // namespace sala
