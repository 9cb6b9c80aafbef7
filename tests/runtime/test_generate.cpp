// The generation loop: non-finite logits fail with the position instead of producing tokens; stop reasons and their
// words; the cache accounting (the last token is sampled, not fed back); the stats line has no absurd rates.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <functional>
#include <limits>

#include "sala/model/model.h"
#include "sala/model/presets.h"
#include "sala/model/weights.h"
#include "sala/runtime/generate.h"
#include "test_util.h"

namespace sala {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

Model tiny_model(const std::function<void(Weights&, const ModelConfig&)>& edit = {}) {
  ModelConfig c = preset_config("sala-tiny");
  Weights w = random_weights(c, 7);
  if (edit) edit(w, c);
  return Model(c, std::move(w));
}

const std::vector<int32_t> kPrompt = {1, 5, 9};

GenerateOptions greedy(int64_t n) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.ignore_eos = true;
  return o;
}

TEST(Generate, NormalModelRunsAndAccountsForTheCache) {
  Model m = tiny_model();
  SequenceState st = m.new_state();
  GenerateResult r = generate(m, st, kPrompt, greedy(5));
  ASSERT_EQ(r.tokens.size(), 5u);
  EXPECT_EQ(r.stop_reason, StopReason::kLength);
  EXPECT_EQ(stop_reason_words(r), "reached -n 5 tokens");
  EXPECT_EQ(r.decode_steps, 4);             // the 5th token is sampled, never fed back
  EXPECT_EQ(st.pos, 3 + 4);
  EXPECT_EQ(r.prompt_tokens, 3);
  for (int32_t t : r.tokens) EXPECT_TRUE(t >= 0 && t < m.config().vocab_size) << t;
}

TEST(Generate, NaNInTheFinalNormFailsAtThePromptsLastToken) {
  Model m = tiny_model([](Weights& w, const ModelConfig&) { w.final_norm[3] = kNaN; });
  SequenceState st = m.new_state();
  test::expect_error([&] { generate(m, st, kPrompt, greedy(5)); },
                     {"non-finite logits (NaN)", "at position 2 (the prompt's last token)", "sala info --check-weights"});
  // also when no token is asked for: the prompt's logits are checked either way
  SequenceState st2 = m.new_state();
  test::expect_error([&] { generate(m, st2, kPrompt, greedy(0)); }, {"non-finite logits (NaN) at position 2"});
}

TEST(Generate, InfInOneLmHeadRowNamesTheVocabId) {
  Model m = tiny_model([](Weights& w, const ModelConfig& c) { w.lm_head[size_t(77 * c.hidden_size)] = kInf; });
  SequenceState st = m.new_state();
  // logit 77 = Inf * x_0 + finite = +-Inf; every other logit is finite
  test::expect_error([&] { generate(m, st, kPrompt, greedy(5)); },
                     {"non-finite logits (Inf) at position 2", "1 of 512 vocab entries, the first at id 77"});
}

TEST(Generate, NaNAtAGeneratedTokenNamesItsPosition) {
  // The clean model's greedy tokens; poison the embedding row of generated token k (k >= 2, its first occurrence):
  // everything before is unchanged, and decoding token k gives NaN logits at position (prompt - 1) + k.
  std::vector<int32_t> clean;
  {
    Model m = tiny_model();
    SequenceState st = m.new_state();
    clean = generate(m, st, kPrompt, greedy(12)).tokens;
  }
  int64_t k = 0;
  for (size_t i = 1; i < clean.size() && !k; ++i) {
    std::vector<int32_t> seen(kPrompt);
    seen.insert(seen.end(), clean.begin(), clean.begin() + std::ptrdiff_t(i));
    if (std::find(seen.begin(), seen.end(), clean[i]) == seen.end()) k = int64_t(i) + 1;
  }
  ASSERT_GE(k, 2) << "no new token among the first 12 greedy tokens";
  const int32_t bad = clean[size_t(k - 1)];
  Model m = tiny_model([bad](Weights& w, const ModelConfig& c) {
    std::fill_n(w.embed.begin() + std::ptrdiff_t(int64_t(bad) * c.hidden_size), c.hidden_size, kNaN);
  });
  SequenceState st = m.new_state();
  test::expect_error([&] { generate(m, st, kPrompt, greedy(12)); },
                     {fmt::format("non-finite logits (NaN) at position {} (generated token {})", 2 + k, k)});
}

TEST(Generate, StopReasonsInWords) {
  Model m = tiny_model();
  std::vector<int32_t> clean;
  {
    SequenceState st = m.new_state();
    clean = generate(m, st, kPrompt, greedy(6)).tokens;
  }
  // an eos id: the first greedy token not seen before position 2 of the output
  size_t j = 1;
  while (j < clean.size() && std::find(clean.begin(), clean.begin() + std::ptrdiff_t(j), clean[j]) !=
                                 clean.begin() + std::ptrdiff_t(j))
    ++j;
  ASSERT_LT(j, clean.size());
  {
    SequenceState st = m.new_state();
    GenerateOptions o;
    o.max_new_tokens = 6;
    o.stop_ids = {clean[j]};
    GenerateResult r = generate(m, st, kPrompt, o);
    EXPECT_EQ(r.stop_reason, StopReason::kEos);
    EXPECT_EQ(r.stop_token, clean[j]);
    EXPECT_EQ(r.tokens, std::vector<int32_t>(clean.begin(), clean.begin() + std::ptrdiff_t(j)));
    EXPECT_EQ(stop_reason_words(r), fmt::format("end-of-sequence token {}", clean[j]));
    EXPECT_EQ(r.decode_steps, int64_t(j));  // every kept token was fed back; the stop id was not
    EXPECT_EQ(st.pos, 3 + int64_t(j));
  }
  {
    SequenceState st = m.new_state();
    GenerateOptions o = greedy(6);
    int calls = 0;
    o.on_token = [&](int32_t) { return ++calls == 2 ? TokenVerdict::stop_at("<|im_end|>") : TokenVerdict(true); };
    GenerateResult r = generate(m, st, kPrompt, o);
    EXPECT_EQ(r.stop_reason, StopReason::kStopString);
    EXPECT_EQ(r.tokens.size(), 2u);
    EXPECT_EQ(stop_reason_words(r), "stop string \"<|im_end|>\"");
    EXPECT_STREQ(stop_reason_name(r.stop_reason), "stop_string");
  }
  {
    SequenceState st = m.new_state();
    GenerateOptions o = greedy(6);
    o.on_token = [](int32_t) { return false; };
    GenerateResult r = generate(m, st, kPrompt, o);
    EXPECT_EQ(r.stop_reason, StopReason::kCallback);
    EXPECT_EQ(r.tokens.size(), 1u);
    EXPECT_EQ(r.decode_steps, 0);
  }
  {
    SequenceState st = m.new_state(5);  // prompt 3 + 2 fed-back tokens fill it
    GenerateResult r = generate(m, st, kPrompt, greedy(10));
    EXPECT_EQ(r.stop_reason, StopReason::kContext);
    EXPECT_EQ(r.tokens.size(), 3u);
    EXPECT_EQ(st.pos, 5);
    EXPECT_EQ(stop_reason_words(r), "context limit of 5 tokens");
  }
}

TEST(Generate, StatsLineHasNoAbsurdRates) {
  GenerateResult r;
  r.prompt_tokens = 3;
  r.stop_reason = StopReason::kEos;
  r.stop_token = 2;
  // nothing generated and a prefill too short to time: no rate at all
  EXPECT_EQ(format_stats(r, 0.5), "[load 0.50s | prefill 3 tok in 0.000s | decode 0 tok | stop: end-of-sequence token 2]");
  // one token: sampled from the prefill's logits, no decode step to time
  r.tokens = {7};
  r.decode_seconds = 2e-6;
  r.stop_reason = StopReason::kLength;
  r.max_new_tokens = 1;
  EXPECT_EQ(format_stats(r, -1), "[prefill 3 tok in 0.000s | decode 1 tok in 0.000s | stop: reached -n 1 tokens]");
  EXPECT_LT(decode_rate(r), 0);
  // rates count the decode steps: 5 tokens, 4 steps in 2 s
  r.prompt_tokens = 10;
  r.prefill_seconds = 0.5;
  r.tokens = {1, 2, 3, 4, 5};
  r.decode_steps = 4;
  r.decode_seconds = 2.0;
  r.max_new_tokens = 5;
  EXPECT_EQ(format_stats(r, -1),
            "[prefill 10 tok in 0.500s (20.0 tok/s) | decode 5 tok in 2.000s (2.0 tok/s) | stop: reached -n 5 tokens]");
}

}  // namespace
}  // namespace sala
