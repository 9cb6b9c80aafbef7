// Sampling: greedy, each filter against its closed form, seeded determinism, empirical frequencies vs softmax.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "sala/runtime/sampler.h"
#include "test_util.h"

using namespace sala;

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  Sampler s({});
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, RepetitionPenaltyHuggingFaceRule) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> l = {4.0f, 3.0f, -1.0f};
  std::vector<int32_t> hist = {0, 0, 2};
  // token 0: 4/2 = 2 < 3 -> token 1 wins; token 2: -1*2 = -2
  EXPECT_EQ(s.sample(l, hist), 1);
  EXPECT_FLOAT_EQ(l[0], 2.0f);
  EXPECT_FLOAT_EQ(l[2], -2.0f);
}

namespace {
std::map<int32_t, double> frequencies(SamplingParams p, const std::vector<float>& logits, int n) {
  Sampler s(p);
  std::map<int32_t, double> f;
  for (int i = 0; i < n; ++i) {
    auto l = logits;
    f[s.sample(l, {})] += 1.0 / n;
  }
  return f;
}
}  // namespace

TEST(Sampler, TemperatureOneMatchesSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  std::vector<float> l = {0.0f, 1.0f, 2.0f};
  auto f = frequencies(p, l, 40000);
  double z = 1 + std::exp(1.0) + std::exp(2.0);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(f[i], std::exp(double(i)) / z, 0.01) << i;
}

TEST(Sampler, TopKTopPMinPRestrictTheSupport) {
  std::vector<float> l = {2.0f, 1.0f, 0.5f, 0.0f, -3.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  auto f = frequencies(p, l, 4000);
  EXPECT_EQ(f.size(), 2u);
  EXPECT_NEAR(f[0], 1 / (1 + std::exp(-1.0)), 0.03);
  p.top_k = 0;
  p.top_p = 0.7f;  // p = .577 .212 .129 ...: mass .577 < .7, .789 >= .7, so {0, 1} (as HF TopPLogitsWarper)
  f = frequencies(p, l, 4000);
  EXPECT_EQ(f.size(), 2u);
  p.top_p = 1.0f;
  p.min_p = 0.5f;  // keep p >= 0.5 p(0): p(1)/p(0) = exp(-1) = 0.37, so only id 0
  f = frequencies(p, l, 1000);
  EXPECT_EQ(f.size(), 1u);
  p.min_p = 0.3f;  // exp(-1) = 0.37 >= 0.3, exp(-1.5) = 0.22 < 0.3
  f = frequencies(p, l, 4000);
  EXPECT_EQ(f.size(), 2u);
}

TEST(Sampler, SeededAndRepeatable) {
  SamplingParams p;
  p.temperature = 0.8f;
  p.seed = 7;
  std::vector<float> l = test::randn(100, 3);
  Sampler a(p), b(p);
  for (int i = 0; i < 50; ++i) {
    auto la = l, lb = l;
    EXPECT_EQ(a.sample(la, {}), b.sample(lb, {}));
  }
}

TEST(Sampler, RejectsBadParameters) {
  // Each bad value is a UsageError naming the CLI option (exit code 2 in the CLI).
  auto expect_usage = [](SamplingParams p, const std::string& option) {
    try {
      Sampler s(p);
      ADD_FAILURE() << "no error for " << option;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
    }
  };
  SamplingParams p;
  p.top_p = 0.0f;
  expect_usage(p, "--top-p");
  p = {};
  p.repetition_penalty = 0.0f;
  expect_usage(p, "--repetition-penalty");
  p = {};
  p.top_k = -1;
  expect_usage(p, "--top-k");
  p = {};
  p.temperature = -0.5f;  // was silently greedy
  expect_usage(p, "--temperature");
  p = {};
  p.temperature = std::nanf("");
  expect_usage(p, "--temperature");
  p = {};
  p.min_p = 1.5f;
  expect_usage(p, "--min-p");
}

TEST(Sampler, TopKKeepsEveryTokenTiedWithTheKth) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 1;
  std::vector<float> l = {1.0f, 0.0f, 1.0f, 1.0f};
  auto f = frequencies(p, l, 3000);
  EXPECT_EQ(f.size(), 3u);  // ids 0, 2, 3 (as HF's TopKLogitsWarper: removes only scores below the k-th)
  EXPECT_EQ(f.count(1), 0u);
}

TEST(Sampler, TinyTemperatureIsArgmaxNotNaN) {
  SamplingParams p;
  p.temperature = 1e-30f;
  std::vector<float> l = {0.5f, 2.0f, -1.0f, 1.9f};
  auto f = frequencies(p, l, 200);
  EXPECT_EQ(f.size(), 1u);
  EXPECT_EQ(f.begin()->first, 1);
}

TEST(Sampler, TopPOverALargeVocabularyKeepsExactlyTheNucleus) {
  // 300 equally likely tokens (ties: lower ids first) in a 5000-token vocabulary: the nucleus for top_p 0.9 is the
  // first 270 of them, past the sampler's first 64- and 256-candidate sorts.
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.seed = 5;
  Sampler s(p);
  std::vector<float> base(5000, -40.0f);
  for (int i = 0; i < 300; ++i) base[size_t(i * 7 % 5000)] = 0.0f;  // spread over the vocabulary
  std::set<int32_t> want;
  for (int i = 0; i < 300; ++i) want.insert(int32_t(i * 7 % 5000));
  while (want.size() > 270) want.erase(std::prev(want.end()));  // the highest ids of the tie fall outside
  std::set<int32_t> got;
  for (int i = 0; i < 20000; ++i) {
    auto l = base;
    got.insert(s.sample(l, {}));
  }
  EXPECT_EQ(got, want);
}
