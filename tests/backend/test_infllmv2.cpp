// InfLLM-V2 selection and block-sparse attention against the independent float64 reference (tests/ref/ref64.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include "ref/ref64.h"
#include "sala/backend/cpu/attention.h"
#include "sala/backend/cpu/infllmv2.h"
#include "test_util.h"

using namespace sala;

namespace {

struct Geometry {
  int64_t ks, s, B, topk, W, init;
};
const Geometry kReleased{32, 16, 64, 64, 2048, 1};
const Geometry kTiny{8, 4, 16, 4, 32, 1};

ref::SparseParams to_ref(const Geometry& g) {
  ref::SparseParams p;
  p.kernel_size = int(g.ks);
  p.kernel_stride = int(g.s);
  p.block_size = int(g.B);
  p.topk = int(g.topk);
  p.window_size = int(g.W);
  p.init_blocks = int(g.init);
  return p;
}

cpu::SelectParams to_cpu(const Geometry& g, int64_t D) {
  cpu::SelectParams p;
  p.block = g.B;
  p.stride = g.s;
  p.topk_total = g.topk + g.W / g.B;
  p.local_blocks = g.W / g.B;
  p.init_blocks = g.init;
  p.scale = float(1.0 / std::sqrt(double(D)));
  return p;
}

struct Keys {
  cpu::CompressedKeys k1, k2;
  Keys(const Geometry& g, const std::vector<float>& k, int64_t L, int64_t Hkv, int64_t D) {
    k1.init(g.ks, g.s, Hkv, D);
    k2.init(4 * g.ks, 4 * g.s, Hkv, D);
    k1.append(k.data(), L);
    k2.append(k.data(), L);
  }
};

// Selection of every row of a prefill call from position 0, mine vs the float64 reference.
void expect_prefill_selection_equal(const Geometry& g, int64_t L, int64_t Hq, int64_t Hkv, int64_t D, uint64_t seed,
                                    int64_t rows_from = 0) {
  auto q = test::randn(size_t(L * Hq * D), seed), k = test::randn(size_t(L * Hkv * D), seed + 1);
  Keys keys(g, k, L, Hkv, D);
  cpu::SelectParams p = to_cpu(g, D);
  std::vector<int32_t> idx(size_t(Hkv * L * p.topk_total));
  cpu::infllmv2_select(idx.data(), q.data(), keys.k1, keys.k2, L, 0, L, Hq, p);
  auto want = ref::infllmv2_select(test::to_f64(q), int(L), int(Hq), test::to_f64(k), int(L), int(Hkv), int(D),
                                   double(p.scale), to_ref(g), false);
  ASSERT_EQ(want.size(), idx.size());
  int64_t bad = 0;
  for (int64_t gg = 0; gg < Hkv; ++gg)
    for (int64_t t = rows_from; t < L; ++t)
      for (int64_t r = 0; r < p.topk_total; ++r) {
        size_t i = size_t((gg * L + t) * p.topk_total + r);
        if (idx[i] != want[i] && bad++ < 5)
          ADD_FAILURE() << "L=" << L << " head " << gg << " row " << t << " slot " << r << ": got " << idx[i]
                        << ", reference " << want[i];
      }
  EXPECT_EQ(bad, 0) << "L=" << L;
}

}  // namespace

TEST(InfLLMv2, VisibilityRuleEqualsKernelFormulaForCallsFromZero) {
  for (int64_t s : {16, 64, 4, 2})
    for (int64_t Lq = 1; Lq <= 400; ++Lq) {
      const int64_t N = Lq >= 2 * s ? (Lq - 2 * s) / s + 1 : 0;
      for (int64_t t = 0; t < Lq; ++t)
        ASSERT_EQ(cpu::stage1_visible_windows(t, Lq, s),
                  std::min<int64_t>(ref::stage1_visible_kernel_formula(int(t), int(Lq), int(N), int(s)), N))
            << "stride " << s << " Lq " << Lq << " t " << t;
    }
}

TEST(InfLLMv2, VisibilityOffByOneOnLengths15Mod16And63Mod64) {
  // Lq = 8191 ≡ 15 (mod 16) and ≡ 63 (mod 64): every row sees one K1 and one K2 window fewer than it has completed.
  EXPECT_EQ(cpu::stage1_visible_windows(8190, 8191, 16), (8191 - 32) / 16 + 1 - 1);
  EXPECT_EQ(cpu::stage1_visible_windows(8190, 8191, 64), (8191 - 128) / 64 + 1 - 1);
  EXPECT_EQ(cpu::stage1_visible_windows(8190, 8192, 16), (8191 - 32) / 16 + 1);
  EXPECT_EQ(cpu::stage1_visible_windows(8190, 8190, 64), (8191 - 128) / 64 + 1);
  // decode (a one-token call) sees every complete window
  EXPECT_EQ(cpu::stage1_visible_windows(8190, 1, 16), (8191 - 32) / 16 + 1);
}

TEST(InfLLMv2, IncrementalCompressionEqualsWholeSequence) {
  const int64_t L = 777, H = 2, D = 8;
  auto k = test::randn(size_t(L * H * D), 5);
  cpu::CompressedKeys whole, inc;
  whole.init(32, 16, H, D);
  inc.init(32, 16, H, D);
  whole.append(k.data(), L);
  for (int64_t t = 0, step = 1; t < L; t += step, step = step % 5 + 1)
    inc.append(k.data() + t * H * D, std::min(step, L - t));
  ASSERT_EQ(whole.count(), (L - 32) / 16 + 1);
  EXPECT_EQ(inc.windows, whole.windows);  // bit-identical
  auto want = ref::compress_keys(test::to_f64(k), int(L), int(H), int(D), 32, 16);
  EXPECT_LT(test::rel_max_err(whole.windows, want), 1e-6);
  EXPECT_EQ(int64_t(whole.tail.size()) / (H * D), L - whole.count() * 16);  // tail starts at count * stride
}

TEST(InfLLMv2, SelectionEqualsReferenceTinyGeometryManyLengths) {
  for (int64_t L : {1, 31, 63, 64, 95, 127, 128, 129, 200, 255, 257, 319, 333, 400})
    expect_prefill_selection_equal(kTiny, L, 16, 1, 16, uint64_t(100 + L));
}

TEST(InfLLMv2, SelectionEqualsReferenceGqaGroupsOf4) {
  expect_prefill_selection_equal(kTiny, 300, 8, 2, 16, 77);
}

TEST(InfLLMv2, SelectionEqualsReferenceReleasedGeometryTop96) {
  // 7231 ≡ 15 (mod 16) and ≡ 63 (mod 64); 7000 is an ordinary length. Rows below 6144 select every block anyway, so
  // only the last rows are compared (the reference is float64 and slow).
  expect_prefill_selection_equal(kReleased, 7231, 16, 1, 16, 9, 6900);
  expect_prefill_selection_equal(kReleased, 7000, 16, 1, 16, 10, 6900);
}

TEST(InfLLMv2, DecodeSelectionEqualsReference) {
  for (int64_t L : {300, 301, 303, 319, 1000}) {
    const int64_t Hq = 16, Hkv = 1, D = 16;
    auto q = test::randn(size_t(Hq * D), uint64_t(L)), k = test::randn(size_t(L * Hkv * D), uint64_t(L + 1));
    Keys keys(kTiny, k, L, Hkv, D);
    cpu::SelectParams p = to_cpu(kTiny, D);
    std::vector<int32_t> idx(size_t(Hkv * p.topk_total));
    cpu::infllmv2_select(idx.data(), q.data(), keys.k1, keys.k2, 1, L - 1, 1, Hq, p);
    auto want = ref::infllmv2_select(test::to_f64(q), 1, int(Hq), test::to_f64(k), int(L), int(Hkv), int(D),
                                     double(p.scale), to_ref(kTiny), true);
    EXPECT_EQ(std::vector<int32_t>(want.begin(), want.end()), idx) << "L=" << L;
  }
}

TEST(InfLLMv2, TiesBreakTowardLowerBlockIndex) {
  // One key spike inside the K1 window shared by blocks 2 and 3 (window 4*3-1 = 11 covers tokens 44..51 with
  // stride 4, block 16): both blocks pool the same maximum, exactly equal; one free slot must go to block 2.
  Geometry g{8, 4, 16, 3, 32, 1};  // 5 slots: 4 forced (0, 5, 6, 7) + 1 free
  const int64_t L = 128, Hq = 16, Hkv = 1, D = 16;
  std::vector<float> k(size_t(L * Hkv * D), 0.0f), q(size_t(Hq * D), 0.0f);
  for (int64_t t = 44; t < 52; ++t) k[size_t(t * D)] = 8.0f;
  for (int64_t h = 0; h < Hq; ++h) q[size_t(h * D)] = 1.0f;
  Keys keys(g, k, L, Hkv, D);
  cpu::SelectParams p = to_cpu(g, D);
  std::vector<int32_t> idx(size_t(p.topk_total));
  cpu::infllmv2_select(idx.data(), q.data(), keys.k1, keys.k2, 1, L - 1, 1, Hq, p);
  // forced: block 0 and local blocks 5..7; free pick: 2 (tied with 3)
  EXPECT_EQ(idx, (std::vector<int32_t>{0, 2, 5, 6, 7}));
  auto want = ref::infllmv2_select(test::to_f64(q), 1, int(Hq), test::to_f64(k), int(L), int(Hkv), int(D),
                                   double(p.scale), to_ref(g), true);
  EXPECT_EQ(std::vector<int32_t>(want.begin(), want.end()), idx);
}

TEST(InfLLMv2, SparseWithEveryBlockEqualsDense) {
  const int64_t L = 300, Hq = 16, Hkv = 1, D = 16;
  Geometry g = kTiny;
  g.topk = 64;  // covers every block
  auto q = test::randn(size_t(L * Hq * D), 31), k = test::randn(size_t(L * Hkv * D), 32),
       v = test::randn(size_t(L * Hkv * D), 33);
  Keys keys(g, k, L, Hkv, D);
  cpu::SelectParams p = to_cpu(g, D);
  std::vector<int32_t> idx(size_t(Hkv * L * p.topk_total));
  cpu::infllmv2_select(idx.data(), q.data(), keys.k1, keys.k2, L, 0, L, Hq, p);
  std::vector<float> o_sparse(q.size()), o_dense(q.size());
  cpu::attention_block_sparse(o_sparse.data(), q.data(), k.data(), v.data(), idx.data(), p.topk_total, g.B, L, 0, Hq,
                              Hkv, D, p.scale);
  cpu::attention_causal(o_dense.data(), q.data(), k.data(), v.data(), L, 0, Hq, Hkv, D, p.scale);
  EXPECT_LT(test::rel_max_err(o_sparse, o_dense), 1e-6);
  auto o64 = ref::dense_attention(test::to_f64(q), int(L), int(Hq), test::to_f64(k), test::to_f64(v), int(L), int(Hkv),
                                  int(D), 0, double(p.scale));
  EXPECT_LT(test::rel_max_err(o_dense, o64), 1e-5);
}

TEST(InfLLMv2, BlockSparseAttentionEqualsReference) {
  const int64_t L = 333, Hq = 16, Hkv = 1, D = 16;
  auto q = test::randn(size_t(L * Hq * D), 41), k = test::randn(size_t(L * Hkv * D), 42),
       v = test::randn(size_t(L * Hkv * D), 43);
  auto o64 = ref::infllmv2_attention(test::to_f64(q), int(L), int(Hq), test::to_f64(k), test::to_f64(v), int(L),
                                     int(Hkv), int(D), 0.25, to_ref(kTiny), false);
  Keys keys(kTiny, k, L, Hkv, D);
  cpu::SelectParams p = to_cpu(kTiny, D);
  std::vector<int32_t> idx(size_t(Hkv * L * p.topk_total));
  cpu::infllmv2_select(idx.data(), q.data(), keys.k1, keys.k2, L, 0, L, Hq, p);
  std::vector<float> o(q.size());
  cpu::attention_block_sparse(o.data(), q.data(), k.data(), v.data(), idx.data(), p.topk_total, kTiny.B, L, 0, Hq, Hkv,
                              D, p.scale);
  EXPECT_LT(test::rel_max_err(o, o64), 1e-5);
}
