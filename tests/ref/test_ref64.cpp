// Sanity tests of the float64 reference (tests/ref/ref64.*) against closed forms.
#include "ref/ref64.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace ref = sala::ref;

namespace {

std::vector<double> rnd(std::size_t n, unsigned seed, double lo = -1.0, double hi = 1.0) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> u(lo, hi);
    std::vector<double> x(n);
    for (auto& e : x) e = u(gen);
    return x;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    EXPECT_EQ(a.size(), b.size());
    double m = 0.0;
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

std::size_t at3(int a, int b, int c, int B, int C) {
    return (static_cast<std::size_t>(a) * B + b) * C + c;
}

} // namespace

// ------------------------------------------------------------------------------------------
// ALiBi slopes
// ------------------------------------------------------------------------------------------

TEST(Ref64Alibi, H32IsPowersOfTwoToTheMinusQuarter) {
    const auto s = ref::alibi_slopes(32);
    ASSERT_EQ(s.size(), 32u);
    for (int h = 0; h < 32; ++h) EXPECT_NEAR(s[h], std::pow(2.0, -0.25 * (h + 1)), 1e-15) << h;
    // dossier §3.2 table
    EXPECT_NEAR(s[0], 0.840896415253714, 1e-12);
    EXPECT_NEAR(s[3], 0.5, 1e-15);
    EXPECT_NEAR(s[7], 0.25, 1e-15);
    EXPECT_NEAR(s[15], 0.0625, 1e-15);
    EXPECT_NEAR(s[31], 1.0 / 256.0, 1e-16);
    const auto g = ref::lightning_decays(s);
    EXPECT_NEAR(g[3], std::exp(-0.5), 1e-15);
    EXPECT_NEAR(g[31], 0.99610137, 1e-8);
}

TEST(Ref64Alibi, H8AndH12KnownValues) {
    const auto s8 = ref::alibi_slopes(8);
    ASSERT_EQ(s8.size(), 8u);
    for (int h = 0; h < 8; ++h) EXPECT_DOUBLE_EQ(s8[h], std::pow(2.0, -(h + 1))) << h;

    // H = 12: slopes(8) followed by slopes(16)[0::2][:4] = 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5
    const auto s12 = ref::alibi_slopes(12);
    ASSERT_EQ(s12.size(), 12u);
    const double expect[12] = {0.5,       0.25,      0.125,     0.0625,
                               0.03125,   0.015625,  0.0078125, 0.00390625,
                               0.7071067811865476, 0.3535533905932738, 0.1767766952966369,
                               0.08838834764831845};
    for (int h = 0; h < 12; ++h) EXPECT_NEAR(s12[h], expect[h], 1e-15) << h;

    EXPECT_NEAR(ref::alibi_slopes(1)[0], 1.0 / 256.0, 1e-16);
}

// ------------------------------------------------------------------------------------------
// Lightning
// ------------------------------------------------------------------------------------------

TEST(Ref64Lightning, SingleTokenByHand) {
    // H=1, D=2: S = k^T v = [[1.5, 12], [-0.5, -4]], q S = (0.5, 4), times scale 0.5
    const std::vector<double> q{1, 2}, k{3, -1}, v{0.5, 4};
    std::vector<double> state;
    auto o = ref::lightning_recurrent(q, k, v, 1, 1, 2, {0.7}, 0.5, state);
    ASSERT_EQ(o.size(), 2u);
    EXPECT_DOUBLE_EQ(o[0], 0.25);
    EXPECT_DOUBLE_EQ(o[1], 2.0);
    const std::vector<double> S{1.5, 12, -0.5, -4};
    EXPECT_LT(max_abs_diff(state, S), 1e-15);

    // with a nonzero initial state: o = scale * q (gamma S0 + k^T v)
    std::vector<double> S0{1, 2, 3, 4};
    const double gamma = std::exp(-0.7);
    o = ref::lightning_recurrent(q, k, v, 1, 1, 2, {0.7}, 0.5, S0);
    const double e0 = 0.5 * (1 * (gamma * 1 + 1.5) + 2 * (gamma * 3 - 0.5));
    const double e1 = 0.5 * (1 * (gamma * 2 + 12) + 2 * (gamma * 4 - 4));
    EXPECT_NEAR(o[0], e0, 1e-14);
    EXPECT_NEAR(o[1], e1, 1e-14);
}

TEST(Ref64Lightning, MatchesDirectDoubleSum) {
    const int T = 23, H = 4, D = 5;
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    const auto q = rnd(static_cast<std::size_t>(T) * H * D, 1);
    const auto k = rnd(static_cast<std::size_t>(T) * H * D, 2);
    const auto v = rnd(static_cast<std::size_t>(T) * H * D, 3);
    // head 0: slope 0 (gamma = 1, plain unnormalised causal linear attention)
    const std::vector<double> slopes{0.0, 0.3, 0.840896415253714, 1.0 / 256.0};
    std::vector<double> state;
    const auto o = ref::lightning_recurrent(q, k, v, T, H, D, slopes, scale, state);

    std::vector<double> expect(o.size(), 0.0);
    for (int h = 0; h < H; ++h) {
        const double gamma = std::exp(-slopes[h]);
        for (int t = 0; t < T; ++t)
            for (int j = 0; j <= t; ++j) {
                double qk = 0;
                for (int d = 0; d < D; ++d) qk += q[at3(t, h, d, H, D)] * k[at3(j, h, d, H, D)];
                const double w = scale * std::pow(gamma, t - j) * qk;
                for (int d = 0; d < D; ++d) expect[at3(t, h, d, H, D)] += w * v[at3(j, h, d, H, D)];
            }
    }
    EXPECT_LT(max_abs_diff(o, expect), 1e-12);

    // final state = sum_j gamma^{T-1-j} k_j^T v_j
    for (int h = 0; h < H; ++h) {
        const double gamma = std::exp(-slopes[h]);
        for (int i = 0; i < D; ++i)
            for (int jj = 0; jj < D; ++jj) {
                double s = 0;
                for (int j = 0; j < T; ++j)
                    s += std::pow(gamma, T - 1 - j) * k[at3(j, h, i, H, D)] * v[at3(j, h, jj, H, D)];
                EXPECT_NEAR(state[at3(h, i, jj, D, D)], s, 1e-12);
            }
    }
}

TEST(Ref64Lightning, StateCarriesAcrossCalls) {
    const int T = 19, H = 2, D = 4, T1 = 7;
    const auto q = rnd(static_cast<std::size_t>(T) * H * D, 11);
    const auto k = rnd(static_cast<std::size_t>(T) * H * D, 12);
    const auto v = rnd(static_cast<std::size_t>(T) * H * D, 13);
    const auto slopes = ref::alibi_slopes(H);
    std::vector<double> s_full, s_split;
    const auto o_full = ref::lightning_recurrent(q, k, v, T, H, D, slopes, 0.5, s_full);
    const std::size_t cut = static_cast<std::size_t>(T1) * H * D;
    auto part = [&](const std::vector<double>& x, std::size_t a, std::size_t b) {
        return std::vector<double>(x.begin() + static_cast<long>(a), x.begin() + static_cast<long>(b));
    };
    auto o1 = ref::lightning_recurrent(part(q, 0, cut), part(k, 0, cut), part(v, 0, cut), T1, H, D,
                                       slopes, 0.5, s_split);
    const auto o2 = ref::lightning_recurrent(part(q, cut, q.size()), part(k, cut, k.size()),
                                             part(v, cut, v.size()), T - T1, H, D, slopes, 0.5,
                                             s_split);
    o1.insert(o1.end(), o2.begin(), o2.end());
    EXPECT_LT(max_abs_diff(o1, o_full), 1e-13);
    EXPECT_LT(max_abs_diff(s_split, s_full), 1e-13);
}

// ------------------------------------------------------------------------------------------
// RMSNorm, RoPE
// ------------------------------------------------------------------------------------------

TEST(Ref64RmsNorm, ClosedForm) {
    const std::vector<double> x{3, 4, 0, -2};
    const auto y = ref::rmsnorm(x, {1, 2}, 0.0, 2);
    const double r0 = std::sqrt(12.5), r1 = std::sqrt(2.0);
    EXPECT_NEAR(y[0], 3 / r0, 1e-15);
    EXPECT_NEAR(y[1], 8 / r0, 1e-15);
    EXPECT_NEAR(y[2], 0.0, 1e-15);
    EXPECT_NEAR(y[3], -4 / r1, 1e-15);
    const auto z = ref::rmsnorm({1, 1}, {1, 1}, 1e-6, 2);
    EXPECT_NEAR(z[0], 1 / std::sqrt(1 + 1e-6), 1e-15);
}

TEST(Ref64Rope, ClosedFormAndRelativePosition) {
    // D = 4, theta = 100: pair (0,2) rotates by pos, pair (1,3) by pos * 100^(-1/2) = pos / 10
    const std::vector<double> x{1, 2, 3, 4};
    const auto y = ref::rope_neox(x, 1, 1, 4, {3}, 100.0);
    EXPECT_NEAR(y[0], 1 * std::cos(3.0) - 3 * std::sin(3.0), 1e-15);
    EXPECT_NEAR(y[2], 3 * std::cos(3.0) + 1 * std::sin(3.0), 1e-15);
    EXPECT_NEAR(y[1], 2 * std::cos(0.3) - 4 * std::sin(0.3), 1e-15);
    EXPECT_NEAR(y[3], 4 * std::cos(0.3) + 2 * std::sin(0.3), 1e-15);
    EXPECT_EQ(ref::rope_neox(x, 1, 1, 4, {0}, 100.0), x); // position 0 is the identity

    // dot(rope(q, m), rope(k, n)) depends only on m - n
    const int D = 16;
    const auto q = rnd(D, 21), k = rnd(D, 22);
    auto dotp = [&](int m, int n) {
        const auto a = ref::rope_neox(q, 1, 1, D, {m}, 10000.0);
        const auto b = ref::rope_neox(k, 1, 1, D, {n}, 10000.0);
        double s = 0;
        for (int d = 0; d < D; ++d) s += a[d] * b[d];
        return s;
    };
    EXPECT_NEAR(dotp(10, 3), dotp(1007, 1000), 1e-11);
    EXPECT_NEAR(dotp(5, 5), dotp(0, 0), 1e-12);
}

// ------------------------------------------------------------------------------------------
// Dense attention, compression
// ------------------------------------------------------------------------------------------

TEST(Ref64Dense, ClosedForms) {
    // zero queries -> uniform average over the visible values; GQA head mapping h / (Hq/Hkv)
    const int Tq = 3, Hq = 4, Hkv = 2, D = 2, q_pos0 = 2, Tk = 5;
    std::vector<double> q(static_cast<std::size_t>(Tq) * Hq * D, 0.0);
    const auto k = rnd(static_cast<std::size_t>(Tk) * Hkv * D, 31);
    const auto v = rnd(static_cast<std::size_t>(Tk) * Hkv * D, 32);
    const auto o = ref::dense_attention(q, Tq, Hq, k, v, Tk, Hkv, D, q_pos0, 0.7);
    for (int t = 0; t < Tq; ++t)
        for (int h = 0; h < Hq; ++h)
            for (int d = 0; d < D; ++d) {
                double m = 0;
                for (int j = 0; j <= q_pos0 + t; ++j) m += v[at3(j, h / 2, d, Hkv, D)];
                m /= (q_pos0 + t + 1);
                EXPECT_NEAR(o[at3(t, h, d, Hq, D)], m, 1e-15);
            }

    // two keys by hand: weights softmax(scale * q.k)
    const std::vector<double> q1{1, 0}, k2{0, 0, 2, 0}, v2{1, 0, 0, 1};
    const auto o1 = ref::dense_attention(q1, 1, 1, k2, v2, 2, 1, 2, 1, 0.5);
    const double w1 = std::exp(1.0) / (1 + std::exp(1.0));
    EXPECT_NEAR(o1[0], 1 - w1, 1e-15);
    EXPECT_NEAR(o1[1], w1, 1e-15);
}

TEST(Ref64Compress, MeanPooling) {
    EXPECT_EQ(ref::num_compressed(31, 32, 16), 0);
    EXPECT_EQ(ref::num_compressed(32, 32, 16), 1);
    EXPECT_EQ(ref::num_compressed(47, 32, 16), 1);
    EXPECT_EQ(ref::num_compressed(48, 32, 16), 2);
    EXPECT_EQ(ref::num_compressed(8192, 32, 16), 511);
    EXPECT_EQ(ref::num_compressed(8192, 128, 64), 127);
    // k[j][g][d] = j + 100 g + 1000 d -> window i mean = i*stride + (kernel-1)/2 + 100 g + 1000 d
    const int L = 13, Hkv = 2, D = 3, ks = 4, s = 3;
    std::vector<double> k(static_cast<std::size_t>(L) * Hkv * D);
    for (int j = 0; j < L; ++j)
        for (int g = 0; g < Hkv; ++g)
            for (int d = 0; d < D; ++d) k[at3(j, g, d, Hkv, D)] = j + 100.0 * g + 1000.0 * d;
    const auto c = ref::compress_keys(k, L, Hkv, D, ks, s);
    const int N = ref::num_compressed(L, ks, s);
    ASSERT_EQ(N, 4);
    ASSERT_EQ(c.size(), static_cast<std::size_t>(N) * Hkv * D);
    for (int i = 0; i < N; ++i)
        for (int g = 0; g < Hkv; ++g)
            for (int d = 0; d < D; ++d)
                EXPECT_NEAR(c[at3(i, g, d, Hkv, D)], i * s + 1.5 + 100.0 * g + 1000.0 * d, 1e-12);
}

// ------------------------------------------------------------------------------------------
// Stage-1 visibility formula (§4.9 item 1)
// ------------------------------------------------------------------------------------------

TEST(Ref64Stage1Formula, MatchesCompleteWindowsExceptOffByOne) {
    for (int s : {16, 64, 2, 4}) {
        const int kernel = 2 * s;
        for (int Lq = 1; Lq <= 6 * s + 7; ++Lq) {
            const int N = ref::num_compressed(Lq, kernel, s);
            for (int t = 0; t < Lq; ++t) {
                int complete = 0; // windows [i*s, i*s + 2s) ending at or before t
                for (int i = 0; i < N; ++i)
                    if (i * s + kernel - 1 <= t) ++complete;
                const int f = ref::stage1_visible_kernel_formula(t, Lq, N, s);
                if (Lq % s != s - 1 || Lq < 2 * s - 1)
                    EXPECT_EQ(f, complete) << "s=" << s << " Lq=" << Lq << " t=" << t;
                else
                    EXPECT_EQ(f, std::max(0, complete - 1)) << "s=" << s << " Lq=" << Lq << " t=" << t;
            }
        }
    }
    // literal spot values
    EXPECT_EQ(ref::stage1_visible_kernel_formula(31, 32, 1, 16), 1);
    EXPECT_EQ(ref::stage1_visible_kernel_formula(46, 47, 1, 16), 0);   // Lq = 47 = 15 mod 16
    EXPECT_EQ(ref::stage1_visible_kernel_formula(46, 48, 2, 16), 1);
    EXPECT_EQ(ref::stage1_visible_kernel_formula(8191, 8192, 511, 16), 511);
    EXPECT_EQ(ref::stage1_visible_kernel_formula(8190, 8191, 510, 16), 509);
    EXPECT_EQ(ref::stage1_visible_kernel_formula(8190, 8191, 126, 64), 125);   // 8191 = 63 mod 64
    EXPECT_EQ(ref::stage1_visible_kernel_formula(8254, 8255, 127, 64), 126); // 8255 = 63 mod 64
    // C-style truncation of a negative quotient: (1 - 15) / 16 -> 0, not -1
    EXPECT_EQ(ref::stage1_visible_kernel_formula(0, 1, 5, 16), 4);
}

// ------------------------------------------------------------------------------------------
// InfLLM-V2 stage 1 / selection / attention
// ------------------------------------------------------------------------------------------

TEST(Ref64InfLLMv2, Stage1ConstantKeysClosedForm) {
    // all keys equal -> K1[i] = K2[j] = c, so each head contributes exp(-log n2) = 1/n2
    const int L = 300, Hq = 4, Hkv = 2, D = 3, group = Hq / Hkv;
    ref::SparseParams p; // 32/16, 64, ...
    std::vector<double> k(static_cast<std::size_t>(L) * Hkv * D);
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = 0.3 + 0.1 * static_cast<double>(i % D);
    const auto q = rnd(static_cast<std::size_t>(L) * Hq * D, 41);
    const double scale = 1 / std::sqrt(3.0);
    const int N1 = ref::num_compressed(L, 32, 16), N2 = ref::num_compressed(L, 128, 64);
    ASSERT_EQ(N1, 17);
    ASSERT_EQ(N2, 3);
    const auto S = ref::infllmv2_stage1_scores(q, L, Hq, k, L, Hkv, D, scale, p, false);
    ASSERT_EQ(S.size(), static_cast<std::size_t>(Hkv) * L * N1);
    for (int g = 0; g < Hkv; ++g)
        for (int t = 0; t < L; ++t) {
            const int n1 = std::min(N1, ref::stage1_visible_kernel_formula(t, L, N1, 16));
            const int n2 = std::min(N2, ref::stage1_visible_kernel_formula(t, L, N2, 64));
            for (int i = 0; i < N1; ++i) {
                const double e = (n2 > 0 && i < n1) ? static_cast<double>(group) / n2 : 0.0;
                EXPECT_NEAR(S[at3(g, t, i, L, N1)], e, 1e-13) << g << " " << t << " " << i;
            }
        }
    // decode: every window visible
    const std::vector<double> qd(q.begin(), q.begin() + Hq * D);
    const auto Sd = ref::infllmv2_stage1_scores(qd, 1, Hq, k, L, Hkv, D, scale, p, true);
    for (double e : Sd) EXPECT_NEAR(e, static_cast<double>(group) / N2, 1e-13);

    // fewer than 128 tokens: no K2 window -> all scores 0
    const auto S0 = ref::infllmv2_stage1_scores(
        std::vector<double>(static_cast<std::size_t>(100) * Hq * D, 1.0), 100, Hq,
        std::vector<double>(k.begin(), k.begin() + 100 * Hkv * D), 100, Hkv, D, scale, p, false);
    for (double e : S0) EXPECT_EQ(e, 0.0);
}

namespace {

void expect_all_blocks_and_dense(int L, int Hq, int Hkv, int D, const ref::SparseParams& p,
                                 unsigned seed) {
    const double scale = 1 / std::sqrt(static_cast<double>(D));
    const auto q = rnd(static_cast<std::size_t>(L) * Hq * D, seed, -2, 2);
    const auto k = rnd(static_cast<std::size_t>(L) * Hkv * D, seed + 1, -2, 2);
    const auto v = rnd(static_cast<std::size_t>(L) * Hkv * D, seed + 2);
    const int K = p.topk + p.window_size / p.block_size;
    const int nb = (L + p.block_size - 1) / p.block_size;
    ASSERT_GE(K, nb);

    const auto idx = ref::infllmv2_select(q, L, Hq, k, L, Hkv, D, scale, p, false);
    ASSERT_EQ(idx.size(), static_cast<std::size_t>(Hkv) * L * K);
    for (int g = 0; g < Hkv; ++g)
        for (int t = 0; t < L; ++t) {
            const int q_blk = t / p.block_size;
            for (int n = 0; n < K; ++n)
                ASSERT_EQ(idx[at3(g, t, n, L, K)], n <= q_blk ? n : -1) << g << " " << t << " " << n;
        }
    const auto o_sparse = ref::infllmv2_attention(q, L, Hq, k, v, L, Hkv, D, scale, p, false);
    const auto o_dense = ref::dense_attention(q, L, Hq, k, v, L, Hkv, D, 0, scale);
    EXPECT_LT(max_abs_diff(o_sparse, o_dense), 1e-12);

    // decode of the last token (position L-1) sees every block as well
    const std::vector<double> qd(q.end() - Hq * D, q.end());
    const auto idd = ref::infllmv2_select(qd, 1, Hq, k, L, Hkv, D, scale, p, true);
    for (int g = 0; g < Hkv; ++g)
        for (int n = 0; n < K; ++n) EXPECT_EQ(idd[at3(g, 0, n, 1, K)], n < nb ? n : -1);
    const auto od = ref::infllmv2_attention(qd, 1, Hq, k, v, L, Hkv, D, scale, p, true);
    const auto odd = ref::dense_attention(qd, 1, Hq, k, v, L, Hkv, D, L - 1, scale);
    EXPECT_LT(max_abs_diff(od, odd), 1e-12);
}

} // namespace

TEST(Ref64InfLLMv2, FullBudgetSelectsAllBlocksAndEqualsDense) {
    ref::SparseParams small;
    small.kernel_size = 4;
    small.kernel_stride = 2;
    small.block_size = 8;
    small.topk = 7;
    small.window_size = 8; // K = 8 >= ceil(61 / 8) = 8
    small.init_blocks = 1;
    expect_all_blocks_and_dense(61, 4, 2, 6, small, 100);

    ref::SparseParams released; // 32/16, B 64, topk 64, W 2048 -> K = 96 >= 16 blocks
    expect_all_blocks_and_dense(1000, 4, 2, 8, released, 200);
}

TEST(Ref64InfLLMv2, TieBreaksTowardLowerBlockIndex) {
    // kernel 4 / stride 2, block 8 -> block b pools K1 windows 4b-1 .. 4b+3.
    // Keys are 0 except tokens 22..25 (= exactly K1 window 11, shared by blocks 2 and 3);
    // windows 10 and 12 each see half of the spike. Blocks 2 and 3 tie bit-exactly.
    const int L = 64, Hq = 2, Hkv = 1, D = 4;
    ref::SparseParams p;
    p.kernel_size = 4;
    p.kernel_stride = 2;
    p.block_size = 8;
    p.topk = 3;
    p.window_size = 8;  // forced: block 0 and blocks 6, 7 (q_blk = 7)
    p.init_blocks = 1;  // K = 3 + 1 = 4 -> exactly one free pick
    std::vector<double> k(static_cast<std::size_t>(L) * Hkv * D, 0.0);
    for (int j = 22; j <= 25; ++j) {
        k[at3(j, 0, 0, Hkv, D)] = 3.0;
        k[at3(j, 0, 1, Hkv, D)] = 1.0;
    }
    const std::vector<double> q{1, 0, 0, 0, 0.5, 0.5, 0, 0};
    const double scale = 0.5;

    const auto bs = ref::infllmv2_block_scores(q, 1, Hq, k, L, Hkv, D, scale, p, true);
    ASSERT_EQ(bs.size(), 8u);
    EXPECT_TRUE(std::isinf(bs[0]) && std::isinf(bs[6]) && std::isinf(bs[7]));
    EXPECT_EQ(bs[2], bs[3]); // bit-identical tie
    EXPECT_GT(bs[2], bs[1]);
    EXPECT_GT(bs[2], bs[4]);
    EXPECT_GT(bs[2], bs[5]);

    const auto idx = ref::infllmv2_select(q, 1, Hq, k, L, Hkv, D, scale, p, true);
    EXPECT_EQ(idx, (std::vector<int>{0, 2, 6, 7}));

    // the same row as the last row of a prefill call (L = 64 is not 1 mod 2 / 7 mod 8)
    std::vector<double> qp(static_cast<std::size_t>(L) * Hq * D, 0.0);
    std::copy(q.begin(), q.end(), qp.end() - Hq * D);
    const auto idp = ref::infllmv2_select(qp, L, Hq, k, L, Hkv, D, scale, p, false);
    EXPECT_EQ(std::vector<int>(idp.end() - 4, idp.end()), (std::vector<int>{0, 2, 6, 7}));

    // the helper itself
    EXPECT_EQ(ref::topk_lower_index({1, 5, 5, 2}, 1), (std::vector<int>{1}));
    EXPECT_EQ(ref::topk_lower_index({1, 5, 5, 2}, 3), (std::vector<int>{1, 2, 3}));
    EXPECT_EQ(ref::topk_lower_index({0, 0, 0}, 2), (std::vector<int>{0, 1}));
    EXPECT_EQ(ref::topk_lower_index({1, 2}, 5), (std::vector<int>{1, 0}));
}

TEST(Ref64InfLLMv2, SelectionStructureReleasedGeometry) {
    // released kernel/stride/block; small budget so that the free picks matter
    const int L = 777, Hq = 4, Hkv = 2, D = 8;
    ref::SparseParams p;
    p.topk = 4;
    p.window_size = 128; // local blocks q_blk-2 .. q_blk
    const int K = p.topk + p.window_size / p.block_size;
    const int nb = (L + 63) / 64;
    const double scale = 1 / std::sqrt(8.0);
    const auto q = rnd(static_cast<std::size_t>(L) * Hq * D, 51, -3, 3);
    const auto k = rnd(static_cast<std::size_t>(L) * Hkv * D, 52, -3, 3);
    const auto idx = ref::infllmv2_select(q, L, Hq, k, L, Hkv, D, scale, p, false);
    const auto bs = ref::infllmv2_block_scores(q, L, Hq, k, L, Hkv, D, scale, p, false);
    for (int g = 0; g < Hkv; ++g)
        for (int t = 0; t < L; ++t) {
            const int q_blk = t / 64;
            std::vector<int> valid;
            bool tail = false;
            for (int n = 0; n < K; ++n) {
                const int b = idx[at3(g, t, n, L, K)];
                if (b < 0) {
                    tail = true;
                    continue;
                }
                ASSERT_FALSE(tail) << "-1 entries must form the tail";
                ASSERT_LE(b, q_blk);
                if (!valid.empty()) {
                    ASSERT_LT(valid.back(), b);
                }
                valid.push_back(b);
            }
            // forced blocks are present
            auto has = [&](int b) { return std::find(valid.begin(), valid.end(), b) != valid.end(); };
            ASSERT_TRUE(has(0));
            for (int b = std::max(0, q_blk - 2); b <= q_blk; ++b) ASSERT_TRUE(has(b));
            // every block <= q_blk exists; the budget is filled with past blocks when possible
            ASSERT_EQ(static_cast<int>(valid.size()), std::min(K, q_blk + 1)) << t;
            // a selected block beats every unselected one (ties -> lower index)
            const double* row = &bs[at3(g, t, 0, L, nb)];
            for (int a : valid)
                for (int b = 0; b < nb; ++b)
                    if (!has(b)) {
                        ASSERT_TRUE(row[a] > row[b] || (row[a] == row[b] && a < b))
                            << "t=" << t << " a=" << a << " b=" << b;
                    }
        }
    // block-sparse attention with these indices equals dense attention restricted to the blocks
    const auto v = rnd(static_cast<std::size_t>(L) * Hkv * D, 53);
    const auto o = ref::block_sparse_attention(q, L, Hq, k, v, L, Hkv, D, idx, 0, scale, 64);
    const int t = L - 1, h = 5 % Hq, g = h / (Hq / Hkv);
    std::vector<int> keys;
    for (int j = 0; j <= t; ++j)
        for (int n = 0; n < K; ++n)
            if (idx[at3(g, t, n, L, K)] == j / 64) {
                keys.push_back(j);
                break;
            }
    ASSERT_LT(keys.size(), static_cast<std::size_t>(L));
    std::vector<double> w(keys.size());
    double mx = -1e300, den = 0;
    for (std::size_t n = 0; n < keys.size(); ++n) {
        double s = 0;
        for (int d = 0; d < D; ++d) s += q[at3(t, h, d, Hq, D)] * k[at3(keys[n], g, d, Hkv, D)];
        w[n] = scale * s;
        mx = std::max(mx, w[n]);
    }
    for (auto& e : w) den += (e = std::exp(e - mx));
    for (int d = 0; d < D; ++d) {
        double acc = 0;
        for (std::size_t n = 0; n < keys.size(); ++n) acc += w[n] / den * v[at3(keys[n], g, d, Hkv, D)];
        EXPECT_NEAR(o[at3(t, h, d, Hq, D)], acc, 1e-13);
    }
}
