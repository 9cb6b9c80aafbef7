// Perplexity against an independent computation: the model's logits of every row (Model::prefill, one sequence per
// window) turned into log-probabilities in double here; one window over the whole text equals the sliding windows'
// rule when the window covers the text; the windows score every token after the first exactly once.
#include <gtest/gtest.h>

#include <cmath>

#include "sala/eval/perplexity.h"
#include "sala/model/presets.h"
#include "test_util.h"

using namespace sala;
using namespace sala::eval;

namespace {

// -log p(ids[t] | ids[b..t)) summed over t in [from, e), from a prefill of ids[b, e) alone.
double nll_window(const Model& m, const std::vector<int32_t>& ids, int64_t b, int64_t e, int64_t from) {
  SequenceState st = m.new_state();
  const std::vector<int32_t> w(ids.begin() + b, ids.begin() + e);
  const std::vector<float> lg = m.prefill(w, st, 0, nullptr, true);
  const int64_t V = m.config().vocab_size;
  double s = 0;
  for (int64_t t = from; t < e; ++t) {
    const float* x = lg.data() + (t - 1 - b) * V;
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(double(x[v]));
    s += std::log(z) - double(x[ids[size_t(t)]]);
  }
  return s;
}

}  // namespace

TEST(EvalPerplexity, WindowsScoreEveryTokenOnce) {
  for (int64_t n : {2, 5, 100, 1000})
    for (auto [w, s] : {std::pair<int64_t, int64_t>{0, 0}, {10, 10}, {10, 3}, {64, 32}, {7, 1}, {2000, 5}}) {
      std::vector<int> scored(size_t(n), 0);
      for (const PplWindow& x : ppl_windows(n, w, s)) {
        EXPECT_GT(x.score_from, x.begin);
        EXPECT_LE(x.end - x.begin, w > 0 ? w : n);
        for (int64_t t = x.score_from; t < x.end; ++t) ++scored[size_t(t)];
      }
      EXPECT_EQ(scored[0], 0);
      for (int64_t t = 1; t < n; ++t) {
        // disjoint windows leave each window's first token without context (as Hugging Face's recipe does)
        const bool window_start = w > 0 && w < n && s == w && t % w == 0;
        EXPECT_EQ(scored[size_t(t)], window_start ? 0 : 1) << n << " " << w << " " << s << " token " << t;
      }
    }
}

TEST(EvalPerplexity, MatchesAnIndependentLogSoftmaxInDouble) {
  const ModelConfig c = preset_config("sala-tiny");
  const Model m(c, random_weights(c, 8));
  const std::vector<PplDoc> docs = {{"a", test::random_ids(200, c.vocab_size, 1), 800},
                                    {"b", test::random_ids(57, c.vocab_size, 2), 100},
                                    {"c", {5}, 1}};
  RunOptions o;
  o.max_seqs = 3;
  o.step_rows = 96;  // windows cut into several chunks, several windows per step
  // one window over each text
  const auto one = perplexity(m, docs, 0, 0, o);
  ASSERT_EQ(one.size(), 3u);
  const double want_a = nll_window(m, docs[0].ids, 0, 200, 1), want_b = nll_window(m, docs[1].ids, 0, 57, 1);
  EXPECT_NEAR(one[0].nll, want_a, 1e-9 * want_a);
  EXPECT_NEAR(one[1].nll, want_b, 1e-9 * want_b);
  EXPECT_EQ(one[0].scored, 199);
  EXPECT_EQ(one[2].scored, 0);  // one token: nothing to predict
  EXPECT_NEAR(one[0].ppl(), std::exp(want_a / 199), 1e-9 * one[0].ppl());
  EXPECT_NEAR(one[0].bits_per_byte(), want_a / std::log(2.0) / 800, 1e-9);
  const PplResult tot = ppl_total(one);
  EXPECT_EQ(tot.scored, 199 + 56);
  EXPECT_NEAR(tot.mean_nll(), (want_a + want_b) / (199 + 56), 1e-9);
  // a window that covers the text is the single window, whatever the stride
  const auto cover = perplexity(m, docs, 300, 100, o);
  EXPECT_NEAR(cover[0].nll, one[0].nll, 1e-9 * one[0].nll);
  EXPECT_EQ(cover[0].windows, 1);
  // sliding windows of 64 every 24 tokens: each scored token sees the window it is scored in, nothing before
  const auto slide = perplexity(m, docs, 64, 24, o);
  double want = 0;
  int64_t prev_end = 0, scored = 0;
  for (int64_t b = 0;; b += 24) {
    const int64_t e = std::min<int64_t>(b + 64, 200), from = std::max(prev_end, b + 1);
    want += nll_window(m, docs[0].ids, b, e, from);
    scored += e - from;
    prev_end = e;
    if (e == 200) break;
  }
  EXPECT_EQ(slide[0].scored, 199);
  EXPECT_EQ(scored, 199);
  EXPECT_NEAR(slide[0].nll, want, 1e-9 * want);
  EXPECT_GT(std::abs(slide[0].nll - one[0].nll), 1e-6);  // less context: another number
}
