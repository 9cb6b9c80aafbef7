// The ops harness, in the spirit of llama.cpp's test-backend-ops: every op of the Backend interface, on every backend
// this binary has (the CPU always; CUDA in sala_cuda_tests on the GPU machine, where this file is compiled too),
// against the float64 reference of tests/ref, with a declared error bound per backend and awkward shapes: T = 1, T not
// a multiple of 64, call lengths = 15 (mod 16) and = 63 (mod 64), GQA 16, varlen steps mixing dense and sparse
// sequences, a prefill continued by later steps. Inputs are bf16 values (exact in fp32), so both backends see the
// same numbers; the bound is the backend's arithmetic: 2e-5 for the fp32 CPU, 3e-2 for bf16 CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "ref/ref64.h"
#include "sala/backend/backend.h"
#include "sala/model/config.h"
#include "sala/model/model.h"
#include "sala/model/presets.h"
#include "sala/model/rope.h"
#include "test_util.h"
#ifdef SALA_OPS_WITH_CUDA
#include "sala/backend/cuda/cuda_backend.h"
#endif

using namespace sala;

namespace {

std::vector<Device> backends() {
  std::vector<Device> d = {Device::CPU};
#ifdef SALA_OPS_WITH_CUDA
  cuda::register_backend();
  std::string why;
  if (make_cuda_backend(&why)) d.push_back(Device::CUDA);
#endif
  return d;
}

std::unique_ptr<Backend> make(Device d) {
  if (d == Device::CPU) return make_cpu_backend();
  std::string why;
  auto b = make_cuda_backend(&why);
  if (!b) throw std::runtime_error(why);
  return b;
}

double bound(Device d) { return d == Device::CPU ? 2e-5 : 3e-2; }

// Random normal values rounded to bf16 (exact in fp32 and in bf16).
std::vector<float> bf16_randn(size_t n, uint64_t seed, float std = 1.0f) {
  auto v = test::randn(n, seed, std);
  for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}
std::vector<double> f64(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// A step over sequences of the given lengths, each continuing from `past` tokens of its slot, in calls of `call`.
struct Seq {
  int64_t n, past = 0, call = 0;  // call 0: n + past
  bool sparse = false;
};
Step make_step(const std::vector<Seq>& seqs, const std::vector<int>& slots) {
  Step st;
  for (size_t i = 0; i < seqs.size(); ++i) {
    StepSeq s;
    s.slot = slots[i];
    s.row0 = st.rows();
    s.n = seqs[i].n;
    s.pos0 = seqs[i].past;
    s.call_pos0 = seqs[i].past;
    s.call_len = seqs[i].call > 0 ? seqs[i].call : seqs[i].n;
    s.sparse = seqs[i].sparse;
    s.fresh = seqs[i].past == 0;
    for (int64_t t = 0; t < s.n; ++t) {
      st.tokens.push_back(0);
      st.pos.push_back(int32_t(s.pos0 + t));
      st.row_seq.push_back(int32_t(i));
    }
    st.seqs.push_back(s);
  }
  return st;
}

// Rows [r0, r0 + n) and columns [c0, c0 + w) of a (rows, ld) host matrix.
std::vector<double> cols(const std::vector<float>& x, int64_t ld, int64_t r0, int64_t n, int64_t c0, int64_t w) {
  std::vector<double> o(size_t(n * w));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < w; ++c) o[size_t(t * w + c)] = x[size_t((r0 + t) * ld + c0 + c)];
  return o;
}

class BackendOps : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    be = make(GetParam());
    cfg = preset_config("sala-tiny64");  // S L L S; sparse 16 q heads / 1 kv of 64, lightning 16 heads of 64
  }
  HostTensor host(const std::string& name, const std::vector<float>& v, int64_t rows, int64_t cols_) {
    return HostTensor{name, DType::F32, v.data(), rows, cols_};
  }
  void plan(int64_t seqs, int64_t tokens, int64_t rows) {
    CachePlan p;
    p.max_seqs = seqs;
    p.max_tokens = tokens;
    p.max_step_rows = rows;
    be->plan_cache(cfg, p);
  }
  std::unique_ptr<Backend> be;
  ModelConfig cfg;
};

TEST_P(BackendOps, LinearOfFusedPartsAndNorms) {
  const int64_t in = 200, o1 = 96, o2 = 40;  // not multiples of 64
  auto w1 = bf16_randn(size_t(o1 * in), 1, 0.05f), w2 = bf16_randn(size_t(o2 * in), 2, 0.05f);
  auto nw = bf16_randn(size_t(in), 3, 0.5f);
  for (auto& x : nw) x += 1.0f;
  const HostTensor parts[2] = {host("w1", w1, o1, in), host("w2", w2, o2, in)};
  const Mat W = be->add_matrix(parts);
  const Vec nv = be->add_vector(host("n", nw, 1, in));
  be->finish_weights();
  plan(1, 128, 77);  // a step of 77 rows from position 0
  for (int64_t N : {1, 3, 77}) {
    const Step st = make_step({{N}}, {0});
    be->begin_step(st);
    auto hx = f64(bf16_randn(size_t(N * in), 10 + uint64_t(N)));
    auto ha = bf16_randn(size_t(N * in), 20 + uint64_t(N));
    Act h = be->scratch(0, N, in, true), a = be->scratch(1, N, in), xn = be->scratch(2, N, in), y = be->scratch(3, N, o1 + o2);
    be->write(h, std::vector<float>(hx.begin(), hx.end()));
    be->write(a, ha);
    // add_rmsnorm: h += 0.5 a; xn = rmsnorm(h) * w / 4
    be->add_rmsnorm(h, &a, 0.5f, &xn, nv, 1e-6f, 4.0f);
    for (size_t i = 0; i < hx.size(); ++i) hx[i] += 0.5 * double(ha[i]);
    auto want_n = ref::rmsnorm(hx, f64(nw), 1e-6, int(in));
    for (auto& x : want_n) x /= 4.0;
    std::vector<float> got;
    be->read(got, h);
    EXPECT_LT(test::rel_max_err(got, hx), bound(GetParam())) << "residual N=" << N;
    be->read(got, xn);
    EXPECT_LT(test::rel_max_err(got, want_n), bound(GetParam())) << "norm N=" << N;
    // linear over the normed rows (as the backend holds them)
    std::vector<float> xin;
    be->read(xin, xn);
    be->linear(y, xn, W);
    be->read(got, y);
    std::vector<double> want(size_t(N * (o1 + o2)));
    for (int64_t t = 0; t < N; ++t)
      for (int64_t o = 0; o < o1 + o2; ++o) {
        const float* wr = o < o1 ? w1.data() + o * in : w2.data() + (o - o1) * in;
        double s = 0;
        for (int64_t i = 0; i < in; ++i) s += double(xin[size_t(t * in + i)]) * wr[i];
        want[size_t(t * (o1 + o2) + o)] = s;
      }
    EXPECT_LT(test::rel_max_err(got, want), bound(GetParam())) << "linear N=" << N;
  }
}

TEST_P(BackendOps, ElementwiseOpsOnStridedViews) {
  const int64_t N = 65, w = 256, ld = 3 * w;
  auto nw = bf16_randn(size_t(w), 4, 0.3f);
  const Vec nv = be->add_vector(host("n", nw, 1, w));
  be->finish_weights();
  plan(1, 128, N);
  const Step st = make_step({{N}}, {0});
  be->begin_step(st);
  auto hx = bf16_randn(size_t(N * ld), 5);
  Act x = be->scratch(0, N, ld), o = be->scratch(1, N, w);
  be->write(x, hx);
  auto ho = bf16_randn(size_t(N * w), 6);
  be->write(o, ho);
  // o *= sigmoid(x[:, w:2w])
  be->mul_sigmoid(o, x.cols_view(w, w));
  std::vector<double> want(ho.size());
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < w; ++i)
      want[size_t(t * w + i)] = double(ho[size_t(t * w + i)]) / (1 + std::exp(-double(hx[size_t(t * ld + w + i)])));
  std::vector<float> got;
  be->read(got, o);
  EXPECT_LT(test::rel_max_err(got, want), bound(GetParam())) << "mul_sigmoid";
  // rmsnorm_rows in place
  be->rmsnorm_rows(o, nv, 1e-6f);
  auto want_n = ref::rmsnorm(f64(got), f64(nw), 1e-6, int(w));
  be->read(got, o);
  EXPECT_LT(test::rel_max_err(got, want_n), bound(GetParam())) << "rmsnorm_rows";
  // silu_mul of a gate|up pair
  Act gu = be->scratch(2, N, 2 * w), m = be->scratch(3, N, w);
  auto hg = bf16_randn(size_t(N * 2 * w), 7);
  be->write(gu, hg);
  be->silu_mul(m, gu);
  for (int64_t t = 0; t < N; ++t)
    for (int64_t i = 0; i < w; ++i) {
      const double g = hg[size_t(t * 2 * w + i)], u = hg[size_t(t * 2 * w + w + i)];
      want[size_t(t * w + i)] = g / (1 + std::exp(-g)) * u;
    }
  be->read(got, m);
  EXPECT_LT(test::rel_max_err(got, want), bound(GetParam())) << "silu_mul";
}

// The fused pairs (a backend may run them as one kernel): the SwiGLU product over a gate|up matrix
// (add_swiglu_matrix), at decode row counts (CUDA: its gemv epilogue) and a prefill one, and the output norm followed
// by its gate over strided views, each against the float64 of its two ops on the values the backend holds.
TEST_P(BackendOps, FusedPairsMatchTheirTwoOps) {
  const int64_t in = 256, inter = 200, w = 256, ld = 3 * w;
  auto wg = bf16_randn(size_t(inter * in), 30, 0.05f), wu = bf16_randn(size_t(inter * in), 31, 0.05f);
  auto nw = bf16_randn(size_t(w), 32, 0.3f);
  const Mat W = be->add_swiglu_matrix(host("gate_proj", wg, inter, in), host("up_proj", wu, inter, in));
  const Vec nv = be->add_vector(host("n", nw, 1, w));
  be->finish_weights();
  plan(1, 128, 65);
  for (int64_t N : {1, 4, 65}) {
    const Step st = make_step({{N}}, {0});
    be->begin_step(st);
    Act x = be->scratch(0, N, in), gu = be->scratch(1, N, 2 * inter), m = be->scratch(2, N, inter);
    const auto hx = bf16_randn(size_t(N * in), 40 + uint64_t(N));
    be->write(x, hx);
    be->linear_silu_mul(m, gu, x, W);
    std::vector<double> want(size_t(N * inter));
    for (int64_t t = 0; t < N; ++t)
      for (int64_t o = 0; o < inter; ++o) {
        double g = 0, u = 0;
        for (int64_t i = 0; i < in; ++i) {
          g += double(hx[size_t(t * in + i)]) * wg[size_t(o * in + i)];
          u += double(hx[size_t(t * in + i)]) * wu[size_t(o * in + i)];
        }
        want[size_t(t * inter + o)] = g / (1 + std::exp(-g)) * u;
      }
    std::vector<float> got;
    be->read(got, m);
    EXPECT_LT(test::rel_max_err(got, want), bound(GetParam())) << "linear_silu_mul N=" << N;

    Act xg = be->scratch(3, N, ld), o = be->scratch(4, N, w);
    const auto hg = bf16_randn(size_t(N * ld), 50 + uint64_t(N)), ho = bf16_randn(size_t(N * w), 60 + uint64_t(N), 2);
    be->write(xg, hg);
    be->write(o, ho);
    be->rmsnorm_rows_gate(o, nv, 1e-6f, xg.cols_view(w, w));
    auto want_n = ref::rmsnorm(f64(ho), f64(nw), 1e-6, int(w));
    for (int64_t t = 0; t < N; ++t)
      for (int64_t i = 0; i < w; ++i) want_n[size_t(t * w + i)] /= 1 + std::exp(-double(hg[size_t(t * ld + w + i)]));
    be->read(got, o);
    EXPECT_LT(test::rel_max_err(got, want_n), bound(GetParam())) << "rmsnorm_rows_gate N=" << N;
  }
}

TEST_P(BackendOps, QkNormRopeAtEachSequencesPositions) {
  const int64_t Hq = 16, Hkv = 4, D = 64, ld = (Hq + Hkv) * D + 8;
  auto qn = bf16_randn(size_t(D), 8, 0.2f), kn = bf16_randn(size_t(D), 9, 0.2f);
  for (auto& x : qn) x += 1;
  for (auto& x : kn) x += 1;
  const Vec vq = be->add_vector(host("qn", qn, 1, D)), vk = be->add_vector(host("kn", kn, 1, D));
  be->finish_weights();
  plan(3, 4096, 200);
  const std::vector<Seq> seqs = {{1, 1000}, {63, 0}, {70, 3000}};  // a decode row, a prefill, a continued call
  const Step st = make_step(seqs, {0, 1, 2});
  be->begin_step(st);
  const int64_t N = st.rows();
  auto hx = bf16_randn(size_t(N * ld), 11);
  Act x = be->scratch(0, N, ld);
  be->write(x, hx);
  const RopeTables rope = make_rope_tables(RopeConfig{}, D, 4096);
  be->qk_norm_rope(x, 0, Hq, Hq * D, Hkv, D, vq, vk, 1e-6f, &rope);
  std::vector<float> got;
  be->read(got, x);
  for (size_t s = 0; s < seqs.size(); ++s) {
    const StepSeq& q = st.seqs[s];
    std::vector<int> pos;
    for (int64_t t = 0; t < q.n; ++t) pos.push_back(int(q.pos0 + t));
    auto wq = ref::rope_neox(ref::rmsnorm(cols(hx, ld, q.row0, q.n, 0, Hq * D), f64(qn), 1e-6, int(D)), int(q.n),
                             int(Hq), int(D), pos, 10000.0);
    auto wk = ref::rope_neox(ref::rmsnorm(cols(hx, ld, q.row0, q.n, Hq * D, Hkv * D), f64(kn), 1e-6, int(D)),
                             int(q.n), int(Hkv), int(D), pos, 10000.0);
    // angles in fp32 (as the reference model computes them) against float64 here: 1e-4 at position 3000
    const double tol = std::max(bound(GetParam()), 2e-4);
    EXPECT_LT(test::rel_max_err(cols(got, ld, q.row0, q.n, 0, Hq * D), wq), tol) << "q of sequence " << s;
    EXPECT_LT(test::rel_max_err(cols(got, ld, q.row0, q.n, Hq * D, Hkv * D), wk), tol) << "k of sequence " << s;
    // the padding columns are untouched
    EXPECT_EQ(cols(got, ld, q.row0, q.n, (Hq + Hkv) * D, 8), cols(hx, ld, q.row0, q.n, (Hq + Hkv) * D, 8));
  }
}

TEST_P(BackendOps, LightningVarlenThenContinued) {
  be->finish_weights();
  const int64_t H = cfg.lightning_heads(), D = cfg.lightning_dim(), ld = 3 * H * D;
  plan(3, 512, 256);
  std::vector<double> slopes = ref::alibi_slopes(int(H));
  std::vector<float> log_decay;
  for (double s : slopes) log_decay.push_back(float(-s));
  const float scale = float(1 / std::sqrt(double(D)));
  std::vector<std::vector<double>> states(3);
  const int layer = 1;  // a Lightning layer of sala-tiny64
  int slots[3];
  for (int& s : slots) s = be->acquire_slot(512);
  // step 1: fresh sequences of 1, 63 and 65 tokens; step 2: they continue with 64, 1 and 130 tokens
  for (int stepi = 0; stepi < 2; ++stepi) {
    const std::vector<Seq> seqs = stepi == 0 ? std::vector<Seq>{{1}, {63}, {65}}
                                             : std::vector<Seq>{{64, 1}, {1, 63}, {130, 65}};
    const Step st = make_step(seqs, {slots[0], slots[1], slots[2]});
    be->begin_step(st);
    const int64_t N = st.rows();
    auto hx = bf16_randn(size_t(N * ld), 30 + uint64_t(stepi), 0.5f);
    Act x = be->scratch(0, N, ld), o = be->scratch(1, N, H * D);
    be->write(x, hx);
    be->lightning(o, x, 0, H * D, 2 * H * D, layer, log_decay.data(), scale, H, H, D);
    std::vector<float> got;
    be->read(got, o);
    for (size_t s = 0; s < seqs.size(); ++s) {
      const StepSeq& q = st.seqs[s];
      auto want = ref::lightning_recurrent(cols(hx, ld, q.row0, q.n, 0, H * D), cols(hx, ld, q.row0, q.n, H * D, H * D),
                                           cols(hx, ld, q.row0, q.n, 2 * H * D, H * D), int(q.n), int(H), int(D),
                                           slopes, scale, states[s]);
      EXPECT_LT(test::rel_max_err(cols(got, H * D, q.row0, q.n, 0, H * D), want), 5 * bound(GetParam()))
          << "step " << stepi << " sequence " << s;
    }
  }
  std::vector<float> st;
  be->read_state(st, layer, slots[2]);
  EXPECT_LT(test::rel_max_err(st, states[2]), 5 * bound(GetParam())) << "state carried across calls";
}

TEST_P(BackendOps, KvAppendSelectAndAttentionDenseAndSparse) {
  be->finish_weights();
  const int64_t Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.sparse_head_dim();
  const int64_t ld = (Hq + 2 * Hkv) * D, q_off = 0, k_off = Hq * D, v_off = k_off + Hkv * D;
  plan(2, 1200, 1123);  // one step of 1023 + 100 rows
  const float scale = float(1 / std::sqrt(double(D)));
  Backend::SelectParams sp;
  sp.block = cfg.sparse.block_size;
  sp.stride = cfg.sparse.kernel_stride;
  sp.topk_total = cfg.sparse.total_topk();
  sp.local_blocks = cfg.sparse.local_blocks();
  sp.init_blocks = cfg.sparse.init_blocks;
  sp.scale = scale;
  ref::SparseParams rp;
  rp.kernel_size = int(cfg.sparse.kernel_size);
  rp.kernel_stride = int(cfg.sparse.kernel_stride);
  rp.block_size = int(cfg.sparse.block_size);
  rp.topk = int(cfg.sparse.topk);
  rp.window_size = int(cfg.sparse.window_size);
  rp.init_blocks = int(cfg.sparse.init_blocks);
  const int a = be->acquire_slot(1200), b = be->acquire_slot(1200);
  // one step: a sparse prefill of 1023 tokens (= 15 mod 16 and = 63 mod 64: the stage-1 off-by-one) beside a dense
  // prefill of 100 tokens
  const Step st = make_step({{1023, 0, 0, true}, {100}}, {a, b});
  be->begin_step(st);
  const int64_t N = st.rows();
  auto hx = bf16_randn(size_t(N * ld), 41);
  Act x = be->scratch(0, N, ld), o = be->scratch(1, N, Hq * D);
  be->write(x, hx);
  const int layer = 0;  // a sparse layer
  be->kv_append(layer, x, k_off, v_off, true);
  be->select(layer, x, q_off, Hq, sp);
  be->attention(o, x, q_off, Hq, layer, scale, sp.block);
  std::vector<float> got;
  be->read(got, o);
  std::vector<int32_t> idx;
  be->read_selection(idx);
  // the sparse sequence
  const StepSeq& s0 = st.seqs[0];
  auto q = cols(hx, ld, 0, s0.n, q_off, Hq * D), k = cols(hx, ld, 0, s0.n, k_off, Hkv * D),
       v = cols(hx, ld, 0, s0.n, v_off, Hkv * D);
  auto want_idx = ref::infllmv2_select(q, int(s0.n), int(Hq), k, int(s0.n), int(Hkv), int(D), scale, rp, false);
  auto blk = ref::infllmv2_block_scores(q, int(s0.n), int(Hq), k, int(s0.n), int(Hkv), int(D), scale, rp, false);
  const int64_t K = sp.topk_total, nb = (s0.n + sp.block - 1) / sp.block;
  int64_t flips = 0;
  for (int64_t t = 0; t < s0.n; ++t)
    for (int64_t g = 0; g < Hkv; ++g) {
      std::vector<int> mine(idx.begin() + (t * Hkv + g) * K, idx.begin() + (t * Hkv + g + 1) * K);
      std::vector<int> ref_row(want_idx.begin() + (g * s0.n + t) * K, want_idx.begin() + (g * s0.n + t + 1) * K);
      if (mine == ref_row) continue;
      ++flips;
      // a block chosen by one side only must be a near tie: within 1e-2 (relative) of the ref's k-th chosen score
      const double* sc = blk.data() + (g * s0.n + t) * nb;
      double kth = 1e300;
      for (int x : ref_row)
        if (x >= 0) kth = std::min(kth, sc[x]);
      for (int x : mine)
        if (x >= 0 && std::find(ref_row.begin(), ref_row.end(), x) == ref_row.end()) {
          EXPECT_LT(std::abs(sc[x] - kth), 1e-2 * std::abs(kth) + 1e-6) << "row " << t << " block " << x;
        }
    }
  if (GetParam() == Device::CPU) {
    EXPECT_EQ(flips, 0) << "the fp32 CPU selection equals the float64 reference";
  }
  EXPECT_LT(double(flips), 0.02 * double(s0.n * Hkv));
  // attention over the blocks the reference selected (the backend's own selection where it differs by a near tie
  // would change the output): compare on the rows whose selection agrees
  auto want_o = ref::block_sparse_attention(q, int(s0.n), int(Hq), k, v, int(s0.n), int(Hkv), int(D), want_idx, 0,
                                            scale, int(sp.block));
  std::vector<double> g_rows, w_rows;
  for (int64_t t = 0; t < s0.n; ++t) {
    bool same = true;
    for (int64_t g = 0; g < Hkv; ++g)
      same &= std::equal(idx.begin() + (t * Hkv + g) * K, idx.begin() + (t * Hkv + g + 1) * K,
                         want_idx.begin() + (g * s0.n + t) * K);
    if (!same) continue;
    for (int64_t c = 0; c < Hq * D; ++c) {
      g_rows.push_back(got[size_t(t * Hq * D + c)]);
      w_rows.push_back(want_o[size_t(t * Hq * D + c)]);
    }
  }
  ASSERT_FALSE(g_rows.empty());
  EXPECT_LT(test::rel_max_err(g_rows, w_rows), bound(GetParam())) << "block-sparse attention";
  // the dense sequence
  const StepSeq& s1 = st.seqs[1];
  auto q1 = cols(hx, ld, s1.row0, s1.n, q_off, Hq * D), k1 = cols(hx, ld, s1.row0, s1.n, k_off, Hkv * D),
       v1 = cols(hx, ld, s1.row0, s1.n, v_off, Hkv * D);
  auto want_d = ref::dense_attention(q1, int(s1.n), int(Hq), k1, v1, int(s1.n), int(Hkv), int(D), 0, scale);
  EXPECT_LT(test::rel_max_err(cols(got, Hq * D, s1.row0, s1.n, 0, Hq * D), want_d), bound(GetParam()))
      << "dense attention beside a sparse sequence";
  EXPECT_EQ(be->cached_tokens(a), 1023);
  EXPECT_EQ(be->cached_tokens(b), 100);
}

INSTANTIATE_TEST_SUITE_P(Every, BackendOps, ::testing::ValuesIn(backends()),
                         [](const ::testing::TestParamInfo<Device>& i) { return std::string(device_name(i.param)); });

}  // namespace
