// The task generators: deterministic from the seed; the prompt within 1% of the target length (and never over it) for
// three tokenizers of different kinds; the needle once, at the asked depth; the task list and its errors.
#include <gtest/gtest.h>

#include <chrono>

#include "eval_test_util.h"
#include "sala/eval/fit.h"
#include "sala/eval/tasks.h"

using namespace sala;
using namespace sala::eval;
namespace eval_test = sala::eval_test;

namespace {

std::shared_ptr<const std::vector<std::string>> corpus() {
  // a fixed text (the repo's docs change, and the samples with them)
  static const auto c = load_corpus(std::string(SALA_SOURCE_DIR) + "/tests/text/corpus", "--haystack");
  return c;
}

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST(EvalTasks, SameSeedSameSamplesAndSamplesIndependentOfTheRun) {
  const auto& tk = eval_test::tokenizers();
  for (const TaskInfo& t : all_tasks()) {
    const TaskContext ctx{PromptFormat(*tk.trained, TemplateMode::kAuto), corpus(), 42};
    const SampleSpec spec{std::string(t.name), 700, t.depth ? 50.0 : -1, 3};
    const Sample a = make_sample(ctx, spec);
    int64_t hint = 200;  // a hint (as the previous sample leaves) changes the search, never the sample
    const Sample b = make_sample(ctx, spec, &hint);
    EXPECT_EQ(a.ids, b.ids) << t.name;
    EXPECT_EQ(a.references, b.references) << t.name;
    EXPECT_EQ(a.seed, b.seed) << t.name;
    // another index or seed: another sample
    const Sample c = make_sample(ctx, {spec.task, spec.length, spec.depth, 4});
    EXPECT_NE(a.user, c.user) << t.name;
    const TaskContext ctx2{ctx.format, corpus(), 43};
    EXPECT_NE(make_sample(ctx2, spec).user, a.user) << t.name;
  }
}

TEST(EvalTasks, LengthsWithinOnePercentForThreeTokenizers) {
  const auto& tk = eval_test::tokenizers();
  std::vector<std::pair<std::string, const text::Tokenizer*>> toks = {{"byte-level BPE", tk.byte_bpe.get()},
                                                                      {"sala-trained SentencePiece", tk.trained.get()}};
  if (tk.minicpm) toks.push_back({"MiniCPM", tk.minicpm.get()});
  else std::printf("[ skip ] MiniCPM tokenizer: ../shared/fixtures/minicpm-tokenizer absent\n");
  for (const auto& [name, tok] : toks) {
    for (TemplateMode mode : {TemplateMode::kAuto, TemplateMode::kRaw}) {
      const TaskContext ctx{PromptFormat(*tok, mode), corpus(), 7};
      for (const TaskInfo& t : all_tasks())
        for (int64_t L : {1500, 4100}) {
          const Sample s = make_sample(ctx, {std::string(t.name), L, t.depth ? 30.0 : -1, 0});
          const int64_t n = int64_t(s.ids.size());
          EXPECT_LE(n, L) << name << " " << t.name << " " << L;
          EXPECT_GE(double(n), 0.99 * double(L)) << name << " " << t.name << " " << L;
          // the ids are the prompt as the format renders it (nothing added on the side)
          EXPECT_EQ(s.ids, ctx.format.encode(s.user, s.answer_prefix)) << name << " " << t.name;
        }
    }
  }
}

TEST(EvalTasks, NeedleOnceAtTheAskedDepth) {
  const auto& tk = eval_test::tokenizers();
  const text::Tokenizer& tok = tk.minicpm ? *tk.minicpm : *tk.byte_bpe;
  const TaskContext ctx{PromptFormat(tok, TemplateMode::kRaw), corpus(), 11};
  for (const TaskInfo& t : all_tasks()) {
    if (!t.depth) continue;
    for (double d : {0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 100.0}) {
      const Sample s = make_sample(ctx, {std::string(t.name), 3000, d, 0});
      ASSERT_FALSE(s.needle.empty()) << t.name;
      EXPECT_EQ(count_of(s.user, s.needle), 1u) << t.name << " depth " << d;
      // each reference only in the needle (the pass key's needle says it twice)
      for (const std::string& r : s.references)
        EXPECT_EQ(count_of(s.user, r), count_of(s.needle, r)) << t.name << " " << r;
      // the haystack sits between the intro's line break and the question's; depth = the share of its tokens before
      // the needle (the needle's own tokens left out)
      const size_t b = s.user.find('\n') + 1, e = s.user.rfind('\n'), at = s.user.find(s.needle);
      ASSERT_TRUE(b <= at && at + s.needle.size() <= e) << t.name;
      std::string before = s.user.substr(b, at - b), after = s.user.substr(at + s.needle.size(), e - at - s.needle.size());
      // the other needles (multikey_1) are not haystack
      if (t.name == "niah_multikey_1")
        for (std::string* part : {&before, &after})
          for (size_t p = part->find("One of the special magic"); p != std::string::npos;
               p = part->find("One of the special magic"))
            part->erase(p, std::min(part->size(), part->find('.', p) + 2) - p);
      const double nb = double(tok.encode(before, false).size()), na = double(tok.encode(after, false).size());
      // a text haystack's depth is placed by its words' tokens one by one, which the text's own tokens follow closely;
      // in a haystack of distractor needles the needle goes between two of them (a UUID one is 2% of 3000 tokens)
      const bool coarse = t.text_haystack || t.name == "niah_multikey_2" || t.name == "niah_multikey_3";
      EXPECT_NEAR(100.0 * nb / (nb + na), d, coarse ? 3.0 : 1.5) << t.name << " depth " << d;
    }
  }
}

TEST(EvalTasks, MultiNeedleTasksHoldEveryReferenceOnce) {
  const auto& tk = eval_test::tokenizers();
  const TaskContext ctx{PromptFormat(*tk.trained, TemplateMode::kAuto), corpus(), 5};
  for (const char* name : {"niah_multikey_1", "niah_multivalue", "niah_multiquery", "vt"})
    for (int64_t i = 0; i < 3; ++i) {
      const Sample s = make_sample(ctx, {name, 2000, find_task(name)->depth ? 50.0 : -1, i});
      EXPECT_EQ(s.references.size(), std::string(name) == "vt" ? 5u : std::string(name) == "niah_multikey_1" ? 1u : 4u);
      for (const std::string& r : s.references)
        EXPECT_EQ(count_of(s.user, std::string(name) == "vt" ? "VAR " + r + " =" : r), 1u) << name << " " << r;
    }
  // cwe: the 10 answers are the most frequent entries, each more frequent than any other word
  const Sample c = make_sample(ctx, {"cwe", 4096, -1, 0});
  ASSERT_EQ(c.references.size(), 10u);
  const std::string list = c.user.substr(c.user.rfind("most often.\n"));
  for (const std::string& r : c.references) EXPECT_EQ(count_of(list, ". " + r + " "), 30u) << r;
  // fwe: the 3 answers in order of frequency, each more frequent than the next
  const Sample f = make_sample(ctx, {"fwe", 4096, -1, 0});
  ASSERT_EQ(f.references.size(), 3u);
  const auto freq = [&](const std::string& w) { return count_of(f.user, " " + w + " ") + count_of(f.user, " " + w + "\n"); };
  EXPECT_GT(freq(f.references[0]), freq(f.references[1]));
  EXPECT_GT(freq(f.references[1]), freq(f.references[2]));
}

TEST(EvalTasks, TaskNamesAliasesGroupsAndErrors) {
  EXPECT_EQ(parse_tasks("niah_single,passkey,niah_single_1"), (std::vector<std::string>{"niah_single_1", "passkey"}));
  EXPECT_EQ(parse_tasks("all").size(), all_tasks().size());
  EXPECT_EQ(parse_tasks("ruler").size(), all_tasks().size() - 1);
  EXPECT_EQ(parse_tasks("niah").size(), 8u);
  sala::test::expect_error([] { parse_tasks("niah_singel_1"); }, {"--tasks", "unknown task 'niah_singel_1'", "niah_single_1"});
  EXPECT_THROW(parse_tasks("bogus"), UsageError);
  EXPECT_THROW(parse_tasks(","), UsageError);
  EXPECT_THROW(parse_template_mode("jinja"), UsageError);
  // a text-haystack task without a corpus, and a target below the fixed text, are errors naming what to give
  const auto& tk = eval_test::tokenizers();
  const TaskContext ctx{PromptFormat(*tk.trained, TemplateMode::kAuto), nullptr, 1};
  sala::test::expect_error([&] { make_sample(ctx, {"niah_single_2", 1000, 50, 0}); }, {"niah_single_2", "--haystack"});
  sala::test::expect_error([&] { make_sample(ctx, {"passkey", 20, 50, 0}); }, {"passkey", "over the target length 20"});
}

TEST(EvalFit, LargestFittingSizeFromAnyHint) {
  // count(n) = 40 + 1.3 n with a plateau and a jump: the result always has count(n) <= target < count(n + 1)
  const auto count = [](int64_t n) { return 40 + int64_t(1.3 * double(n)) + (n > 500 ? 7 : 0) + (n / 97) % 2; };
  for (int64_t target : {41, 100, 650, 1000, 100000})
    for (int64_t hint : {0, 1, 300, 5000, 1000000}) {
      const Fit f = fit_length(count, target, 0, hint);
      ASSERT_GE(f.n, 0);
      EXPECT_LE(count(f.n), target);
      EXPECT_GT(count(f.n + 1), target) << target << " " << hint;
      EXPECT_EQ(f.tokens, count(f.n));
      EXPECT_LT(f.evaluations, 64);
    }
  EXPECT_EQ(fit_length(count, 39, 0).n, -1);  // the fixed part alone is over
}
