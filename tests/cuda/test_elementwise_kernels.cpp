// The elementwise, Lightning, GEMM and sampling kernels of the CUDA backend (backend/cuda/kernels.h, gemm.h) against
// the CPU ops on the same inputs rounded to bf16 (the CPU ops are themselves tested against tests/ref's float64 code).
// Inputs are random normal and drawn fresh per case; every output buffer is poisoned (all bits set: NaN in bf16 and
// fp32) before a kernel runs, so an element it should write and did not shows as NaN, and an element it must leave
// alone (padding columns, other heads, unused state slots) is checked to still hold its old bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "sala/backend/backend.h"
#include "sala/backend/cpu/lightning.h"
#include "sala/backend/cpu/ops.h"
#include "sala/backend/cpu/rope.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/gemm.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/lightning_paths.h"
#include "sala/core/dtype.h"
#include "sala/model/model.h"
#include "sala/runtime/sampler.h"
#include "test_util.h"

using namespace sala;
using cuda::bf16;

namespace {

// ---- helpers ------------------------------------------------------------------------------------------------------

// A CUDA call that failed in an earlier test (CudaOps.ErrorsAreThrownNotIgnored's huge cudaMalloc) leaves its error
// as the runtime's last error, which the next launch check would report: each test starts with it cleared.
struct ClearLastCudaError : testing::EmptyTestEventListener {
  void OnTestStart(const testing::TestInfo&) override { (void)cudaGetLastError(); }
};
[[maybe_unused]] const bool g_listener = [] {
  testing::UnitTest::GetInstance()->listeners().Append(new ClearLastCudaError);
  return true;
}();

// SALA_CUDA_TEST_QUICK=1 (the sanitizer runs) shrinks the largest cases: the 2000-token sequence, the decode loop,
// the 1000-row GEMMs and the number of draws.
bool quick() { return std::getenv("SALA_CUDA_TEST_QUICK") != nullptr; }

uint64_t g_seed = 0x51a1;
uint64_t fresh_seed() { return g_seed += 7919; }

std::vector<float> randn(size_t n, float std = 1.0f) { return test::randn(n, fresh_seed(), std); }

// Rounds to bf16 in place and returns the bit patterns: the kernels get the bits, the CPU the (exact) floats.
std::vector<uint16_t> to_bf16(std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    b[i] = f32_to_bf16(v[i]);
    v[i] = bf16_to_f32(b[i]);
  }
  return b;
}
std::vector<float> from_bf16(const std::vector<uint16_t>& b) {
  std::vector<float> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) v[i] = bf16_to_f32(b[i]);
  return v;
}

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)));
  }
  template <class U>
  explicit Dev(const std::vector<U>& h) : Dev(h.size()) {
    static_assert(sizeof(U) == sizeof(T));
    SALA_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void poison() { SALA_CUDA_CHECK(cudaMemset(p, 0xff, n * sizeof(T))); }
  template <class U = T>
  std::vector<U> get() const {
    static_assert(sizeof(U) == sizeof(T));
    std::vector<U> h(n);
    SALA_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  template <class U>
  void put(const std::vector<U>& h) {
    static_assert(sizeof(U) == sizeof(T));
    SALA_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
};
using DevBf = Dev<bf16>;

void sync() { SALA_CUDA_CHECK(cudaDeviceSynchronize()); }

bool is_poison16(uint16_t b) { return b == 0xffff; }
bool is_poison32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u == 0xffffffffu;
}

// Host description of one step's sequences; uploads a StepRows.
struct StepHost {
  std::vector<int32_t> pos, row_seq, cu{0}, slot, pos0, call_len;
  std::vector<uint32_t> flags;
  void add(int n, int p0, int slot_id, uint32_t fl, int clen = 0) {
    for (int t = 0; t < n; ++t) {
      pos.push_back(p0 + t);
      row_seq.push_back(int32_t(slot.size()));
    }
    cu.push_back(cu.back() + n);
    slot.push_back(slot_id);
    pos0.push_back(p0);
    call_len.push_back(clen ? clen : n);
    flags.push_back(fl);
  }
  int N() const { return cu.back(); }
  int S() const { return int(slot.size()); }
};
struct StepDev {
  Dev<int32_t> pos, row_seq, cu, slot, pos0, call_len;
  Dev<uint32_t> flags;
  cuda::StepRows rows;
  explicit StepDev(const StepHost& h)
      : pos(h.pos), row_seq(h.row_seq), cu(h.cu), slot(h.slot), pos0(h.pos0), call_len(h.call_len), flags(h.flags) {
    rows.N = h.N();
    rows.S = h.S();
    rows.pos = pos.p;
    rows.row_seq = row_seq.p;
    rows.cu_seqlens = cu.p;
    rows.slot = slot.p;
    rows.pos0 = pos0.p;
    rows.call_len = call_len.p;
    rows.flags = flags.p;
  }
};

// rel_max_err of the (rows x cols) block of a strided bf16 matrix against a dense fp32 reference; also fails on any
// element still poisoned.
double block_err(const std::vector<uint16_t>& got, int64_t ld, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
                 const std::vector<float>& want, int64_t want_ld, int64_t want_c0, const char* what) {
  std::vector<float> g, w;
  int64_t poisoned = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const uint16_t b = got[size_t((r0 + r) * ld + c0 + c)];
      poisoned += is_poison16(b);
      g.push_back(bf16_to_f32(b));
      w.push_back(want[size_t(r * want_ld + want_c0 + c)]);
    }
  EXPECT_EQ(poisoned, 0) << what << ": elements left unwritten";
  return test::rel_max_err(g, w);
}

// ---- elementwise --------------------------------------------------------------------------------------------------

TEST(CudaElementwise, EmbedMatchesCpu) {
  for (int hidden : {4096, 130, 1}) {
    const int V = 300, N = 37;
    auto table = randn(size_t(V) * hidden);
    auto tb = to_bf16(table);
    std::vector<int32_t> tok(N);
    for (int r = 0; r < N; ++r) tok[size_t(r)] = int32_t((r * 97 + 11) % V);
    tok[0] = 0, tok[1] = V - 1;
    const float scale = 12.0f;
    Dev<uint16_t> dt(tb);
    Dev<int32_t> dtok(tok);
    Dev<float> dh(size_t(N) * hidden);
    dh.poison();
    cuda::embed(dh.p, dtok.p, reinterpret_cast<const bf16*>(dt.p), scale, N, hidden, nullptr);
    sync();
    auto h = dh.get();
    std::vector<float> want(h.size());
    for (int r = 0; r < N; ++r)
      for (int i = 0; i < hidden; ++i)
        want[size_t(r) * hidden + i] = table[size_t(tok[size_t(r)]) * hidden + i] * scale;
    EXPECT_EQ(test::rel_max_err(h, want), 0.0) << "hidden " << hidden;
  }
}

TEST(CudaElementwise, AddRmsNormMatchesCpu) {
  struct Case {
    int hidden, lda, ldo;
    bool add, norm;
  };
  // vector paths (widths and strides multiples of 4) and scalar ones; a only, norm only, both
  for (Case c : {Case{4096, 4096 * 3, 4096 + 8, true, true}, Case{4096, 4096, 4096, true, false},
                 Case{4096, 0, 4100, false, true}, Case{5000, 5003, 5001, true, true}, Case{130, 131, 130, true, true},
                 Case{1, 1, 1, true, true}}) {
    const int N = 19;
    const float a_scale = 1.4f / std::sqrt(32.0f), eps = 1e-6f, post = 1.0f / 16.0f;
    auto h0 = randn(size_t(N) * c.hidden, 3.0f);
    auto a = randn(size_t(N) * std::max(c.lda, 1));
    auto ab = to_bf16(a);
    auto w = randn(size_t(c.hidden), 0.5f);
    auto wb = to_bf16(w);
    Dev<float> dh(h0);
    Dev<uint16_t> da(ab), dw(wb), dout(size_t(N) * c.ldo);
    dout.poison();
    cuda::add_rmsnorm(dh.p, c.add ? reinterpret_cast<const bf16*>(da.p) : nullptr, c.lda, a_scale,
                      c.norm ? reinterpret_cast<bf16*>(dout.p) : nullptr, c.ldo, reinterpret_cast<const bf16*>(dw.p),
                      eps, post, N, c.hidden, nullptr);
    sync();
    std::vector<float> h = h0;
    if (c.add)
      for (int r = 0; r < N; ++r) cpu::axpy(h.data() + size_t(r) * c.hidden, a.data() + size_t(r) * c.lda, a_scale, c.hidden);
    EXPECT_LT(test::rel_max_err(dh.get(), h), 1e-6) << "hidden " << c.hidden;
    auto out = dout.get<uint16_t>();
    if (!c.norm) {
      EXPECT_TRUE(std::all_of(out.begin(), out.end(), is_poison16)) << "out written without a norm";
      continue;
    }
    std::vector<float> want(h.size());
    cpu::rmsnorm(want.data(), h.data(), w.data(), N, c.hidden, eps);
    for (auto& x : want) x *= post;
    EXPECT_LT(block_err(out, c.ldo, 0, N, 0, c.hidden, want, c.hidden, 0, "add_rmsnorm"), 1e-2) << "hidden " << c.hidden;
    for (int r = 0; r < N; ++r)
      for (int i = c.hidden; i < c.ldo; ++i) EXPECT_TRUE(is_poison16(out[size_t(r) * c.ldo + i])) << "padding written";
  }
}

TEST(CudaElementwise, RmsNormRowsMatchesCpu) {
  for (auto [width, ld] : {std::pair{4096, 4104}, std::pair{4096, 4096}, std::pair{1002, 1003}, std::pair{48, 64}}) {
    const int N = 21;
    auto x = randn(size_t(N) * ld, 2.0f);
    auto xb = to_bf16(x);
    auto w = randn(size_t(width));
    auto wb = to_bf16(w);
    Dev<uint16_t> dx(xb), dw(wb);
    cuda::rmsnorm_rows(reinterpret_cast<bf16*>(dx.p), ld, reinterpret_cast<const bf16*>(dw.p), 1e-6f, N, width, nullptr);
    sync();
    auto got = dx.get<uint16_t>();
    std::vector<float> dense(size_t(N) * width), want(dense.size());
    for (int r = 0; r < N; ++r)
      for (int i = 0; i < width; ++i) dense[size_t(r) * width + i] = x[size_t(r) * ld + i];
    cpu::rmsnorm(want.data(), dense.data(), w.data(), N, width, 1e-6f);
    EXPECT_LT(block_err(got, ld, 0, N, 0, width, want, width, 0, "rmsnorm_rows"), 1e-2) << "width " << width;
    for (int r = 0; r < N; ++r)
      for (int i = width; i < ld; ++i) EXPECT_EQ(got[size_t(r) * ld + i], xb[size_t(r) * ld + i]) << "padding changed";
  }
}

// The gated form (Lightning's output norm then its gate z) against the two unfused launches, bitwise, and against
// the CPU's two ops; the vector path (width % 4 == 0) and the scalar one.
TEST(CudaElementwise, RmsNormRowsGateIsNormThenGate) {
  for (auto [width, ldx, ldg] : {std::tuple{4096, 4096, 4096 * 4}, std::tuple{1002, 1003, 1005}}) {
    const int N = 9;
    auto x = randn(size_t(N) * ldx, 2.0f), g = randn(size_t(N) * ldg, 3.0f), w = randn(size_t(width));
    auto xb = to_bf16(x);
    auto gb = to_bf16(g);
    auto wb = to_bf16(w);
    Dev<uint16_t> fused(xb), apart(xb), dg(gb), dw(wb);
    const auto* gp = reinterpret_cast<const bf16*>(dg.p);
    const auto* wp = reinterpret_cast<const bf16*>(dw.p);
    cuda::rmsnorm_rows(reinterpret_cast<bf16*>(fused.p), ldx, wp, 1e-6f, N, width, nullptr, gp, ldg);
    cuda::rmsnorm_rows(reinterpret_cast<bf16*>(apart.p), ldx, wp, 1e-6f, N, width, nullptr);
    cuda::mul_sigmoid(reinterpret_cast<bf16*>(apart.p), ldx, gp, ldg, N, width, nullptr);
    sync();
    const auto got = fused.get<uint16_t>(), want_bits = apart.get<uint16_t>();
    EXPECT_EQ(got, want_bits) << "width " << width << ": fused != rmsnorm_rows + mul_sigmoid";
    std::vector<float> dense(size_t(N) * width), want(dense.size());
    for (int r = 0; r < N; ++r)
      for (int i = 0; i < width; ++i) dense[size_t(r) * width + i] = x[size_t(r) * ldx + i];
    cpu::rmsnorm(want.data(), dense.data(), w.data(), N, width, 1e-6f);
    for (int r = 0; r < N; ++r) cpu::mul_sigmoid(want.data() + size_t(r) * width, g.data() + size_t(r) * ldg, width);
    EXPECT_LT(block_err(got, ldx, 0, N, 0, width, want, width, 0, "rmsnorm_rows gate"), 2e-2) << "width " << width;
    for (int r = 0; r < N; ++r)
      for (int i = width; i < ldx; ++i) ASSERT_EQ(got[size_t(r) * ldx + i], xb[size_t(r) * ldx + i]) << "outside width";
  }
}

// SwiGLU over a gate|up product: the gate half then the up half (silu_mul), or the rows interleaved, (gate i, up i)
// side by side (silu_mul_pairs: SALA_CUDA_GU_PAIRS); the vector path (inter % 4 == 0) and the scalar one.
TEST(CudaElementwise, SiluMulMatchesCpu) {
  for (bool pairs : {false, true})
    for (int inter : {16384, 1001, 3}) {
      const int N = 33;
      auto gu = randn(size_t(N) * 2 * inter, 3.0f);
      auto gb = to_bf16(gu);
      Dev<uint16_t> dgu(gb), dout(size_t(N) * inter);
      dout.poison();
      (pairs ? cuda::silu_mul_pairs : cuda::silu_mul)(reinterpret_cast<bf16*>(dout.p),
                                                      reinterpret_cast<const bf16*>(dgu.p), N, inter, nullptr);
      sync();
      std::vector<float> g(static_cast<size_t>(inter)), u(static_cast<size_t>(inter)), want(size_t(N) * inter);
      for (int r = 0; r < N; ++r) {
        const float* row = gu.data() + size_t(r) * 2 * inter;
        for (int i = 0; i < inter; ++i) {
          g[size_t(i)] = pairs ? row[2 * i] : row[i];
          u[size_t(i)] = pairs ? row[2 * i + 1] : row[inter + i];
        }
        cpu::silu_mul(want.data() + size_t(r) * inter, g.data(), u.data(), inter);
      }
      EXPECT_LT(block_err(dout.get<uint16_t>(), inter, 0, N, 0, inter, want, inter, 0, "silu_mul"), 1e-2)
          << "inter " << inter << (pairs ? " (pairs)" : "");
    }
}

TEST(CudaElementwise, MulSigmoidMatchesCpu) {
  // x: a column slice of a wider buffer (an attention output inside a fused layout), g: another one
  for (auto [width, ldx, ldg] : {std::tuple{4096, 8192, 4096 * 4}, std::tuple{777, 780, 779}, std::tuple{8, 8, 8}}) {
    const int N = 17;
    auto x = randn(size_t(N) * ldx), g = randn(size_t(N) * ldg, 3.0f);
    auto xb = to_bf16(x);
    auto gb = to_bf16(g);
    Dev<uint16_t> dx(xb), dg(gb);
    cuda::mul_sigmoid(reinterpret_cast<bf16*>(dx.p), ldx, reinterpret_cast<const bf16*>(dg.p), ldg, N, width, nullptr);
    sync();
    auto got = dx.get<uint16_t>();
    std::vector<float> want(size_t(N) * width);
    for (int r = 0; r < N; ++r) {
      std::copy_n(x.data() + size_t(r) * ldx, width, want.data() + size_t(r) * width);
      cpu::mul_sigmoid(want.data() + size_t(r) * width, g.data() + size_t(r) * ldg, width);
    }
    EXPECT_LT(block_err(got, ldx, 0, N, 0, width, want, width, 0, "mul_sigmoid"), 1e-2) << "width " << width;
    for (int r = 0; r < N; ++r)
      for (int i = width; i < ldx; ++i) ASSERT_EQ(got[size_t(r) * ldx + i], xb[size_t(r) * ldx + i]) << "outside width";
  }
}

// RoPE tables as model/rope.cpp builds them (theta 10000), LongRoPE factors when `longrope`.
RopeTables rope_tables(int D, bool longrope) {
  RopeTables t;
  t.dim = D;
  for (int i = 0; i < D / 2; ++i) t.inv_freq.push_back(1.0f / std::pow(10000.0f, float(2 * i) / float(D)));
  if (longrope) {
    for (int i = 0; i < D / 2; ++i) {
      t.inv_ext_short.push_back(1.0f / (1.0f + 0.05f * float(i)));
      t.inv_ext_long.push_back(1.0f / (1.0f + 1.7f * float(i)));
    }
    t.long_from = 1000;
    t.mscale = 1.19f;
  }
  return t;
}

TEST(CudaElementwise, QkNormRopeMatchesCpu) {
  struct Case {
    int Hq, Hkv, D;
    bool norm, rope, longrope;
    int shift = 0;  // odd column offsets: the scalar path
  };
  for (Case c : {Case{32, 32, 128, true, true, false}, Case{16, 1, 16, true, true, false},
                 Case{8, 2, 48, false, true, true}, Case{32, 2, 128, true, false, false},
                 Case{4, 4, 256, true, true, true}, Case{32, 2, 128, true, true, true, 1},
                 Case{6, 3, 6, true, true, false, 0}}) {
    const int D = c.D, qw = c.Hq * D, kw = c.Hkv * D, ld = qw + 2 * kw + 8 + c.shift, q_off = c.shift,
              k_off = qw + c.shift;
    // three sequences: a short call, one whose call takes the long factors, a decode row at a large position (and a
    // longer one for two of the cases)
    StepHost sh;
    sh.add(5, 0, 0, 0);
    sh.add(7, 99990, 1, c.longrope ? cuda::kSeqRopeLong : 0);
    sh.add(1, 262143, 2, 0);
    if (c.shift == 0 && c.D == 128) sh.add(250, 40, 3, 0);  // >= 256 rows: one block per row, else one per 8 heads
    const int N = sh.N();
    auto x = randn(size_t(N) * ld, 2.0f);
    auto xb = to_bf16(x);
    auto qn = randn(size_t(D), 0.5f), kn = randn(size_t(D), 0.5f);
    auto qnb = to_bf16(qn), knb = to_bf16(kn);
    const RopeTables rt = rope_tables(D, c.longrope);
    std::vector<float> ext = rt.inv_ext_short;
    ext.insert(ext.end(), rt.inv_ext_long.begin(), rt.inv_ext_long.end());
    Dev<uint16_t> dx(xb), dqn(qnb), dkn(knb);
    Dev<float> dfreq(rt.inv_freq), dext(ext);
    StepDev sd(sh);
    cuda::RopeArgs ra;
    if (c.rope) {
      ra.inv_freq = dfreq.p;
      ra.inv_ext = c.longrope ? dext.p : nullptr;
      ra.mscale = rt.mscale;
    }
    cuda::qk_norm_rope(reinterpret_cast<bf16*>(dx.p), ld, q_off, c.Hq, k_off, c.Hkv, D,
                       c.norm ? reinterpret_cast<const bf16*>(dqn.p) : nullptr,
                       c.norm ? reinterpret_cast<const bf16*>(dkn.p) : nullptr, 1e-6f, ra, sd.rows, nullptr);
    sync();
    auto got = dx.get<uint16_t>();
    // CPU: per-head rmsnorm, then rope_apply at the row's position with a call length that selects the same factors
    std::vector<float> want(size_t(N) * (qw + kw));
    for (int r = 0; r < N; ++r) {
      float* q = want.data() + size_t(r) * (qw + kw);
      float* k = q + qw;
      std::copy_n(x.data() + size_t(r) * ld + q_off, qw, q);
      std::copy_n(x.data() + size_t(r) * ld + k_off, kw, k);
      if (c.norm) {
        cpu::rmsnorm(q, q, qn.data(), c.Hq, D, 1e-6f);
        cpu::rmsnorm(k, k, kn.data(), c.Hkv, D, 1e-6f);
      }
      if (c.rope) {
        const bool is_long = sh.flags[size_t(sh.row_seq[size_t(r)])] & cuda::kSeqRopeLong;
        const int64_t seq_len = is_long ? rt.long_from + 1 : 1;
        cpu::rope_apply(q, 1, c.Hq, rt, sh.pos[size_t(r)], seq_len);
        cpu::rope_apply(k, 1, c.Hkv, rt, sh.pos[size_t(r)], seq_len);
      }
    }
    const std::string tag = "Hq " + std::to_string(c.Hq) + " Hkv " + std::to_string(c.Hkv) + " D " + std::to_string(D);
    EXPECT_LT(block_err(got, ld, 0, N, q_off, qw, want, qw + kw, 0, "q"), 1e-2) << tag;
    EXPECT_LT(block_err(got, ld, 0, N, k_off, kw, want, qw + kw, qw, "k"), 1e-2) << tag;
    for (int r = 0; r < N; ++r)
      for (int i = 0; i < ld; ++i)
        if (i < q_off || i >= k_off + kw) {
          ASSERT_EQ(got[size_t(r) * ld + i], xb[size_t(r) * ld + i]) << "v changed, " << tag;
        }
  }
}

// ---- Lightning ----------------------------------------------------------------------------------------------------

struct LightningSeq {
  int T;
  bool fresh;
  int split = -1;  // two calls: rows [0, split) then [split, T) (continuing); -1: one call
};

struct LightningCase {
  int H, Hkv, D;
  std::vector<LightningSeq> seqs;
  cuda::LightningPath path = cuda::LightningPath::Auto;
};

// Runs one case on the GPU and on the CPU (lightning_chunked per sequence, k/v repeated for GQA) and compares the
// outputs (bf16, 1e-2) and the final states (fp32, 1e-3). State slots are assigned in reverse with slot 0 unused (and
// checked untouched); fresh sequences start from a poisoned (NaN) slot, which the kernel must zero.
void run_lightning(const LightningCase& c, const std::string& tag) {
  const int H = c.H, Hkv = c.Hkv, D = c.D, S = int(c.seqs.size());
  const int qw = H * D, kw = Hkv * D, ld = qw + 2 * kw + 8, q_off = 0, k_off = qw, v_off = qw + kw;
  const int ldo = qw + 8;
  const int64_t hdd = int64_t(H) * D * D, stride = hdd + 4;
  int N = 0;
  for (auto& s : c.seqs) N += s.T;
  auto x = randn(size_t(N) * ld);
  auto xb = to_bf16(x);
  std::vector<float> g;
  for (double sl : alibi_slopes(H)) g.push_back(float(-sl));
  const float scale = 1.0f / std::sqrt(float(D));

  const std::vector<float> st0 = randn(size_t((S + 1) * stride), 0.3f);
  std::vector<float> st_dev = st0;
  std::vector<int32_t> slot(static_cast<size_t>(S)), row0(static_cast<size_t>(S));
  for (int s = 0, r = 0; s < S; ++s) {
    slot[size_t(s)] = S - s;
    row0[size_t(s)] = r;
    r += c.seqs[size_t(s)].T;
    if (c.seqs[size_t(s)].fresh)
      std::fill_n(st_dev.begin() + slot[size_t(s)] * stride, hdd, std::numeric_limits<float>::quiet_NaN());
  }
  Dev<uint16_t> dx(xb), dout(size_t(N) * ldo);
  Dev<float> dst(st_dev), dg(g);
  dout.poison();

  // The rows of each call, packed in sequence order (call 0: the first part, call 1: the rest).
  bool two_calls = false;
  for (auto& s : c.seqs) two_calls |= s.split >= 0;
  for (int call = 0; call < (two_calls ? 2 : 1); ++call) {
    StepHost sh;
    std::vector<uint16_t> xc;
    std::vector<int> src_rows;
    for (int s = 0; s < S; ++s) {
      const auto& q = c.seqs[size_t(s)];
      const int a = call == 0 ? 0 : q.split, b = (two_calls && call == 0 && q.split >= 0) ? q.split : q.T;
      const int n = (call == 1 && q.split < 0) ? 0 : b - a;
      const uint32_t fl = (call == 0 && q.fresh) ? cuda::kSeqFresh : 0;
      sh.add(n, a, slot[size_t(s)], fl);
      for (int t = 0; t < n; ++t) src_rows.push_back(row0[size_t(s)] + a + t);
    }
    for (int r : src_rows) xc.insert(xc.end(), xb.begin() + size_t(r) * ld, xb.begin() + size_t(r + 1) * ld);
    Dev<uint16_t> dxc(xc), doc(std::max<size_t>(src_rows.size(), 1) * ldo);
    doc.poison();
    StepDev sd(sh);
    cuda::lightning_path(c.path, reinterpret_cast<bf16*>(doc.p), ldo, reinterpret_cast<const bf16*>(dxc.p), ld, q_off,
                         k_off, v_off, dst.p, stride, dg.p, scale, H, Hkv, D, sd.rows, nullptr);
    sync();
    auto oc = doc.get<uint16_t>();
    // scatter back into the whole output (rows in the original order)
    std::vector<uint16_t> all = dout.get<uint16_t>();
    for (size_t i = 0; i < src_rows.size(); ++i)
      std::copy_n(oc.begin() + i * ldo, ldo, all.begin() + size_t(src_rows[i]) * ldo);
    dout.put(all);
  }
  auto o = dout.get<uint16_t>();
  auto st = dst.get();

  std::vector<float> st_cpu = st0;
  for (int s = 0; s < S; ++s) {
    const auto& q = c.seqs[size_t(s)];
    const int T = q.T;
    float* S_cpu = st_cpu.data() + slot[size_t(s)] * stride;
    if (q.fresh) std::fill_n(S_cpu, hdd, 0.0f);
    std::vector<float> qq(size_t(T) * qw), kk(size_t(T) * qw), vv(size_t(T) * qw), oo(size_t(T) * qw);
    for (int t = 0; t < T; ++t) {
      const float* xr = x.data() + size_t(row0[size_t(s)] + t) * ld;
      for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) {
          const int hk = h / (H / Hkv);
          qq[size_t(t) * qw + h * D + d] = xr[q_off + h * D + d];
          kk[size_t(t) * qw + h * D + d] = xr[k_off + hk * D + d];
          vv[size_t(t) * qw + h * D + d] = xr[v_off + hk * D + d];
        }
    }
    if (T > 0) cpu::lightning_chunked(oo.data(), qq.data(), kk.data(), vv.data(), S_cpu, g.data(), scale, T, H, D, 64);
    const std::string where = tag + ", sequence " + std::to_string(s) + " (T " + std::to_string(T) + ")";
    if (T > 0) {
      EXPECT_LT(block_err(o, ldo, row0[size_t(s)], T, 0, qw, oo, qw, 0, "lightning o"), 1e-2) << where;
    }
    std::vector<float> sg(st.begin() + slot[size_t(s)] * stride, st.begin() + slot[size_t(s)] * stride + hdd);
    std::vector<float> sc(S_cpu, S_cpu + hdd);
    EXPECT_LT(test::rel_max_err(sg, sc), 1e-3) << where << ": state";
    for (int64_t i = hdd; i < stride; ++i)
      EXPECT_EQ(std::memcmp(&st[size_t(slot[size_t(s)] * stride + i)], &st0[size_t(slot[size_t(s)] * stride + i)], 4), 0)
          << where << ": state padding changed";
  }
  EXPECT_EQ(std::memcmp(st.data(), st0.data(), size_t(stride) * 4), 0) << tag << ": unused slot 0 changed";
  for (int r = 0; r < N; ++r)
    for (int i = qw; i < ldo; ++i) ASSERT_TRUE(is_poison16(o[size_t(r) * ldo + i])) << tag << ": o padding written";
}

const char* path_name(cuda::LightningPath p) {
  switch (p) {
    case cuda::LightningPath::Auto: return "auto";
    case cuda::LightningPath::Recurrent: return "recurrent";
    case cuda::LightningPath::Chunk16: return "chunk16";
    case cuda::LightningPath::Chunk32: return "chunk32";
    case cuda::LightningPath::Chunk64: return "chunk64";
  }
  return "?";
}

std::vector<LightningSeq> varlen() {
  return {{1, true}, {63, false}, {64, true}, {65, false}, {200, true}, {quick() ? 300 : 2000, false}};
}

TEST(CudaLightning, VarlenBatchMatchesCpuOnEveryPath) {
  for (auto p : {cuda::LightningPath::Auto, cuda::LightningPath::Chunk16, cuda::LightningPath::Chunk64,
                 cuda::LightningPath::Recurrent}) {
    run_lightning({32, 32, 128, varlen(), p}, std::string("H 32 D 128, ") + path_name(p));
  }
}

TEST(CudaLightning, PrefillInTwoCallsEqualsOneCall) {
  // splits inside a chunk, on a chunk boundary, and a sequence with no rows in the second call
  run_lightning({32, 32, 128, {{65, true, 33}, {200, false, 64}, {quick() ? 300 : 2000, true, 177}, {1, false, 1},
                               {5, true, 0}}},
                "two calls");
}

TEST(CudaLightning, GqaAndSmallHeadsMatchCpu) {
  const std::vector<LightningSeq> seqs = {{1, true}, {64, false}, {130, true}, {3, false}};
  run_lightning({16, 2, 128, seqs}, "GQA H 16 Hkv 2 D 128");
  run_lightning({16, 1, 16, seqs}, "sala-tiny H 16 Hkv 1 D 16");
  run_lightning({16, 16, 48, seqs}, "sala-100m H 16 D 48");
  run_lightning({8, 4, 48, seqs, cuda::LightningPath::Recurrent}, "H 8 Hkv 4 D 48 recurrent");
}

TEST(CudaLightning, DecodeStepsAfterPrefillMatchCpu) {
  // Prefill 5 sequences of different lengths (chunked path), then 100 decode steps of all five (N == S: the recurrent
  // kernel), then one mixed step (one sequence with 10 rows, the others 1: the chunked kernel with one-row sequences).
  const int H = 32, Hkv = 32, D = 128, S = 5, steps = quick() ? 10 : 100;
  const int qw = H * D, ld = 3 * qw, ldo = qw;
  const int64_t hdd = int64_t(H) * D * D;
  std::vector<float> g;
  for (double sl : alibi_slopes(H)) g.push_back(float(-sl));
  const float scale = 1.0f / std::sqrt(float(D));
  std::vector<float> st_cpu(size_t(S) * hdd, 0.0f);
  Dev<float> dst(st_cpu.size()), dg(g);
  dst.poison();
  auto run_step = [&](const std::vector<int>& rows_per_seq, bool fresh, const std::string& tag) {
    StepHost sh;
    for (int s = 0; s < S; ++s) sh.add(rows_per_seq[size_t(s)], 0, s, fresh ? cuda::kSeqFresh : 0);
    const int N = sh.N();
    auto x = randn(size_t(N) * ld);
    auto xb = to_bf16(x);
    Dev<uint16_t> dx(xb), dout(size_t(N) * ldo);
    dout.poison();
    StepDev sd(sh);
    cuda::lightning(reinterpret_cast<bf16*>(dout.p), ldo, reinterpret_cast<const bf16*>(dx.p), ld, 0, qw, 2 * qw,
                    dst.p, hdd, dg.p, scale, H, Hkv, D, sd.rows, nullptr);
    sync();
    auto o = dout.get<uint16_t>();
    for (int s = 0; s < S; ++s) {
      const int T = rows_per_seq[size_t(s)], r0 = sh.cu[size_t(s)];
      std::vector<float> q(size_t(T) * qw), k(q.size()), v(q.size()), oo(q.size());
      for (int t = 0; t < T; ++t)
        for (int i = 0; i < qw; ++i) {
          q[size_t(t) * qw + i] = x[size_t(r0 + t) * ld + i];
          k[size_t(t) * qw + i] = x[size_t(r0 + t) * ld + qw + i];
          v[size_t(t) * qw + i] = x[size_t(r0 + t) * ld + 2 * qw + i];
        }
      float* Sc = st_cpu.data() + size_t(s) * hdd;
      if (T == 1)
        cpu::lightning_recurrent(oo.data(), q.data(), k.data(), v.data(), Sc, g.data(), scale, 1, H, D);
      else
        cpu::lightning_chunked(oo.data(), q.data(), k.data(), v.data(), Sc, g.data(), scale, T, H, D, 64);
      ASSERT_LT(block_err(o, ldo, r0, T, 0, qw, oo, qw, 0, "o"), 1e-2) << tag << " sequence " << s;
    }
  };
  run_step({100, 37, 64, 1, 300}, true, "prefill");
  for (int t = 0; t < steps; ++t) run_step({1, 1, 1, 1, 1}, false, "decode step " + std::to_string(t));
  run_step({1, 10, 1, 1, 1}, false, "mixed step");
  for (int t = 0; t < 20; ++t) run_step({1, 1, 1, 1, 1}, false, "decode step " + std::to_string(steps + t));
  EXPECT_LT(test::rel_max_err(dst.get(), st_cpu), 1e-3) << "state after " << steps + 21 << " steps";
}

TEST(CudaLightning, ZeroRowFreshSequenceZeroesItsState) {
  const int H = 4, D = 16;
  const int64_t hdd = int64_t(H) * D * D;
  StepHost sh;
  sh.add(0, 0, 0, cuda::kSeqFresh);  // fresh, no rows: zeroed
  sh.add(0, 0, 1, 0);                // continuing, no rows: untouched
  sh.add(2, 0, 2, cuda::kSeqFresh);
  StepDev sd(sh);
  auto st0 = randn(size_t(3 * hdd));
  Dev<float> dst(st0), dg(std::vector<float>(size_t(H), -0.1f));
  auto x = randn(size_t(2) * 3 * H * D);
  auto xb = to_bf16(x);
  Dev<uint16_t> dx(xb), dout(size_t(2) * H * D);
  for (auto p : {cuda::LightningPath::Recurrent, cuda::LightningPath::Chunk32}) {
    dst.put(st0);
    cuda::lightning_path(p, reinterpret_cast<bf16*>(dout.p), H * D, reinterpret_cast<const bf16*>(dx.p), 3 * H * D, 0,
                         H * D, 2 * H * D, dst.p, hdd, dg.p, 0.25f, H, H, D, sd.rows, nullptr);
    sync();
    auto st = dst.get();
    EXPECT_TRUE(std::all_of(st.begin(), st.begin() + hdd, [](float f) { return f == 0.0f; })) << path_name(p);
    EXPECT_EQ(std::memcmp(st.data() + hdd, st0.data() + hdd, size_t(hdd) * 4), 0) << path_name(p);
  }
}

// ---- GEMM ---------------------------------------------------------------------------------------------------------

// y = x w^T through `product` (Gemm::matmul / matmul_f32, or gemv) against the CPU matmul of the same bf16 values;
// the padding of y's rows past `out` must stay unwritten.
using Product = std::function<void(void* y, const bf16* x, const bf16* w)>;
void check_product(const Product& product, int N, int in, int out, int ldx, int ldy, bool f32, const std::string& who) {
  auto x = randn(size_t(N) * ldx), w = randn(size_t(out) * in, 0.05f);
  auto xb = to_bf16(x);
  auto wb = to_bf16(w);
  std::vector<float> xd(size_t(N) * in);
  for (int r = 0; r < N; ++r) std::copy_n(x.data() + size_t(r) * ldx, in, xd.data() + size_t(r) * in);
  std::vector<float> want(size_t(N) * out);
  cpu::matmul(want.data(), xd.data(), w.data(), N, in, out);
  Dev<uint16_t> dx(xb), dw(wb);
  const std::string tag = who + " N " + std::to_string(N) + " in " + std::to_string(in) + " out " + std::to_string(out) +
                          " ldx " + std::to_string(ldx) + " ldy " + std::to_string(ldy) + (f32 ? " f32" : " bf16");
  if (f32) {
    Dev<float> dy(size_t(N) * ldy);
    dy.poison();
    product(dy.p, reinterpret_cast<const bf16*>(dx.p), reinterpret_cast<const bf16*>(dw.p));
    sync();
    auto y = dy.get();
    std::vector<float> got;
    for (int r = 0; r < N; ++r) {
      got.insert(got.end(), y.begin() + size_t(r) * ldy, y.begin() + size_t(r) * ldy + out);
      for (int i = out; i < ldy; ++i) ASSERT_TRUE(is_poison32(y[size_t(r) * ldy + i])) << tag << ": padding written";
    }
    EXPECT_TRUE(std::none_of(got.begin(), got.end(), [](float f) { return std::isnan(f); })) << tag;
    EXPECT_LT(test::rel_max_err(got, want), 1e-3) << tag;
  } else {
    Dev<uint16_t> dy(size_t(N) * ldy);
    dy.poison();
    product(dy.p, reinterpret_cast<const bf16*>(dx.p), reinterpret_cast<const bf16*>(dw.p));
    sync();
    auto y = dy.get<uint16_t>();
    EXPECT_LT(block_err(y, ldy, 0, N, 0, out, want, out, 0, "gemm"), 1e-2) << tag;
    for (int r = 0; r < N; ++r)
      for (int i = out; i < ldy; ++i) ASSERT_TRUE(is_poison16(y[size_t(r) * ldy + i])) << tag << ": padding written";
  }
}

void check_gemm(cuda::Gemm& gemm, int N, int in, int out, int ldx, int ldy, bool f32) {
  check_product(
      [&](void* y, const bf16* x, const bf16* w) {
        if (f32)
          gemm.matmul_f32(static_cast<float*>(y), ldy, x, ldx, w, N, in, out, nullptr);
        else
          gemm.matmul(static_cast<bf16*>(y), ldy, x, ldx, w, N, in, out, nullptr);
      },
      N, in, out, ldx, ldy, f32, "gemm");
}

// every version that takes the shape (gemv_supported); at least one must
void check_gemv(int N, int in, int out, int ldx, int ldy, bool f32) {
  Dev<uint16_t> probe(8);  // an aligned address: the versions differ by N and in only
  int ran = 0;
  for (int v = 1; v <= cuda::kGemvVersions; ++v) {
    if (!cuda::gemv_supported(probe.p, ldx, probe.p, N, in, v)) continue;
    ++ran;
    check_product(
        [&](void* y, const bf16* x, const bf16* w) { cuda::gemv(y, f32, ldy, x, ldx, w, N, in, out, nullptr, v); },
        N, in, out, ldx, ldy, f32, "gemv v" + std::to_string(v));
  }
  EXPECT_GT(ran, 0) << "no gemv version takes N " << N << " in " << in;
}

// sala's decode product on its own (Gemm uses it only where it wins the timing): every row count it takes, the
// unrolled and the tail loops (in = 16384: 8 chunks per lane in flight; 1032: a tail only), strided x, y a slice of
// wider rows, fp32 logits, out not a multiple of the 8 warps of a CTA (nor of v2's row pairs, v3's two rows per CTA), in = 1032
// (129 chunks: v3's quarters of unequal length); every version.
TEST(CudaGemm, GemvMatchesCpu) {
  for (int N = 1; N <= cuda::kGemvMaxRows; ++N) {
    check_gemv(N, 4096, 1000, 4096, 1000, false);
    check_gemv(N, 1032, 77, 1032 + 16, 77 + 3, N % 2 == 0);
  }
  check_gemv(1, 16384, 300, 16384, 300, false);
  check_gemv(3, 16384, 13, 16384, 16, true);
}

// The tensor-core versions (4-12) up to 32 rows: every n8 tile count and a partial tile (N 9, 17, 31), the K split
// across a cluster (in 16384 and 4096 over a few row tiles: split up to 8), a split of unequal ranges (in 1056: 33
// pieces of 32 over 4) whose last stage is partly past `in` for the tiles of 128 and 256 k a stage,
// no split (out 4096 at in 96: one stage, mostly zeros, for the 128- and 256-k tiles), rows past out (1000, 77, 300:
// partial row tiles), strided x, y a slice of wider rows, fp32 logits.
TEST(CudaGemm, GemvTensorCoresMatchCpu) {
  for (int N : {1, 8, 9, 16, 17, 24, 31, 32}) {
    check_gemv(N, 4096, 1000, 4096, 1000, false);
    check_gemv(N, 1056, 77, 1056 + 16, 77 + 3, N % 2 == 0);
  }
  check_gemv(32, 16384, 300, 16384, 300, false);
  check_gemv(13, 16384, 13, 16384, 16, true);
  check_gemv(32, 96, 4096, 96, 4096, false);
}

// A few small shapes of the tensor-core versions, for compute-sanitizer (racecheck over the whole test above takes
// minutes): a 4-way split of unequal ranges, the last stage partly past `in` (1056), partial n8 tiles and row tiles,
// no split (in 96: one stage, mostly zeros).
TEST(CudaGemm, GemvTensorCoresSmallShapes) {
  check_gemv(9, 1056, 77, 1056 + 16, 77 + 3, true);
  check_gemv(32, 1056, 40, 1056, 40, false);
  check_gemv(3, 96, 130, 96, 130, false);
}

// The SwiGLU product (gemv_silu, Gemm::matmul_silu): m = silu(gate) * up over a fused gate|up matrix. Per gemv
// version, bitwise the plain gemv of the same version followed by silu_mul (the fused epilogue must round as the
// store between them does), and within bf16 rounding of the CPU; Gemm's tuned choice (gemv or cuBLASLt + silu_mul)
// against the CPU at decode sizes (N = 32: the tensor-core versions) and at a prefill size; all of it also over the
// rows interleaved (gate 0, up 0, gate 1, ...). in = 1032: v3's unequal quarters (no tensor-core version: not a
// multiple of 32); 1056: the tensor-core split of unequal ranges; inter = 77: a tail of the 8 warps (v2: 16 pairs)
// of a CTA; 300: three row tiles of the tensor-core form, the last partial.
TEST(CudaGemm, SiluProductIsProductThenSiluMul) {
  cuda::Gemm gemm;
  for (auto [in, inter] : {std::pair{4096, 1000}, std::pair{1032, 77}, std::pair{1056, 300}}) {
    const int out = 2 * inter;
    for (int N : {1, 2, 5, 8, 32, 77}) {
      auto x = randn(size_t(N) * in), w = randn(size_t(out) * in, 0.05f);
      auto xb = to_bf16(x);
      auto wb = to_bf16(w);
      Dev<uint16_t> dx(xb), dw(wb), dgu(size_t(N) * out), dm(size_t(N) * inter), dref(size_t(N) * inter);
      const auto* xp = reinterpret_cast<const bf16*>(dx.p);
      std::vector<float> gu(size_t(N) * out), want(size_t(N) * inter);
      cpu::matmul(gu.data(), x.data(), w.data(), N, in, out);
      for (int r = 0; r < N; ++r)
        cpu::silu_mul(want.data() + size_t(r) * inter, gu.data() + size_t(r) * out, gu.data() + size_t(r) * out + inter,
                      inter);
      // the matrix stacked (gate rows, then up rows) and interleaved (gate 0, up 0, gate 1, ...: SALA_CUDA_GU_PAIRS)
      std::vector<uint16_t> wi(wb.size());
      for (int r = 0; r < inter; ++r)
        for (int h = 0; h < 2; ++h)
          std::copy_n(wb.data() + (size_t(h) * inter + r) * in, in, wi.data() + (size_t(2 * r + h)) * in);
      Dev<uint16_t> dwi(wi);
      for (bool pairs : {false, true}) {
        const auto* wl = reinterpret_cast<const bf16*>(pairs ? dwi.p : dw.p);
        const auto unfused_silu = pairs ? cuda::silu_mul_pairs : cuda::silu_mul;
        const std::string tag = "N " + std::to_string(N) + " in " + std::to_string(in) + " inter " +
                                std::to_string(inter) + (pairs ? " (pairs)" : "");
        for (int v = 1; v <= cuda::kGemvVersions; ++v) {
          if (!cuda::gemv_supported(xp, in, wl, N, in, v)) continue;  // in 1032: CUDA-core versions only; N 32: mma
          dm.poison();
          cuda::gemv_silu(reinterpret_cast<bf16*>(dm.p), inter, xp, in, wl, N, in, out, nullptr, v, pairs);
          cuda::gemv(dgu.p, false, out, xp, in, wl, N, in, out, nullptr, v);
          unfused_silu(reinterpret_cast<bf16*>(dref.p), reinterpret_cast<const bf16*>(dgu.p), N, inter, nullptr);
          sync();
          const auto got = dm.get<uint16_t>();
          EXPECT_EQ(got, dref.get<uint16_t>()) << tag << " v" << v << ": gemv_silu != gemv + its silu_mul";
          EXPECT_LT(block_err(got, inter, 0, N, 0, inter, want, inter, 0, "gemv_silu"), 2e-2) << tag << " v" << v;
        }
        dm.poison();
        gemm.matmul_silu(reinterpret_cast<bf16*>(dm.p), reinterpret_cast<bf16*>(dgu.p), xp, in, wl, N, in, out, nullptr,
                         pairs);
        sync();
        EXPECT_LT(block_err(dm.get<uint16_t>(), inter, 0, N, 0, inter, want, inter, 0, "matmul_silu"), 2e-2) << tag;
      }
    }
  }
  Dev<uint16_t> d(16);
  auto* p = reinterpret_cast<bf16*>(d.p);
  EXPECT_THROW(gemm.matmul_silu(p, p, p, 8, p, 1, 8, 3, nullptr), InternalError);  // an odd gate|up width
}

TEST(CudaGemm, GemvRefusesWhatItCannotRead) {
  Dev<uint16_t> d(size_t(8) * 4096);
  auto* p = reinterpret_cast<bf16*>(d.p);
  EXPECT_FALSE(cuda::gemv_supported(p, 300, p, 1, 300));  // in not a multiple of 8
  EXPECT_FALSE(cuda::gemv_supported(p + 1, 4096, p, 1, 4096));  // x not 16-byte aligned
  EXPECT_FALSE(cuda::gemv_supported(p, 4096, p, 9, 4096));  // more rows than it takes
  EXPECT_TRUE(cuda::gemv_supported(p, 4096, p, 8, 4096));
  EXPECT_TRUE(cuda::gemv_supported(p, 4096, p, 32, 4096, 4));  // the tensor-core versions take up to 32 rows
  EXPECT_FALSE(cuda::gemv_supported(p, 4096, p, 33, 4096, 4));
  EXPECT_FALSE(cuda::gemv_supported(p, 1032, p, 1, 1032, 5));  // ... of a multiple of 32
  EXPECT_FALSE(cuda::gemv_supported(p, 4096, p, 1, 4096, cuda::kGemvVersions + 1));  // no such version
  EXPECT_TRUE(cuda::gemv_supported(p, 4096, p, 32, 4096, cuda::kGemvVersions));
  EXPECT_THROW(cuda::gemv(p, false, 4, p, 1032, p, 2, 1032, 4, nullptr, 4), InternalError);
  EXPECT_THROW(cuda::gemv(p, false, 4, p, 300, p, 1, 300, 4, nullptr), InternalError);
}

TEST(CudaGemm, MatchesCpuOnAwkwardShapes) {
  cuda::Gemm gemm;
  const std::vector<std::pair<int, int>> shapes = {{256, 300}, {1000, 2050}, {4096, 1000}, {777, 4096}};
  size_t planned = 0;
  for (int N : {1, 3, 77, 1000})
    for (auto [in, out] : shapes) {
      if (quick() && N == 1000) continue;
      check_gemm(gemm, N, in, out, in, out, false);
      ++planned;
      if (N == 77) {
        check_gemm(gemm, N, in, out, in + 8, out + 16, false);  // strided x, y a column slice of a wider buffer
        check_gemm(gemm, N, in, out, in, out, true);            // fp32 logits
        planned += 2;
      }
    }
  EXPECT_EQ(gemm.cached_plans(), planned);
  check_gemm(gemm, 77, 256, 300, 256, 300, false);  // the same shape again: served from the cache
  EXPECT_EQ(gemm.cached_plans(), planned);
}

TEST(CudaGemm, OddStridesAndUnalignedRows) {
  cuda::Gemm gemm;
  check_gemm(gemm, 3, 300, 257, 303, 261, false);  // row strides that are not multiples of 8 elements
  check_gemm(gemm, 5, 1001, 999, 1001, 1001, true);
}

TEST(CudaGemm, BadShapeIsAnInternalError) {
  cuda::Gemm gemm;
  Dev<uint16_t> d(16);
  auto* p = reinterpret_cast<bf16*>(d.p);
  EXPECT_THROW(gemm.matmul(p, 4, p, 2, p, 1, 4, 4, nullptr), InternalError);  // ldx < in
}

// ---- sampling -----------------------------------------------------------------------------------------------------

struct SampleRun {
  std::vector<int32_t> ids;
  std::vector<float> logits_after;
};

SampleRun run_sample(const std::vector<float>& logits, int rows, int V, const std::vector<int32_t>& hist, int hist_len,
                     const cuda::SampleArgs& a) {
  Dev<float> dl(logits);
  Dev<int32_t> dh(hist), dout(static_cast<size_t>(rows));
  dout.poison();
  Dev<unsigned char> ws(cuda::sample_workspace_bytes(rows, V));
  cuda::sample(dout.p, dl.p, rows, V, hist_len ? dh.p : nullptr, hist_len, hist_len, a, ws.p, nullptr);
  sync();
  return {dout.get(), dl.get()};
}

TEST(CudaSample, GreedyEqualsCpuArgmaxIncludingTies) {
  const int V = 73448, rows = 8;
  auto logits = randn(size_t(rows) * V, 3.0f);
  auto row = [&](int r) { return logits.data() + size_t(r) * V; };
  row(1)[70000] = row(1)[5] = 50.0f;                              // tie: the lower id
  std::fill_n(row(2), V, 0.25f);                                  // all equal: id 0
  std::fill_n(row(3), V, -INFINITY), row(3)[4321] = -1e30f;       // one finite value
  row(4)[V - 1] = 99.0f;                                          // the last id
  row(5)[0] = 99.0f;                                              // the first id
  std::fill_n(row(6), V, -INFINITY);                              // nothing finite: id 0, as max_element
  std::fill_n(row(7), V, -1.0f), row(7)[9] = 0.0f, row(7)[8] = -0.0f;  // -0 and +0 tie: the lower id
  auto got = run_sample(logits, rows, V, {}, 0, cuda::SampleArgs{});
  for (int r = 0; r < rows; ++r)
    EXPECT_EQ(got.ids[size_t(r)], argmax(std::span<const float>(row(r), size_t(V)))) << "row " << r;
  EXPECT_EQ(got.ids[1], 5);
  EXPECT_EQ(got.ids[7], 8);
}

TEST(CudaSample, TopK1EqualsGreedy) {
  const int V = 5000, rows = 64;
  auto logits = randn(size_t(rows) * V, 2.0f);
  for (uint64_t seed : {1u, 2u, 3u}) {
    cuda::SampleArgs a;
    a.temperature = 0.7f;
    a.top_k = 1;
    a.seed = seed;
    auto got = run_sample(logits, rows, V, {}, 0, a);
    for (int r = 0; r < rows; ++r)
      ASSERT_EQ(got.ids[size_t(r)], argmax(std::span<const float>(logits.data() + size_t(r) * V, size_t(V))))
          << "row " << r << " seed " << seed;
  }
}

TEST(CudaSample, RepetitionPenaltyAsHuggingFace) {
  const int V = 50, rows = 3, hist_len = 9;
  auto logits = randn(size_t(rows) * V, 2.0f);
  logits[7] = 9.0f, logits[8] = 8.0f;  // row 0: 7 wins unpenalised; penalised 9 / 2 < 8
  std::vector<int32_t> hist = {7, 7, 3, -1, 49, 7, 0, 3, -1,    // duplicates and padding
                               -1, -1, -1, -1, -1, -1, -1, -1, -1,  // no history
                               1, 2, 3, 4, 5, 6, 7, 8, 9};
  for (float temp : {0.0f, 0.8f}) {
    cuda::SampleArgs a;
    a.temperature = temp;
    a.repetition_penalty = 2.0f;
    auto got = run_sample(logits, rows, V, hist, hist_len, a);
    for (int r = 0; r < rows; ++r) {
      std::vector<float> l(logits.begin() + size_t(r) * V, logits.begin() + size_t(r + 1) * V);
      SamplingParams p;
      p.repetition_penalty = 2.0f;
      Sampler s(p);
      const int32_t want = s.sample(l, std::span<const int32_t>(hist.data() + size_t(r) * hist_len, hist_len));
      std::vector<float> gl(got.logits_after.begin() + size_t(r) * V, got.logits_after.begin() + size_t(r + 1) * V);
      EXPECT_EQ(gl, l) << "penalised logits, row " << r;
      if (temp == 0.0f) {
        EXPECT_EQ(got.ids[size_t(r)], want) << "greedy under the penalty, row " << r;
      }
    }
    if (temp == 0.0f) {
      EXPECT_EQ(got.ids[0], 8);
    }
  }
}

// The distribution a draw follows (HF order, in double): the definition runtime/sampler.cpp implements.
std::vector<double> expected_probs(const std::vector<float>& l, float temp, int top_k, float top_p, float min_p) {
  const int V = int(l.size());
  std::vector<int> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return l[size_t(a)] > l[size_t(b)]; });
  int keep = V;
  if (top_k > 0 && top_k < V) {
    keep = top_k;
    while (keep < V && l[size_t(ids[size_t(keep)])] == l[size_t(ids[size_t(top_k - 1)])]) ++keep;
  }
  std::vector<double> p(static_cast<size_t>(keep));
  double sum = 0;
  for (int i = 0; i < keep; ++i) sum += p[size_t(i)] = std::exp((double(l[size_t(ids[size_t(i)])]) - l[size_t(ids[0])]) / temp);
  for (auto& x : p) x /= sum;
  if (top_p < 1) {
    double c = 0;
    int n = 0;
    while (n < keep) {
      c += p[size_t(n++)];
      if (c >= top_p) break;
    }
    keep = n;
  }
  if (min_p > 0) {
    int n = 1;
    while (n < keep && p[size_t(n)] >= min_p * p[0]) ++n;
    keep = n;
  }
  std::vector<double> out(size_t(V), 0.0);
  double tot = 0;
  for (int i = 0; i < keep; ++i) tot += p[size_t(i)];
  for (int i = 0; i < keep; ++i) out[size_t(ids[size_t(i)])] = p[size_t(i)] / tot;
  return out;
}

TEST(CudaSample, DrawFrequenciesFollowTheFilteredSoftmax) {
  const int V = 12, rows = 4096, steps = quick() ? 2 : 24;  // ~98K draws per case (8K quick)
  std::vector<float> l = {2.0f, 1.5f, 1.5f, 1.5f, 0.7f, 0.2f, 0.0f, -0.5f, -1.0f, -2.0f, 1.0f, 0.9f};
  struct Case {
    float temp;
    int top_k;
    float top_p, min_p;
  };
  for (Case c : {Case{1.0f, 0, 1.0f, 0.0f}, Case{0.7f, 0, 0.8f, 0.0f}, Case{1.3f, 5, 1.0f, 0.0f},
                 Case{1.3f, 2, 1.0f, 0.0f} /* ties at the k-th value stay */, Case{1.0f, 0, 1.0f, 0.3f},
                 Case{0.9f, 6, 0.9f, 0.05f}}) {
    const auto want = expected_probs(l, c.temp, c.top_k, c.top_p, c.min_p);
    std::vector<float> logits;
    for (int r = 0; r < rows; ++r) logits.insert(logits.end(), l.begin(), l.end());
    std::vector<int64_t> count(size_t(V), 0);
    for (int st = 0; st < steps; ++st) {
      cuda::SampleArgs a;
      a.temperature = c.temp;
      a.top_k = c.top_k;
      a.top_p = c.top_p;
      a.min_p = c.min_p;
      a.seed = 1234;
      a.step = uint64_t(st);
      auto got = run_sample(logits, rows, V, {}, 0, a);
      for (int32_t id : got.ids) {
        ASSERT_TRUE(id >= 0 && id < V) << id;
        ++count[size_t(id)];
      }
    }
    const double n = double(rows) * steps;
    for (int i = 0; i < V; ++i) {
      const double f = double(count[size_t(i)]) / n, p = want[size_t(i)];
      const std::string tag = "T " + std::to_string(c.temp) + " k " + std::to_string(c.top_k) + " p " +
                              std::to_string(c.top_p) + " min_p " + std::to_string(c.min_p) + " id " + std::to_string(i);
      if (p == 0.0)
        EXPECT_EQ(count[size_t(i)], 0) << tag << ": a filtered token was drawn";
      else
        EXPECT_LT(std::abs(f - p), 5.0 * std::sqrt(p * (1 - p) / n) + 1e-4) << tag << " freq " << f << " want " << p;
    }
  }
}

TEST(CudaSample, DrawsAreReproducibleAndDependOnTheStep) {
  const int V = 1000, rows = 256;
  std::vector<float> logits(size_t(rows) * V, 0.0f);  // uniform
  cuda::SampleArgs a;
  a.temperature = 1.0f;
  a.seed = 77;
  a.step = 5;
  auto x = run_sample(logits, rows, V, {}, 0, a), y = run_sample(logits, rows, V, {}, 0, a);
  EXPECT_EQ(x.ids, y.ids);
  a.step = 6;
  auto z = run_sample(logits, rows, V, {}, 0, a);
  EXPECT_NE(x.ids, z.ids);
  std::map<int32_t, int> distinct;
  for (int32_t id : x.ids) ++distinct[id];
  EXPECT_GT(distinct.size(), size_t(200)) << "rows draw independently";
}

}  // namespace

namespace {

// A row holding NaN or +Inf gives -1 (greedy and drawn), and the rows beside it are unaffected.
TEST(CudaSample, RowsWithNanOrInfGiveMinusOne) {
  const int V = 5000, rows = 4;
  std::vector<float> logits(size_t(rows) * V);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float((i * 7919) % 1013) * 0.01f;
  logits[size_t(1) * V + 17] = std::nanf("");
  logits[size_t(3) * V + V - 1] = INFINITY;
  for (float temp : {0.0f, 0.8f}) {
    cuda::SampleArgs a;
    a.temperature = temp;
    a.seed = 3;
    const auto got = run_sample(logits, rows, V, {}, 0, a);
    EXPECT_EQ(got.ids[1], -1) << "T " << temp;
    EXPECT_EQ(got.ids[3], -1) << "T " << temp;
    for (int r : {0, 2}) EXPECT_TRUE(got.ids[size_t(r)] >= 0 && got.ids[size_t(r)] < V) << "T " << temp << " row " << r;
    if (temp == 0.0f) {
      std::vector<float> row0(logits.begin(), logits.begin() + V);
      EXPECT_EQ(got.ids[0], argmax(row0));
    }
  }
}

}  // namespace
