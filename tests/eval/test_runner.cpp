// The batched runner: many prompts through Model::step together give each prompt the greedy tokens it gets alone
// (prefill, then decode one token at a time, argmax), whatever the number of sequences in flight and rows per step;
// stop ids end a job; progress ends at all jobs done with no tokens left.
#include <gtest/gtest.h>

#include "sala/eval/runner.h"
#include "sala/model/presets.h"
#include "sala/runtime/sampler.h"
#include "test_util.h"

using namespace sala;
using namespace sala::eval;

namespace {

std::vector<int32_t> greedy_alone(const Model& m, const std::vector<int32_t>& prompt, int64_t n,
                                  const std::vector<int64_t>& stops) {
  SequenceState st = m.new_state();
  std::vector<float> lg = m.prefill(prompt, st);
  std::vector<int32_t> out;
  for (int64_t k = 0; k < n; ++k) {
    const int32_t t = argmax(lg);
    if (std::find(stops.begin(), stops.end(), int64_t(t)) != stops.end()) break;
    out.push_back(t);
    if (k + 1 < n) lg = m.decode(t, st);
  }
  return out;
}

}  // namespace

TEST(EvalRunner, BatchedGreedyEqualsEachPromptAlone) {
  const ModelConfig c = preset_config("sala-tiny");  // dense_len 128: the 150- and 300-token prompts are sparse
  const Model m(c, random_weights(c, 5));
  std::vector<Job> jobs;
  const int64_t lens[] = {150, 7, 300, 1, 64, 129, 33};
  for (size_t i = 0; i < std::size(lens); ++i)
    jobs.push_back({test::random_ids(lens[i], c.vocab_size, 10 + i), int64_t(3 + i % 4), {}, {}});
  // a stop id: the third token job 0 would generate
  const auto free0 = greedy_alone(m, jobs[0].ids, 6, {});
  jobs[0].max_new = 6;
  jobs[0].stop_ids = {free0[2]};
  std::vector<std::vector<int32_t>> want;
  for (const Job& j : jobs) want.push_back(greedy_alone(m, j.ids, j.max_new, j.stop_ids));
  EXPECT_EQ(want[0], std::vector<int32_t>(free0.begin(), free0.begin() + 2));
  for (auto [seqs, rows] : {std::pair<int64_t, int64_t>{1, 2048}, {3, 64}, {4, 4}, {7, 100}}) {
    RunOptions o;
    o.max_seqs = seqs;
    o.step_rows = rows;
    RunProgress last;
    o.progress = [&](const RunProgress& p) { last = p; };
    RunStats st;
    const auto got = run_jobs(m, jobs, o, &st);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(got[i], want[i]) << "job " << i << " with " << seqs << " sequences, " << rows << " rows per step";
    EXPECT_EQ(last.jobs_done, int64_t(jobs.size()));
    EXPECT_EQ(last.tokens_left, 0);
    int64_t prompt = 0;
    for (const Job& j : jobs) prompt += int64_t(j.ids.size());
    EXPECT_EQ(st.prefill_tokens, prompt);
  }
  RunOptions bad;
  bad.max_seqs = 4;
  bad.step_rows = 2;
  EXPECT_THROW(run_jobs(m, jobs, bad), Error);
}
