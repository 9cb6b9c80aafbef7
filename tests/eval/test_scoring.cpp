// RULER's scoring: an answerer that knows the references scores 100 on every task, one that answers at random (random
// tokens of the model's vocabulary, as many as the task's budget) scores near 0; the string-match rules themselves.
#include <gtest/gtest.h>

#include "eval_test_util.h"
#include "sala/eval/scoring.h"
#include "sala/eval/tasks.h"

using namespace sala;
using namespace sala::eval;
namespace eval_test = sala::eval_test;

TEST(EvalScoring, OracleScores100AndRandomNearZeroOnEveryTask) {
  const auto& tk = eval_test::tokenizers();
  const auto corpus = load_corpus(std::string(SALA_SOURCE_DIR) + "/README.md", "--haystack");
  std::vector<const text::Tokenizer*> toks = {tk.trained.get(), tk.byte_bpe.get()};
  if (tk.minicpm) toks.push_back(tk.minicpm.get());
  for (const text::Tokenizer* tok : toks) {
    const TaskContext ctx{PromptFormat(*tok, TemplateMode::kAuto), corpus, 3};
    Rng r(99);
    for (const TaskInfo& t : all_tasks()) {
      double oracle = 0, random = 0;
      const int n = 8;
      for (int i = 0; i < n; ++i) {
        const Sample s = make_sample(ctx, {std::string(t.name), 1200, t.depth ? 12.5 * i : -1, i});
        std::string answer = " ";
        for (const std::string& ref : s.references) answer += ref + ", ";
        oracle += score(t.metric, answer, s.references);
        std::vector<int32_t> ids;
        for (int64_t k = 0; k < s.max_new; ++k) ids.push_back(int32_t(r.below(uint64_t(tok->vocab_size()))));
        random += score(t.metric, tok->decode(ids), s.references);
      }
      EXPECT_EQ(oracle / n, 100.0) << t.name;
      EXPECT_LT(random / n, 5.0) << t.name;
    }
  }
}

TEST(EvalScoring, StringMatchRules) {
  const std::vector<std::string> refs = {"1234567", "Blue-Whale", "abc"};
  EXPECT_DOUBLE_EQ(string_match_all("the numbers are 1234567 and blue-whale", refs), 200.0 / 3);
  EXPECT_DOUBLE_EQ(string_match_all("ABC BLUE-WHALE 1234567", refs), 100.0);  // case-insensitive
  EXPECT_DOUBLE_EQ(string_match_all("123456", refs), 0.0);
  EXPECT_DOUBLE_EQ(string_match_part("only abc", refs), 100.0);
  EXPECT_DOUBLE_EQ(string_match_part("none", refs), 0.0);
  EXPECT_DOUBLE_EQ(string_match_all("anything", {}), 0.0);
  // control characters become line breaks, so they cannot join two halves of a reference
  EXPECT_EQ(postprocess_prediction("  \x01 12\x02" "34\n "), "12\n34");
  EXPECT_DOUBLE_EQ(string_match_all("12\x02" "34", std::vector<std::string>{"1234"}), 0.0);
  EXPECT_DOUBLE_EQ(score(Metric::kPart, "x abc", refs), 100.0);
}
