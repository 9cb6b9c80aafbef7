// RoPE: NeoX halves against the float64 reference; LongRoPE factors switch to the long ones past the original context.
#include <gtest/gtest.h>

#include "ref/ref64.h"
#include "sala/backend/cpu/rope.h"
#include "sala/model/rope.h"
#include "test_util.h"

using namespace sala;

TEST(Rope, PlainEqualsFloat64Reference) {
  const int64_t T = 40, H = 3, D = 16;
  auto x = test::randn(size_t(T * H * D), 1);
  RopeConfig rc;
  const RopeTables r = make_rope_tables(rc, D, 4096);
  auto got = x;
  cpu::rope_apply(got.data(), T, H, r, 1000, 0);
  std::vector<int> pos(static_cast<size_t>(T));
  for (int t = 0; t < int(T); ++t) pos[size_t(t)] = 1000 + t;
  auto want = ref::rope_neox(test::to_f64(x), int(T), int(H), int(D), pos, 10000.0);
  // angles are fp32 products, as the reference computes them: error about pos * 2^-24 rad at position ~1000
  EXPECT_LT(test::rel_max_err(got, want), 1e-4);
}

TEST(Rope, LongRopeUsesLongFactorsPastTheOriginalContext) {
  const int64_t D = 8, half = D / 2;
  RopeConfig rc;
  rc.short_factor = {1, 1, 1, 1};
  rc.long_factor = {1, 2, 4, 8};
  rc.original_max_position_embeddings = 64;
  const RopeTables r = make_rope_tables(rc, D, 64);  // max_pos == original: short factors, scale 1, until a sequence exceeds 64
  std::vector<float> x(size_t(D), 0.0f);
  for (int64_t i = 0; i < half; ++i) x[size_t(i)] = 1.0f;  // (1, 0) pairs: output = (cos a, sin a)
  auto apply = [&](int64_t seq_len) {
    auto y = x;
    cpu::rope_apply(y.data(), 1, 1, r, 50, seq_len);
    return y;
  };
  auto s = apply(64), l = apply(65);
  for (int64_t i = 0; i < half; ++i) {
    const double inv = std::pow(10000.0, -2.0 * double(i) / double(D));
    EXPECT_NEAR(s[size_t(i)], std::cos(50 * inv), 1e-5) << i;
    EXPECT_NEAR(l[size_t(i)], std::cos(50 * inv / rc.long_factor[size_t(i)]), 1e-5) << i;
    EXPECT_NEAR(l[size_t(i + half)], std::sin(50 * inv / rc.long_factor[size_t(i)]), 1e-5) << i;
  }
  const RopeTables big = make_rope_tables(rc, D, 256);  // max_pos 4x the original: long factors always, cos/sin scaled by sqrt(1 + ln 4 / ln 64)
  auto y = x;
  cpu::rope_apply(y.data(), 1, 1, big, 50, 10);
  const double m = std::sqrt(1 + std::log(4.0) / std::log(64.0));
  EXPECT_NEAR(y[1], m * std::cos(50 * std::pow(10000.0, -2.0 / 8) / 2), 1e-5);
}
