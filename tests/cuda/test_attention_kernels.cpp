// The attention-side CUDA kernels (kv_append, infllmv2_select, attention) against the CPU ops (cpu/attention.h,
// cpu/infllmv2.h), themselves tested against the float64 reference. Inputs are random normal values rounded to bf16
// (the CPU ops get the same bf16 values as floats), fresh per case; every output buffer is poisoned first and checked
// to be written exactly where it should be (and left alone elsewhere).
//   kv_append: pages hold the bf16 rows bit for bit; K1 / K2 equal bf16(CPU mean) (the kernel sums in the CPU's
//              order, so the fp32 means agree exactly); windows not yet complete stay untouched; appends in several
//              steps (prefill chunk, decodes, another chunk) give the same pools as one append.
//   select:    the GPU block scores (workspace) equal the CPU's pooled stage-1 scores to 1e-3 relative (the CPU gets
//              the GPU's bf16 K1 / K2 windows, so only fp32 rounding differs), and the selections agree up to near
//              ties: a block chosen by one side only must score within 1e-3 of the k-th score; forced blocks always.
//   attention: rel_max_err <= 2e-2 against attention_causal / attention_block_sparse per sequence.
// Shapes: SALA (32 q / 2 kv heads, D 128, GQA 16), qwen3 (32 / 8, GQA 4), D 64, T = 1, T not a multiple of 64,
// call lengths = 15 (mod 16) and = 63 (mod 64), pages crossed mid-step, varlen batches mixing dense and sparse
// sequences and prefill with decode rows, decode-only batches (the decode kernel), long decode rows (split-KV), big
// prefill and big decode batches (no split), 4- and 8-warp tiles (chosen by the rows per sequence).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "sala/backend/cpu/attention.h"
#include "sala/backend/cpu/infllmv2.h"
#include "sala/backend/cuda/attention_tuning.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/core/dtype.h"
#include "sala/core/rng.h"
#include "test_util.h"

using namespace sala;

namespace {

constexpr uint16_t kPoisonBf16 = 0xffff;  // a NaN
constexpr int32_t kPoisonIdx = -7;

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  Dev() = default;
  explicit Dev(size_t n_) : n(n_) {
    if (n) SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)));
  }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) { put(h); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  Dev(Dev&& o) noexcept : p(o.p), n(o.n) { o.p = nullptr, o.n = 0; }
  Dev& operator=(Dev&& o) noexcept {
    std::swap(p, o.p);
    std::swap(n, o.n);
    return *this;
  }
  ~Dev() {
    if (p) cudaFree(p);
  }
  void put(const std::vector<T>& h) {
    ASSERT_EQ(h.size(), n);
    if (n) SALA_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> get() const {
    std::vector<T> h(n);
    if (n) SALA_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void fill(T v) { put(std::vector<T>(n, v)); }
};

cuda::bf16* bfp(Dev<uint16_t>& d) { return reinterpret_cast<cuda::bf16*>(d.p); }
const cuda::bf16* bfp(const Dev<uint16_t>& d) { return reinterpret_cast<const cuda::bf16*>(d.p); }

float bf(uint16_t h) { return bf16_to_f32(h); }
bool is_nan_bf(uint16_t h) { return (h & 0x7fff) > 0x7f80; }

// Random normal values rounded to bf16: raw bits and the exact floats.
void randn_bf16(std::vector<uint16_t>& raw, std::vector<float>& val, size_t n, uint64_t seed, float std = 1.f) {
  auto v = test::randn(n, seed, std);
  raw.resize(n);
  val.resize(n);
  for (size_t i = 0; i < n; ++i) {
    raw[i] = f32_to_bf16(v[i]);
    val[i] = bf(raw[i]);
  }
}

// ---- a paged cache of several sequences --------------------------------------------------------------------------

// Sequence s holds keys/values for positions [0, ctx[s]) (random bf16), placed in randomly permuted pages of one pool;
// its slot is 2 s + 1 in a page table with unused rows (-1) between.
struct PagedCache {
  int Hkv, D;
  bool compressed;
  std::vector<int> ctx, slot;
  std::vector<std::vector<uint16_t>> k_raw, v_raw;  // (ctx, Hkv, D) per sequence
  std::vector<std::vector<float>> k, v;
  int pt_stride = 0, num_pages = 0;
  std::vector<int32_t> page_table;
  Dev<uint16_t> kp, vp, k1, k2;
  Dev<int32_t> d_pt;

  PagedCache(int Hkv_, int D_, std::vector<int> ctx_, bool compressed_, uint64_t seed)
      : Hkv(Hkv_), D(D_), compressed(compressed_), ctx(std::move(ctx_)) {
    const int S = int(ctx.size());
    int max_pages = 1;
    for (int c : ctx) max_pages = std::max(max_pages, (c + 63) / 64);
    pt_stride = max_pages + 3;
    int total = 0;
    for (int c : ctx) total += (c + 63) / 64;
    num_pages = total + 5;  // a few pages nobody owns
    std::vector<int> perm(static_cast<size_t>(num_pages));
    std::iota(perm.begin(), perm.end(), 0);
    Rng r(seed * 7 + 1);
    for (int i = num_pages - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t(r.below(uint64_t(i + 1)))]);
    page_table.assign(size_t(2 * S + 2) * pt_stride, -1);
    int next = 0;
    for (int s = 0; s < S; ++s) {
      slot.push_back(2 * s + 1);
      for (int j = 0; j < (ctx[size_t(s)] + 63) / 64; ++j) page_table[size_t(slot.back()) * pt_stride + j] = perm[size_t(next++)];
      k_raw.emplace_back();
      v_raw.emplace_back();
      k.emplace_back();
      v.emplace_back();
      const size_t n = size_t(ctx[size_t(s)]) * Hkv * D;
      randn_bf16(k_raw.back(), k.back(), n, seed * 1000 + 2 * uint64_t(s));
      randn_bf16(v_raw.back(), v.back(), n, seed * 1000 + 2 * uint64_t(s) + 1);
    }
    d_pt = Dev<int32_t>(page_table);
    kp = Dev<uint16_t>(size_t(num_pages) * Hkv * 64 * D);
    vp = Dev<uint16_t>(kp.n);
    kp.fill(kPoisonBf16);
    vp.fill(kPoisonBf16);
    if (compressed) {
      k1 = Dev<uint16_t>(size_t(num_pages) * Hkv * 4 * D);
      k2 = Dev<uint16_t>(size_t(num_pages) * Hkv * D);
      k1.fill(kPoisonBf16);
      k2.fill(kPoisonBf16);
    }
  }
  int page_of(int s, int p) const { return page_table[size_t(slot[size_t(s)]) * pt_stride + p / 64]; }
};

// The rows of one step: for each listed sequence, positions [pos0, pos0 + n) with the call's length and flags.
struct StepSpec {
  int seq, pos0, n, call_len;
  uint32_t flags;
};

struct Step {
  std::vector<StepSpec> spec;
  std::vector<int32_t> pos, row_seq, cu, slot, pos0, call_len;
  std::vector<uint32_t> flags;
  Dev<int32_t> d_pos, d_row_seq, d_cu, d_slot, d_pos0, d_call_len;
  Dev<uint32_t> d_flags;
  int N = 0, S = 0, max_ctx = 1;
  // x rows: q (Hq heads) | k | v, row stride ld (padded past the three)
  int Hq = 0, ld = 0, q_off = 0, k_off = 0, v_off = 0;
  std::vector<uint16_t> x_raw;
  std::vector<float> q;  // (N, Hq, D), exact bf16 values
  Dev<uint16_t> d_x;
  cuda::StepRows rows{};

  Step(const PagedCache& c, std::vector<StepSpec> spec_, int Hq_, uint64_t seed, int ld_pad = 16)
      : spec(std::move(spec_)), Hq(Hq_) {
    S = int(spec.size());
    cu.push_back(0);
    for (int s = 0; s < S; ++s) {
      const auto& sp = spec[size_t(s)];
      for (int i = 0; i < sp.n; ++i) {
        pos.push_back(sp.pos0 + i);
        row_seq.push_back(s);
      }
      cu.push_back(cu.back() + sp.n);
      slot.push_back(c.slot[size_t(sp.seq)]);
      pos0.push_back(sp.pos0);
      call_len.push_back(sp.call_len);
      flags.push_back(sp.flags);
      max_ctx = std::max(max_ctx, sp.pos0 + sp.n);
    }
    N = int(pos.size());
    const int D = c.D, Hkv = c.Hkv;
    q_off = 0;
    k_off = Hq * D;
    v_off = (Hq + Hkv) * D;
    ld = (Hq + 2 * Hkv) * D + ld_pad;
    std::vector<uint16_t> qr;
    randn_bf16(qr, q, size_t(N) * Hq * D, seed);
    x_raw.assign(size_t(N) * ld, f32_to_bf16(0.5f));
    for (int r = 0; r < N; ++r) {
      const int s = spec[size_t(row_seq[size_t(r)])].seq, p = pos[size_t(r)];
      std::copy_n(qr.begin() + size_t(r) * Hq * D, size_t(Hq) * D, x_raw.begin() + size_t(r) * ld + q_off);
      std::copy_n(c.k_raw[size_t(s)].begin() + size_t(p) * Hkv * D, size_t(Hkv) * D, x_raw.begin() + size_t(r) * ld + k_off);
      std::copy_n(c.v_raw[size_t(s)].begin() + size_t(p) * Hkv * D, size_t(Hkv) * D, x_raw.begin() + size_t(r) * ld + v_off);
    }
    d_x = Dev<uint16_t>(x_raw);
    d_pos = Dev<int32_t>(pos);
    d_row_seq = Dev<int32_t>(row_seq);
    d_cu = Dev<int32_t>(cu);
    d_slot = Dev<int32_t>(slot);
    d_pos0 = Dev<int32_t>(pos0);
    d_call_len = Dev<int32_t>(call_len);
    d_flags = Dev<uint32_t>(flags);
    rows.N = N;
    rows.S = S;
    rows.pos = d_pos.p;
    rows.row_seq = d_row_seq.p;
    rows.cu_seqlens = d_cu.p;
    rows.slot = d_slot.p;
    rows.pos0 = d_pos0.p;
    rows.call_len = d_call_len.p;
    rows.flags = d_flags.p;
    rows.page_table = c.d_pt.p;
    rows.pt_stride = c.pt_stride;
  }
  void append(PagedCache& c, cudaStream_t st = nullptr) {
    cuda::kv_append(bfp(c.kp), bfp(c.vp), c.compressed ? bfp(c.k1) : nullptr, c.compressed ? bfp(c.k2) : nullptr,
                    bfp(d_x), ld, k_off, v_off, c.Hkv, c.D, rows, st);
  }
  // q rows of step-sequence s: (n, Hq, D)
  std::vector<float> q_of(int s, int D) const {
    return std::vector<float>(q.begin() + size_t(cu[size_t(s)]) * Hq * D, q.begin() + size_t(cu[size_t(s) + 1]) * Hq * D);
  }
};

// Appends positions [from[s], to[s]) of every sequence with from < to as one step (a history step: q unused).
void append_range(PagedCache& c, const std::vector<int>& from, const std::vector<int>& to, uint64_t seed) {
  std::vector<StepSpec> spec;
  for (size_t s = 0; s < from.size(); ++s)
    if (from[s] < to[s]) spec.push_back({int(s), from[s], to[s] - from[s], to[s], 0});
  if (spec.empty()) return;
  Step st(c, spec, 1, seed, 8);
  st.append(c);
  SALA_CUDA_CHECK(cudaDeviceSynchronize());
}

// CPU compressed keys of sequence s over positions [0, n): windows in fp32.
cpu::CompressedKeys cpu_compressed(const PagedCache& c, int s, int n, int kernel, int stride) {
  cpu::CompressedKeys ck;
  ck.init(kernel, stride, c.Hkv, c.D);
  ck.append(c.k[size_t(s)].data(), n);
  return ck;
}

// The GPU's K1 (tier 0) or K2 window w of sequence s, head h, as floats.
std::vector<float> gpu_window(const PagedCache& c, const std::vector<uint16_t>& pool, int s, int tier, int w, int h) {
  const int D = c.D;
  size_t at;
  if (tier == 0)
    at = ((size_t(c.page_of(s, 64 * (w / 4))) * c.Hkv + h) * 4 + w % 4) * D;
  else
    at = (size_t(c.page_of(s, 64 * w)) * c.Hkv + h) * D;
  std::vector<float> out(static_cast<size_t>(D));
  for (int d = 0; d < D; ++d) out[size_t(d)] = bf(pool[at + d]);
  return out;
}

// Checks pages, K1 and K2 of every sequence against its keys/values and the CPU means.
void check_cache(const PagedCache& c, const std::string& what) {
  const auto kp = c.kp.get(), vp = c.vp.get();
  const int Hkv = c.Hkv, D = c.D;
  for (size_t s = 0; s < c.ctx.size(); ++s) {
    int bad = 0;
    for (int p = 0; p < c.ctx[s]; ++p)
      for (int h = 0; h < Hkv; ++h) {
        const size_t at = ((size_t(c.page_of(int(s), p)) * Hkv + h) * 64 + p % 64) * D;
        bad += std::memcmp(&kp[at], &c.k_raw[s][(size_t(p) * Hkv + h) * D], size_t(D) * 2) != 0;
        bad += std::memcmp(&vp[at], &c.v_raw[s][(size_t(p) * Hkv + h) * D], size_t(D) * 2) != 0;
      }
    EXPECT_EQ(bad, 0) << what << ": seq " << s << " page rows differ";
  }
  if (!c.compressed) return;
  const auto k1 = c.k1.get(), k2 = c.k2.get();
  for (size_t s = 0; s < c.ctx.size(); ++s) {
    const int n = c.ctx[s];
    for (int tier = 0; tier < 2; ++tier) {
      const int stride = tier == 0 ? 16 : 64, kernel = 2 * stride;
      const auto ck = cpu_compressed(c, int(s), n, kernel, stride);
      const int count = int(ck.count());
      ASSERT_EQ(count, n >= kernel ? (n - kernel) / stride + 1 : 0);
      int mismatched = 0, unwritten = 0, stray = 0;
      for (int w = 0; w < count; ++w)
        for (int h = 0; h < Hkv; ++h) {
          const auto got = gpu_window(c, tier == 0 ? k1 : k2, int(s), tier, w, h);
          for (int d = 0; d < D; ++d) {
            const float want = ck.windows[(size_t(w) * Hkv + h) * D + d];
            const float g = got[size_t(d)];
            if (g != g) {
              ++unwritten;
              continue;
            }
            // bf16(mean): the kernel's fp32 sum is the CPU's; allow one bf16 ulp all the same
            if (std::abs(g - want) > std::abs(want) * 0x1.0p-7f + 1e-30f) ++mismatched;
          }
        }
      // windows not complete yet (but with their page allocated) must be untouched
      const int slots = tier == 0 ? 4 * ((n + 63) / 64) : (n + 63) / 64;
      for (int w = count; w < slots; ++w)
        for (int h = 0; h < Hkv; ++h) {
          const size_t at = tier == 0 ? ((size_t(c.page_of(int(s), 64 * (w / 4))) * Hkv + h) * 4 + w % 4) * D
                                      : (size_t(c.page_of(int(s), 64 * w)) * Hkv + h) * D;
          for (int d = 0; d < D; ++d) stray += !is_nan_bf((tier == 0 ? k1 : k2)[at + d]);
        }
      EXPECT_EQ(mismatched, 0) << what << ": seq " << s << " tier " << tier << " windows off the CPU means";
      EXPECT_EQ(unwritten, 0) << what << ": seq " << s << " tier " << tier << " complete windows not written";
      EXPECT_EQ(stray, 0) << what << ": seq " << s << " tier " << tier << " incomplete windows written";
    }
  }
}

}  // namespace

// ---- kv_append ----------------------------------------------------------------------------------------------------

TEST(CudaKvAppend, StepsMatchOneAppendAndCpuMeans) {
  struct Shape {
    int Hkv, D;
    bool compressed;
    int ld_pad;  // 16: vector path; 3: scalar path (rows not 16-byte aligned)
  };
  for (const Shape sh : {Shape{2, 128, true, 16}, Shape{2, 128, true, 3}, Shape{8, 64, true, 16}, Shape{8, 128, false, 16}}) {
    const std::vector<int> ctx = {1, 31, 32, 63, 64, 65, 127, 128, 129, 200, 531};
    const uint64_t seed = 100 + uint64_t(sh.Hkv * 7 + sh.D + sh.ld_pad);
    const std::string what = "Hkv " + std::to_string(sh.Hkv) + " D " + std::to_string(sh.D) +
                             (sh.compressed ? "" : " dense") + " pad " + std::to_string(sh.ld_pad);
    PagedCache one(sh.Hkv, sh.D, ctx, sh.compressed, seed), steps(sh.Hkv, sh.D, ctx, sh.compressed, seed);
    // one append of everything
    {
      std::vector<StepSpec> spec;
      for (int s = 0; s < int(ctx.size()); ++s) spec.push_back({s, 0, ctx[size_t(s)], ctx[size_t(s)], 0});
      Step st(one, spec, 2, seed + 1, sh.ld_pad);
      st.append(one);
      SALA_CUDA_CHECK(cudaDeviceSynchronize());
    }
    // a prefill chunk of 40, three single-token decode steps, a chunk of 70, the rest
    {
      std::vector<int> at(ctx.size(), 0);
      auto advance = [&](int by) {
        std::vector<StepSpec> spec;
        for (int s = 0; s < int(ctx.size()); ++s) {
          const int n = std::min(by, ctx[size_t(s)] - at[size_t(s)]);
          if (n > 0) spec.push_back({s, at[size_t(s)], n, n, 0});
          at[size_t(s)] += std::max(n, 0);
        }
        if (spec.empty()) return;
        Step st(steps, spec, 2, seed + 2, sh.ld_pad);
        st.append(steps);
        SALA_CUDA_CHECK(cudaDeviceSynchronize());
      };
      for (int by : {40, 1, 1, 1, 70, 1000}) advance(by);
    }
    EXPECT_TRUE(one.kp.get() == steps.kp.get()) << what;
    EXPECT_TRUE(one.vp.get() == steps.vp.get()) << what;
    if (sh.compressed) {
      EXPECT_TRUE(one.k1.get() == steps.k1.get()) << what << ": K1 differs between one append and steps";
      EXPECT_TRUE(one.k2.get() == steps.k2.get()) << what << ": K2 differs between one append and steps";
    }
    check_cache(one, what);
  }
}

// ---- infllmv2_select (+ attention over its selection) ---------------------------------------------------------------

namespace {

struct SeqCase {
  int ctx_before, n, call_len;
  bool sparse;
};

// CPU pooled block scores of one row from its stage-1 window sums (cpu::infllmv2_select's pooling).
std::vector<float> pool_blocks(const float* s, int64_t n1_total, int64_t q_blk, int64_t r) {
  std::vector<float> blk(size_t(q_blk + 1), -std::numeric_limits<float>::infinity());
  for (int64_t b = 0; b <= q_blk; ++b) {
    const int64_t lo = std::max<int64_t>(0, b * r - 1), hi = std::min(n1_total, b * r - 1 + r + 1);
    for (int64_t i = lo; i < hi; ++i) blk[size_t(b)] = std::max(blk[size_t(b)], s[i]);
  }
  return blk;
}

struct SelectStats {
  int rows = 0, flips = 0;
};

// Runs cuda::attention for the step (d_idx null: every sequence dense) and compares each sequence's output with the
// CPU: block-sparse over its rows' lists in idx (N, Hkv, K) for sparse sequences, causal for dense ones. Every row must
// be written, within tol, and the row padding past Hq * D left alone.
void check_attention(const PagedCache& c, const Step& st, const std::vector<SeqCase>& seqs, const int32_t* d_idx,
                     const std::vector<int32_t>& idx, int Hq, int Hkv, int D, int K, float scale, double tol,
                     const std::string& label) {
  const int N = st.N, ldo = Hq * D + 8;
  Dev<uint16_t> d_o(size_t(N) * ldo);
  d_o.fill(kPoisonBf16);
  const size_t aws = cuda::attention_workspace_bytes(N, st.S, Hq, Hkv, D, st.max_ctx);
  Dev<uint8_t> d_aws(aws);
  cuda::attention(bfp(d_o), ldo, bfp(st.d_x), st.ld, st.q_off, Hq, Hkv, D, bfp(c.kp), bfp(c.vp), d_idx, K, scale,
                  st.max_ctx, st.rows, aws ? d_aws.p : nullptr, nullptr);
  SALA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto o = d_o.get();
  for (int s = 0; s < st.S; ++s) {
    const auto& sc = seqs[size_t(s)];
    const int row0 = st.cu[size_t(s)];
    const auto q = st.q_of(s, D);
    std::vector<float> want(q.size());
    if (sc.sparse) {
      std::vector<int32_t> ic(size_t(Hkv) * sc.n * K);
      for (int g = 0; g < Hkv; ++g)
        for (int t = 0; t < sc.n; ++t)
          std::copy_n(idx.begin() + (size_t(row0 + t) * Hkv + g) * K, K, ic.begin() + (size_t(g) * sc.n + t) * K);
      cpu::attention_block_sparse(want.data(), q.data(), c.k[size_t(s)].data(), c.v[size_t(s)].data(), ic.data(), K,
                                  64, sc.n, sc.ctx_before, Hq, Hkv, D, scale);
    } else {
      cpu::attention_causal(want.data(), q.data(), c.k[size_t(s)].data(), c.v[size_t(s)].data(), sc.n, sc.ctx_before,
                            Hq, Hkv, D, scale);
    }
    std::vector<float> got(want.size());
    int unwritten = 0;
    for (int t = 0; t < sc.n; ++t)
      for (int e = 0; e < Hq * D; ++e) {
        const uint16_t h = o[size_t(row0 + t) * ldo + e];
        unwritten += is_nan_bf(h);
        got[size_t(t) * Hq * D + e] = bf(h);
      }
    EXPECT_EQ(unwritten, 0) << label << " seq " << s;
    EXPECT_LE(test::rel_max_err(got, want), tol)
        << label << ": Hq " << Hq << " Hkv " << Hkv << " D " << D << " seq " << s << " (" << sc.ctx_before << " + "
        << sc.n << (sc.sparse ? ", sparse)" : ", dense)");
  }
  int stray = 0;
  for (int r = 0; r < N; ++r)
    for (int e = Hq * D; e < ldo; ++e) stray += o[size_t(r) * ldo + e] != kPoisonBf16;
  EXPECT_EQ(stray, 0) << label;
}

// Runs kv_append (history, then the step), select and attention over the selection on the GPU, and the CPU select
// and attention (over the GPU's selection) on the same bf16 data; checks as the file header says.
SelectStats run_select_case(int Hq, int Hkv, int D, const cuda::SelectArgs& a, const std::vector<SeqCase>& seqs,
                            uint64_t seed, bool with_attention = true) {
  SelectStats stats;
  std::vector<int> ctx, before;
  for (auto& sc : seqs) {
    ctx.push_back(sc.ctx_before + sc.n);
    before.push_back(sc.ctx_before);
  }
  PagedCache c(Hkv, D, ctx, true, seed);
  append_range(c, std::vector<int>(seqs.size(), 0), before, seed + 11);
  std::vector<StepSpec> spec;
  for (int s = 0; s < int(seqs.size()); ++s)
    spec.push_back({s, seqs[size_t(s)].ctx_before, seqs[size_t(s)].n, seqs[size_t(s)].call_len,
                    seqs[size_t(s)].sparse ? cuda::kSeqSparse : 0u});
  Step st(c, spec, Hq, seed + 12);
  st.append(c);
  const int K = a.topk_total, N = st.N;
  Dev<int32_t> d_idx(size_t(N) * Hkv * K);
  d_idx.fill(kPoisonIdx);
  const size_t ws_bytes = cuda::select_workspace_bytes(N, st.S, Hq, Hkv, st.max_ctx);
  Dev<uint8_t> ws(ws_bytes);
  SALA_CUDA_CHECK(cudaMemset(ws.p, 0xff, ws_bytes));
  cuda::infllmv2_select(d_idx.p, bfp(st.d_x), st.ld, st.q_off, Hq, Hkv, D, bfp(c.k1), bfp(c.k2), a, st.max_ctx,
                        st.rows, ws.p, nullptr);
  SALA_CUDA_CHECK(cudaDeviceSynchronize());
  const auto idx = d_idx.get();
  std::vector<float> blk_gpu(size_t(N) * Hkv * ((st.max_ctx + 63) / 64));
  SALA_CUDA_CHECK(cudaMemcpy(blk_gpu.data(), ws.p, blk_gpu.size() * 4, cudaMemcpyDeviceToHost));
  const int max_blocks = (st.max_ctx + 63) / 64;

  const auto k1_pool = c.k1.get(), k2_pool = c.k2.get();
  cpu::SelectParams p;
  p.block = a.block;
  p.stride = a.stride;
  p.topk_total = a.topk_total;
  p.local_blocks = a.local_blocks;
  p.init_blocks = a.init_blocks;
  p.scale = a.scale;
  for (int s = 0; s < st.S; ++s) {
    const auto& sc = seqs[size_t(s)];
    const int row0 = st.cu[size_t(s)];
    if (!sc.sparse) {
      int touched = 0;
      for (int t = 0; t < sc.n; ++t)
        for (int j = 0; j < Hkv * K; ++j) touched += idx[(size_t(row0 + t) * Hkv) * K + j] != kPoisonIdx;
      EXPECT_EQ(touched, 0) << "seq " << s << ": dense rows must be left alone";
      continue;
    }
    // CPU compressed keys with the GPU's bf16 windows (so stage 1 sees identical inputs)
    const int last = sc.ctx_before + sc.n;
    auto k1c = cpu_compressed(c, s, last, 32, 16), k2c = cpu_compressed(c, s, last, 128, 64);
    for (int64_t w = 0; w < k1c.count(); ++w)
      for (int h = 0; h < Hkv; ++h) {
        auto gw = gpu_window(c, k1_pool, s, 0, int(w), h);
        std::copy(gw.begin(), gw.end(), k1c.windows.begin() + (w * Hkv + h) * D);
      }
    for (int64_t w = 0; w < k2c.count(); ++w)
      for (int h = 0; h < Hkv; ++h) {
        auto gw = gpu_window(c, k2_pool, s, 1, int(w), h);
        std::copy(gw.begin(), gw.end(), k2c.windows.begin() + (w * Hkv + h) * D);
      }
    const auto q = st.q_of(s, D);
    std::vector<int32_t> idx_cpu(size_t(Hkv) * sc.n * K);
    std::vector<float> scores;
    cpu::infllmv2_select(idx_cpu.data(), q.data(), k1c, k2c, sc.n, sc.ctx_before, sc.call_len, Hq, p, &scores);
    const int64_t n1_total = k1c.count();
    for (int g = 0; g < Hkv; ++g)
      for (int t = 0; t < sc.n; ++t) {
        const int r = row0 + t, pos = sc.ctx_before + t, q_blk = pos / 64, nb = q_blk + 1;
        const std::string where = "seq " + std::to_string(s) + " row " + std::to_string(t) + " pos " +
                                  std::to_string(pos) + " g " + std::to_string(g);
        auto blk = pool_blocks(scores.data() + (size_t(g) * sc.n + t) * n1_total, n1_total, q_blk, 4);
        // stage-1 block scores
        const float* gb = blk_gpu.data() + (size_t(r) * Hkv + g) * max_blocks;
        int off = 0;
        for (int b = 0; b <= q_blk; ++b) {
          const float want = blk[size_t(b)], got = gb[b];
          const bool ok = std::isinf(want) ? got == want : std::abs(got - want) <= 1e-3f * std::abs(want) + 1e-30f;
          if (!ok && off++ < 3) ADD_FAILURE() << where << " block " << b << ": score " << got << " want " << want;
        }
        // selections
        const int32_t* gi = idx.data() + (size_t(r) * Hkv + g) * K;
        const int32_t* ci = idx_cpu.data() + (size_t(g) * sc.n + t) * K;
        std::set<int> gs, cs;
        const int take = std::min(K, nb);
        bool shape_ok = true;
        for (int j = 0; j < K; ++j) {
          if (j < take) {
            shape_ok &= gi[j] >= 0 && gi[j] <= q_blk && (j == 0 || gi[j] > gi[j - 1]);
            gs.insert(gi[j]);
            cs.insert(ci[j]);
          } else {
            shape_ok &= gi[j] == -1;
          }
        }
        if (!shape_ok) {
          ADD_FAILURE() << where << ": GPU list not ascending / -1 padded / within [0, q_blk]";
          continue;
        }
        auto forced = [&](int b) { return b < a.init_blocks || b >= q_blk - a.local_blocks; };
        // the top-k kernel exactly: a host sort of the GPU's own block scores (forced blocks first, then higher
        // scores, ties to the lower block) must give the GPU's list, tie order included
        {
          auto okey = [&](int b) -> uint32_t {
            if (forced(b)) return 0xff800000u;
            uint32_t u;
            std::memcpy(&u, gb + b, 4);
            return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
          };
          std::vector<int> order(static_cast<size_t>(nb));
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return okey(x) > okey(y); });
          order.resize(size_t(take));
          std::sort(order.begin(), order.end());
          if (!std::equal(order.begin(), order.end(), gi)) ADD_FAILURE() << where << ": top-k of the GPU's scores differs";
        }
        for (int b = 0; b <= q_blk; ++b)
          if (forced(b) && gs.size() < size_t(nb) && cs.count(b) != gs.count(b))
            ADD_FAILURE() << where << ": forced block " << b << " differs";
        float kth = std::numeric_limits<float>::infinity();
        for (int b : cs)
          if (!forced(b)) kth = std::min(kth, blk[size_t(b)]);
        for (int b = 0; b <= q_blk; ++b) {
          if (gs.count(b) == cs.count(b)) continue;
          ++stats.flips;
          const float sb = blk[size_t(b)];
          if (forced(b) || !(std::abs(sb - kth) <= 1e-3f * std::abs(kth)))
            ADD_FAILURE() << where << ": block " << b << " chosen by " << (gs.count(b) ? "GPU" : "CPU")
                          << " only, score " << sb << " vs k-th " << kth;
        }
        ++stats.rows;
      }
  }

  if (with_attention)  // attention over the GPU's selection (dense sequences: causal)
    check_attention(c, st, seqs, d_idx.p, idx, Hq, Hkv, D, K, a.scale, 2e-2, "attention over the selection");
  return stats;
}

cuda::SelectArgs small_select(int D) {
  cuda::SelectArgs a;
  a.block = 64;
  a.stride = 16;
  a.topk_total = 8;
  a.local_blocks = 2;
  a.init_blocks = 1;
  a.scale = 1.0f / std::sqrt(float(D));
  return a;
}

}  // namespace

// A whole prefill call of 1023 (= 15 mod 16 and = 63 mod 64: the off-by-one), a chunk of a 1679-token call (= 15 mod
// 16, not mod 64), a decode row, T = 1 at 63, a dense sequence in the batch (left alone), SALA heads.
TEST(CudaInfllmv2Select, SalaShapeOffByOneChunksAndDecode) {
  const int Hq = 32, Hkv = 2, D = 128;
  const std::vector<SeqCase> seqs = {
      {0, 1023, 1023, true},   // whole call, every row
      {1500, 100, 1679, true}, // chunk [1500, 1600) of a 1679-token call
      {2999, 1, 1, true},      // a decode row
      {0, 63, 63, true},       // call of 63 (= 63 mod 64 and = 15 mod 16), T not a multiple of 64
      {700, 37, 737, false},   // dense: left alone
      {63, 1, 1, true},        // T = 1 at 63
      {1087, 3, 1090, true},   // crosses a page boundary inside the step (1087 -> 1089)
  };
  for (int v : {1, 2, 3, 4}) {  // every stage-1 version (CTA heights 4 and 16, mma.sync and wgmma)
    cuda::SelectArgs a = small_select(D);
    a.stage1_version = v;
    const auto st = run_select_case(Hq, Hkv, D, a, seqs, 21);
    EXPECT_GT(st.rows, 2000);
    RecordProperty("flips", st.flips);
    std::printf("select v%d: %d rows, %d near-tie flips\n", v, st.rows, st.flips);
  }
}

// Scale 0: every stage-1 logit is 0, so the block scores tie in long runs and the top-k must take the lowest blocks
// among equals (checked exactly against a host sort of the GPU's scores), at a context where 96 < blocks.
TEST(CudaInfllmv2Select, TiesGoToTheLowerBlock) {
  cuda::SelectArgs a = small_select(128);
  a.topk_total = 96;
  a.local_blocks = 32;
  a.scale = 0.f;
  run_select_case(32, 2, 128, a, {{20000, 40, 20040, true}, {9000, 1, 1, true}}, 51, false);
}

// The released config (topk 96, 32 local blocks, 1 init) at contexts where 96 < blocks: decode rows of several
// sequences and a prefill chunk, GQA 16 with one KV head (sala-100m grouping), D 64 too.
TEST(CudaInfllmv2Select, ReleasedConfigLongRows) {
  cuda::SelectArgs a = small_select(128);
  a.topk_total = 96;
  a.local_blocks = 32;
  const std::vector<SeqCase> seqs = {
      {9000, 1, 1, true}, {20031, 1, 1, true}, {8191, 64, 8255, true}, {12000, 1, 1, false}, {33000, 1, 1, true}};
  auto st = run_select_case(32, 2, 128, a, seqs, 31);
  EXPECT_EQ(st.rows, 2 * 67);
  a.scale = 1.0f / 8.0f;
  st = run_select_case(16, 1, 64, a, {{7000, 5, 7100, true}, {9500, 1, 1, true}}, 32);
  EXPECT_EQ(st.rows, 6);
}

// Group smaller than 16 (padded matrix rows) and a larger varlen batch of decode rows (split stage 1).
TEST(CudaInfllmv2Select, SmallGroupAndManyDecodeRows) {
  std::vector<SeqCase> seqs;
  for (int i = 0; i < 40; ++i) seqs.push_back({500 + 97 * i, 1, 1, i % 5 != 3});
  run_select_case(8, 2, 128, small_select(128), seqs, 41);
  run_select_case(32, 2, 128, small_select(128), seqs, 42);
}

// ---- attention ------------------------------------------------------------------------------------------------------

namespace {

// Runs attention for the step on the GPU and compares with the CPU per sequence. Sparse sequences get random
// ascending block lists (forced init + local blocks, random others, sometimes fewer than K, -1 padded).
void run_attention_case(int Hq, int Hkv, int D, const std::vector<SeqCase>& seqs, uint64_t seed, int K = 12,
                        double tol = 2e-2) {
  std::vector<int> ctx, before;
  for (auto& sc : seqs) {
    ctx.push_back(sc.ctx_before + sc.n);
    before.push_back(sc.ctx_before);
  }
  PagedCache c(Hkv, D, ctx, false, seed);
  append_range(c, std::vector<int>(seqs.size(), 0), before, seed + 1);
  std::vector<StepSpec> spec;
  bool any_sparse = false;
  for (int s = 0; s < int(seqs.size()); ++s) {
    spec.push_back({s, seqs[size_t(s)].ctx_before, seqs[size_t(s)].n, seqs[size_t(s)].call_len,
                    seqs[size_t(s)].sparse ? cuda::kSeqSparse : 0u});
    any_sparse |= seqs[size_t(s)].sparse;
  }
  Step st(c, spec, Hq, seed + 2);
  st.append(c);
  const int N = st.N;
  std::vector<int32_t> idx(size_t(N) * Hkv * K, -1);
  Rng rng(seed + 3);
  for (int r = 0; r < N; ++r) {
    if (!seqs[size_t(st.row_seq[size_t(r)])].sparse) continue;
    const int q_blk = st.pos[size_t(r)] / 64;
    for (int g = 0; g < Hkv; ++g) {
      std::set<int> b = {0};
      for (int j = std::max(0, q_blk - 2); j <= q_blk; ++j) b.insert(j);
      const int want = K / 2 + int(rng.below(uint64_t(K / 2 + 1)));
      for (int tries = 0; int(b.size()) < std::min(want, q_blk + 1) && tries < 1000; ++tries)
        b.insert(int(rng.below(uint64_t(q_blk + 1))));
      int j = 0;
      for (int x : b) idx[(size_t(r) * Hkv + g) * K + j++] = x;
    }
  }
  Dev<int32_t> d_idx(idx);
  // every version of the tiled kernel (v1 mma.sync, v2 wgmma at 4 and 8 warps, v3 wgmma with paired warpgroups);
  // steps of one row per sequence take the decode kernel
  for (auto [version, warps] : {std::pair{1, 0}, std::pair{2, 0}, std::pair{2, 8}, std::pair{3, 0}}) {
    cuda::attention_version_override(version);
    cuda::attention_warps_override(warps);
    check_attention(c, st, seqs, any_sparse ? d_idx.p : nullptr, idx, Hq, Hkv, D, K, 1.0f / std::sqrt(float(D)), tol,
                    "v" + std::to_string(version) + " warps " + std::to_string(warps));
  }
  cuda::attention_version_override(0);
  cuda::attention_warps_override(0);
}

}  // namespace

TEST(CudaAttention, DenseSingleSequences) {
  for (auto [Hq, Hkv, D] : {std::tuple{32, 2, 128}, std::tuple{32, 8, 128}, std::tuple{16, 2, 64}}) {
    run_attention_case(Hq, Hkv, D, {{0, 1, 1, false}}, 1);     // T = 1 at position 0
    run_attention_case(Hq, Hkv, D, {{1000, 1, 1, false}}, 2);  // a decode row (split-KV)
    run_attention_case(Hq, Hkv, D, {{0, 77, 77, false}}, 3);   // prefill, T not a multiple of 64
    run_attention_case(Hq, Hkv, D, {{500, 300, 800, false}}, 4);  // a chunk after a cache, across pages
  }
}

// Mixed batches: dense and sparse, prefill and decode rows, in two proportions (mostly prefill rows: the 8-warp CTA;
// mostly decode rows: the 4-warp one).
TEST(CudaAttention, VarlenMixedDenseSparsePrefillDecode) {
  for (auto [Hq, Hkv] : {std::pair{32, 2}, std::pair{32, 8}}) {
    run_attention_case(Hq, Hkv, 128,
                       {{2000, 100, 2100, true}, {0, 130, 130, false}, {3100, 1, 1, true}, {700, 1, 1, false},
                        {64, 65, 129, true}, {4095, 2, 4097, true}},
                       10 + Hkv);
    std::vector<SeqCase> dec;
    for (int i = 0; i < 30; ++i) dec.push_back({200 + 131 * i, 1, 1, i % 3 == 0});
    dec.push_back({1000, 40, 1040, true});
    dec.push_back({0, 20, 20, false});
    run_attention_case(Hq, Hkv, 128, dec, 20 + Hkv, 96);
  }
}

// Long decode rows (many KV splits) and a big prefill (enough tiles that no split is made).
TEST(CudaAttention, LargeLongDecodeAndBigPrefill) {
  run_attention_case(32, 2, 128, {{40000, 1, 1, false}, {25000, 1, 1, true}}, 30, 96);
  run_attention_case(32, 2, 128, {{0, 2100, 2100, false}}, 31);
  run_attention_case(32, 8, 128, {{300, 1800, 2100, false}, {0, 500, 500, true}}, 32, 16);
}

// The full sparse-layer path at SALA scale settings but small contexts: selection, then attention over it.
TEST(CudaAttention, SelectThenAttentionSmallConfig) {
  const auto st = run_select_case(32, 2, 128, small_select(128),
                                  {{0, 700, 700, true}, {1200, 1, 1, true}, {300, 50, 350, false}}, 51);
  EXPECT_GT(st.rows, 1000);
}

// Steps where every sequence has one row (the decode kernel: the warps split each key block): dense and sparse rows
// mixed, positions at and around page edges, GQA 16 / 4 / 8 and D 64; a small batch of long rows (split-KV) and a
// large batch of short ones (no split).
TEST(CudaAttention, DecodeBatchesMixDenseSparse) {
  std::vector<SeqCase> dec;
  for (int p : {0, 1, 63, 64, 65, 127, 128, 1000, 4095, 4096, 9999}) dec.push_back({p, 1, 1, p % 2 == 1});
  run_attention_case(32, 2, 128, dec, 60, 12);
  run_attention_case(32, 8, 128, dec, 61, 12);
  run_attention_case(16, 2, 64, dec, 62, 12);
  std::vector<SeqCase> many;
  for (int i = 0; i < 300; ++i) many.push_back({(i * 37) % 700, 1, 1, i % 4 == 0});
  run_attention_case(32, 2, 128, many, 63, 8);
}
