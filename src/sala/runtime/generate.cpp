#include "sala/runtime/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fmt/format.h>

#include "sala/core/error.h"

namespace sala {

namespace {

// Sampling a row with a NaN or an infinity would give an arbitrary token (argmax skips NaN, softmax turns everything
// into NaN), so it is an error. `pos` is the absolute position of the token whose logits these are; generated = 0 for
// the prompt's last token, else the 1-based index of the generated token. detail: what is known of the row (counted on
// the host; the GPU's sampler only says that the row is not finite).
[[noreturn]] void fail_nonfinite(const std::string& kind, const std::string& detail, int64_t pos, int64_t generated) {
  const std::string where = generated == 0 ? "the prompt's last token" : fmt::format("generated token {}", generated);
  fail("non-finite logits ({}) at position {} ({}){}; the model's weights or activations overflowed; check the "
       "checkpoint with `sala info --check-weights`",
       kind, pos, where, detail);
}

// One pass over the vocab row on the host.
void check_finite(std::span<const float> logits, int64_t pos, int64_t generated) {
  int64_t nans = 0, infs = 0, first = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float x = logits[i];
    if (std::isfinite(x)) continue;
    if (std::isnan(x)) ++nans;
    else ++infs;
    if (first < 0) first = int64_t(i);
  }
  if (first < 0) return;
  const std::string kind = nans && infs ? "NaN and Inf" : nans ? "NaN" : "Inf";
  fail_nonfinite(kind, fmt::format(": {} of {} vocab entries, the first at id {}", nans + infs, logits.size(), first),
                 pos, generated);
}

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kEos: return "eos";
    case StopReason::kLength: return "length";
    case StopReason::kStopString: return "stop_string";
    case StopReason::kCallback: return "callback";
    case StopReason::kContext: return "context";
  }
  return "?";
}

std::string stop_reason_words(const GenerateResult& r) {
  switch (r.stop_reason) {
    case StopReason::kEos: return fmt::format("end-of-sequence token {}", r.stop_token);
    case StopReason::kLength: return fmt::format("reached -n {} tokens", r.max_new_tokens);
    case StopReason::kStopString: return fmt::format("stop string \"{}\"", r.stop_string);
    case StopReason::kCallback: return "stopped by the caller";
    case StopReason::kContext: return fmt::format("context limit of {} tokens", r.context_limit);
  }
  return "?";
}

double prefill_rate(const GenerateResult& r) {
  return r.prompt_tokens > 0 && r.prefill_seconds > 0 ? double(r.prompt_tokens) / r.prefill_seconds : -1.0;
}

double decode_rate(const GenerateResult& r) {
  return r.decode_steps > 0 && r.decode_seconds > 0 ? double(r.decode_steps) / r.decode_seconds : -1.0;
}

std::string format_stats(const GenerateResult& r, double load_s) {
  auto rate = [](double x) { return x < 0 ? std::string() : fmt::format(" ({:.1f} tok/s)", x); };
  std::string s = "[";
  if (load_s >= 0) s += fmt::format("load {:.2f}s | ", load_s);
  s += fmt::format("prefill {} tok in {:.3f}s{} | ", r.prompt_tokens, r.prefill_seconds, rate(prefill_rate(r)));
  if (r.tokens.empty()) s += "decode 0 tok";
  else s += fmt::format("decode {} tok in {:.3f}s{}", r.tokens.size(), r.decode_seconds, rate(decode_rate(r)));
  s += fmt::format(" | stop: {}]", stop_reason_words(r));
  return s;
}

GenerateResult generate(const Model& m, SequenceState& st, std::span<const int32_t> prompt, const GenerateOptions& o) {
  using clock = std::chrono::steady_clock;
  if (prompt.empty()) fail("generate: the prompt is empty (give at least one token, e.g. BOS)");
  if (o.max_new_tokens < 0) fail("generate: max_new_tokens = {} must be >= 0", o.max_new_tokens);
  std::vector<int64_t> stops = o.stop_ids.empty() ? m.config().eos_token_ids : o.stop_ids;
  if (o.ignore_eos) stops.clear();
  Sampler sampler(o.sampling);
  GenerateResult r;
  r.prompt_tokens = int64_t(prompt.size());
  r.max_new_tokens = o.max_new_tokens;
  r.context_limit = st.max_len;
  // Room for every token this call can produce, reserved before the model runs: between model calls the loop then
  // allocates nothing, so an out-of-memory error after the prefill can only come from a (state-poisoning) model call.
  const int64_t room = std::max<int64_t>(0, st.max_len - st.pos - int64_t(prompt.size())) + 1;
  const size_t most = size_t(std::min(o.max_new_tokens, room));
  r.tokens.reserve(most);
  std::vector<int32_t> history;
  history.reserve(o.history.size() + prompt.size() + most);
  history.insert(history.end(), o.history.begin(), o.history.end());
  history.insert(history.end(), prompt.begin(), prompt.end());

  // On a GPU the token is drawn where the logits are (Backend::sample: the same rules, a counter-based stream);
  // on the CPU by the host Sampler.
  const bool on_device = o.sample_on_device && m.samples_on_device();
  int32_t drawn = -1;
  Model::Draw draw{&o.sampling, 0, {}, &drawn};
  const bool penalty = o.sampling.repetition_penalty != 1.0f;
  if (penalty) draw.history = history;

  auto t0 = clock::now();
  std::vector<float> logits = m.prefill(prompt, st, o.prefill_chunk, nullptr, false, o.on_prefill_progress,
                                        on_device ? &draw : nullptr);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.stop_reason = StopReason::kLength;
  auto t1 = clock::now();
  // Checked even when max_new_tokens is 0: a prompt whose logits are not finite is reported either way.
  if (on_device && drawn < 0) fail_nonfinite("NaN or +Inf", "", st.pos - 1, 0);
  if (!on_device) check_finite(logits, st.pos - 1, 0);
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const int32_t tok = on_device ? drawn : sampler.sample(logits, history);
    if (std::find(stops.begin(), stops.end(), int64_t(tok)) != stops.end()) {
      r.stop_token = tok;
      r.stop_reason = StopReason::kEos;
      break;
    }
    r.tokens.push_back(tok);
    history.push_back(tok);
    if (o.on_token) {
      TokenVerdict v = o.on_token(tok);
      if (!v.keep_going) {
        r.stop_reason = v.stop_string.empty() ? StopReason::kCallback : StopReason::kStopString;
        r.stop_string = std::move(v.stop_string);
        break;
      }
    }
    if (i + 1 == o.max_new_tokens) break;
    if (st.pos >= st.max_len) {
      r.stop_reason = StopReason::kContext;
      break;
    }
    if (on_device) {
      draw.step = uint64_t(i + 1);
      if (penalty) draw.history = history;  // reserved above: the span stays valid
      drawn = m.decode_draw(tok, st, draw);
      ++r.decode_steps;
      if (drawn < 0) fail_nonfinite("NaN or +Inf", "", st.pos - 1, i + 1);
    } else {
      logits = m.decode(tok, st);
      ++r.decode_steps;
      check_finite(logits, st.pos - 1, i + 1);
    }
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

}  // namespace sala
