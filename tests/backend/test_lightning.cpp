// Lightning attention: chunked (prefill) == recurrent (decode) in fp32, both == the float64 reference.
#include <gtest/gtest.h>
#include <unistd.h>

#include "ref/ref64.h"
#include "sala/backend/cpu/lightning.h"
#include "sala/model/model.h"
#include "test_util.h"

using namespace sala;

namespace {
struct Case {
  int64_t T, H, D;
};
std::vector<float> log_decays(int64_t H) {
  std::vector<float> g;
  for (double s : alibi_slopes(H)) g.push_back(float(-s));
  return g;
}
}  // namespace

TEST(Lightning, AlibiSlopesMatchReference) {
  for (int H : {1, 8, 12, 16, 32, 40}) {
    auto a = alibi_slopes(H);
    auto b = ref::alibi_slopes(H);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-15) << "H=" << H << " h=" << i;
  }
  EXPECT_NEAR(alibi_slopes(32)[31], std::pow(2.0, -8.0), 1e-15);  // §3.2 table: head 31 slope 2^-8
}

TEST(Lightning, ChunkedEqualsRecurrentEveryHeadEveryChunk) {
  const int64_t T = 203, H = 32, D = 16;  // 32 heads: every decay of the released model
  const float scale = 1.0f / std::sqrt(float(D));
  auto q = test::randn(size_t(T * H * D), 1), k = test::randn(size_t(T * H * D), 2), v = test::randn(size_t(T * H * D), 3);
  auto g = log_decays(H);
  std::vector<float> s0 = test::randn(size_t(H * D * D), 4, 0.1f);

  std::vector<float> o_rec(q.size()), st_rec = s0;
  cpu::lightning_recurrent(o_rec.data(), q.data(), k.data(), v.data(), st_rec.data(), g.data(), scale, T, H, D);
  for (int64_t chunk : {1, 7, 16, 64, 100, 256}) {
    std::vector<float> o(q.size()), st = s0;
    cpu::lightning_chunked(o.data(), q.data(), k.data(), v.data(), st.data(), g.data(), scale, T, H, D, chunk);
    EXPECT_LT(test::rel_max_err(o, o_rec), 1e-5) << "chunk " << chunk;
    EXPECT_LT(test::rel_max_err(st, st_rec), 1e-5) << "chunk " << chunk;
    // per head, so the fastest-decaying heads are not hidden by the slow ones
    for (int64_t h = 0; h < H; ++h) {
      double num = 0, den = 1e-30;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t d = 0; d < D; ++d) {
          size_t i = size_t((t * H + h) * D + d);
          num = std::max(num, double(std::abs(o[i] - o_rec[i])));
          den = std::max(den, double(std::abs(o_rec[i])));
        }
      EXPECT_LT(num / den, 1e-5) << "chunk " << chunk << " head " << h;
    }
  }
}

TEST(Lightning, StateCarriedAcrossCallsEqualsOneCall) {
  const int64_t T = 150, H = 8, D = 32;
  const float scale = 1.0f / std::sqrt(float(D));
  auto q = test::randn(size_t(T * H * D), 11), k = test::randn(size_t(T * H * D), 12), v = test::randn(size_t(T * H * D), 13);
  auto g = log_decays(H);
  std::vector<float> o_one(q.size()), st_one(size_t(H * D * D), 0.0f);
  cpu::lightning_chunked(o_one.data(), q.data(), k.data(), v.data(), st_one.data(), g.data(), scale, T, H, D, 64);
  // split: 37 tokens chunked(16), 1 token recurrent, the rest chunked(64)
  std::vector<float> o(q.size()), st(size_t(H * D * D), 0.0f);
  const int64_t row = H * D;
  cpu::lightning_chunked(o.data(), q.data(), k.data(), v.data(), st.data(), g.data(), scale, 37, H, D, 16);
  cpu::lightning_recurrent(o.data() + 37 * row, q.data() + 37 * row, k.data() + 37 * row, v.data() + 37 * row,
                           st.data(), g.data(), scale, 1, H, D);
  cpu::lightning_chunked(o.data() + 38 * row, q.data() + 38 * row, k.data() + 38 * row, v.data() + 38 * row, st.data(),
                         g.data(), scale, T - 38, H, D, 64);
  EXPECT_LT(test::rel_max_err(o, o_one), 1e-5);
  EXPECT_LT(test::rel_max_err(st, st_one), 1e-5);
}

TEST(Lightning, MatchesFloat64Reference) {
  const int64_t T = 97, H = 16, D = 16;
  const float scale = 1.0f / std::sqrt(float(D));
  auto q = test::randn(size_t(T * H * D), 21), k = test::randn(size_t(T * H * D), 22), v = test::randn(size_t(T * H * D), 23);
  std::vector<float> o(q.size()), st(size_t(H * D * D), 0.0f);
  cpu::lightning_chunked(o.data(), q.data(), k.data(), v.data(), st.data(), log_decays(H).data(), scale, T, H, D, 64);
  std::vector<double> st64;
  auto o64 = ref::lightning_recurrent(test::to_f64(q), test::to_f64(k), test::to_f64(v), int(T), int(H), int(D),
                                      ref::alibi_slopes(int(H)), double(scale), st64);
  EXPECT_LT(test::rel_max_err(o, o64), 1e-5);
  EXPECT_LT(test::rel_max_err(st, st64), 1e-5);
}
