#include "sala/backend/cuda/gemm.h"

#include <cublasLt.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/core/error.h"

namespace sala::cuda {

namespace {

// The largest power of two up to 16 that divides the address of every row (the base and the row stride in bytes):
// cuBLASLt picks kernels by operand alignment.
uint32_t alignment_of(const void* p, int64_t ld_bytes) {
  const auto a = uint64_t(reinterpret_cast<uintptr_t>(p)) | uint64_t(ld_bytes);
  uint32_t al = 16;
  while (al > 1 && a % al != 0) al /= 2;
  return al;
}

struct Key {
  int N, in, out, ldx, ldy;
  bool f32;
  uint32_t ax, aw, ay;
  // matmul_silu (1; 2: rows interleaved): tuned apart (another gemv epilogue, one more kernel after cuBLASLt)
  int silu = 0;
  auto tie() const { return std::tie(N, in, out, ldx, ldy, f32, ax, aw, ay, silu); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

// Decode-sized products (few rows) are bound by the weight read, and the heuristic's first choice there is often not
// the fastest: the first such call times the heuristic's candidates on its own operands and keeps the fastest.
constexpr int kCandidates = 8, kTuneMaxRows = 64;

// The tensor-core gemv versions (4-12: gemv_mma.cu) race with the rest unless SALA_GEMV_MMA=0 (an A/B switch: they
// win most decode products of 4-16 rows on the H200, where the CUDA-core gemv is compute-bound and cuBLASLt's M <= 16
// kernels leave SMs idle). Versions past kGemvMmaRun (the 128 x 128 tile) have not yet run on a GPU: they join only
// with SALA_GEMV_MMA=2 (the tests call every version directly either way).
constexpr int kGemvMmaRun = 9;
int mma_level() {
  static const int level = [] {
    const char* e = std::getenv("SALA_GEMV_MMA");
    return e ? std::atoi(e) : 1;
  }();
  return level;
}
bool version_in_race(int v) { return v < 4 || mma_level() >= (v <= kGemvMmaRun ? 1 : 2); }

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's, best first
  bool tuned = false;
  int gemv = 0;  // tuned: the version of sala's gemv that beat every cuBLASLt candidate; 0: cuBLASLt
};

// Tuning results shared by every Gemm of the process: two backends (or a graph-recording and an eager one) must run
// the same kernel for the same shape, or their products differ in the last bits. Value: the chosen candidate's index,
// or -v for version v of sala's gemv.
struct TuneCache {
  std::mutex mu;
  std::map<std::pair<Key, bool>, int> choice;  // (shape, gemv allowed) -> choice
};
TuneCache& tune_cache() {
  static TuneCache c;
  return c;
}

}  // namespace

struct Gemm::Impl {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<Key, Plan> plans;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  bool tune_small = true, use_gemv = true;
  mutable std::mutex mu;

  ~Impl() {
    for (auto& [k, p] : plans) {
      if (p.a) cublasLtMatrixLayoutDestroy(p.a);
      if (p.b) cublasLtMatrixLayoutDestroy(p.b);
      if (p.d) cublasLtMatrixLayoutDestroy(p.d);
      if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (workspace) cudaFree(workspace);
    if (handle) cublasLtDestroy(handle);
  }
};

namespace {

std::string shape_text(const Key& k) {
  return fmt::format("y ({} x {}, ld {}, {}) = x ({} x {}, ld {}) * w^T (w {} x {}); alignments x {} w {} y {}", k.N,
                     k.out, k.ldy, k.f32 ? "f32" : "bf16", k.N, k.in, k.ldx, k.out, k.in, k.ax, k.aw, k.ay);
}

void check(cublasStatus_t st, const char* call, const Key* k) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLASLt error {} ({}) in {}{}{}", int(st), cublasLtGetStatusString(st), call, k ? " for " : "",
       k ? shape_text(*k) : std::string());
}

#define SALA_LT(call, key) check((call), #call, key)

// Column-major view of the row-major product: y^T (out x N) = w (out x in, stored as in x out col-major, op T) times
// x^T (in x N col-major, ld ldx).
Plan make_plan(cublasLtHandle_t handle, size_t ws_bytes, const Key& k) {
  Plan p;
  const Key* kp = &k;
  SALA_LT(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), kp);
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  SALA_LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), kp);
  SALA_LT(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), kp);
  SALA_LT(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, uint64_t(k.in), uint64_t(k.out), int64_t(k.in)), kp);
  SALA_LT(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, uint64_t(k.in), uint64_t(k.N), int64_t(k.ldx)), kp);
  SALA_LT(cublasLtMatrixLayoutCreate(&p.d, k.f32 ? CUDA_R_32F : CUDA_R_16BF, uint64_t(k.out), uint64_t(k.N),
                                     int64_t(k.ldy)),
          kp);
  cublasLtMatmulPreference_t pref = nullptr;
  SALA_LT(cublasLtMatmulPreferenceCreate(&pref), kp);
  struct PrefGuard {
    cublasLtMatmulPreference_t p;
    ~PrefGuard() { cublasLtMatmulPreferenceDestroy(p); }
  } guard{pref};
  const uint64_t ws = ws_bytes;
  SALA_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), kp);
  SALA_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k.aw, 4), kp);
  SALA_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k.ax, 4), kp);
  SALA_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k.ay, 4), kp);
  SALA_LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k.ay, 4), kp);
  cublasLtMatmulHeuristicResult_t res[kCandidates] = {};
  int found = 0;
  SALA_LT(cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.d, p.d, pref, kCandidates, res, &found), kp);
  for (int i = 0; i < found; ++i)
    if (res[i].state == CUBLAS_STATUS_SUCCESS) p.candidates.push_back(res[i].algo);
  if (p.candidates.empty()) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.d);
    cublasLtMatmulDescDestroy(p.desc);
    fail("cuBLASLt has no algorithm for {}", shape_text(k));
  }
  p.algo = p.candidates[0];
  p.tuned = k.N > kTuneMaxRows || p.candidates.size() == 1;
  return p;
}

}  // namespace

Gemm::Gemm(size_t workspace_bytes, bool tune_small, bool use_gemv) : impl_(std::make_unique<Impl>()) {
  impl_->tune_small = tune_small;
  impl_->use_gemv = use_gemv;
  SALA_LT(cublasLtCreate(&impl_->handle), nullptr);
  impl_->workspace_bytes = workspace_bytes;
  if (workspace_bytes) SALA_CUDA_CHECK(cudaMalloc(&impl_->workspace, workspace_bytes));
  SALA_CUDA_CHECK(cudaEventCreate(&impl_->e0));
  SALA_CUDA_CHECK(cudaEventCreate(&impl_->e1));
}

Gemm::~Gemm() = default;

size_t Gemm::cached_plans() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->plans.size();
}

void Gemm::matmul(__nv_bfloat16* y, int ldy, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N, int in,
                  int out, cudaStream_t s) {
  run(y, false, ldy, x, ldx, w, N, in, out, s);
}

void Gemm::matmul_f32(float* y, int ldy, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w, int N, int in,
                      int out, cudaStream_t s) {
  run(y, true, ldy, x, ldx, w, N, in, out, s);
}

void Gemm::matmul_silu(__nv_bfloat16* m, __nv_bfloat16* gu, const __nv_bfloat16* x, int ldx, const __nv_bfloat16* w,
                       int N, int in, int out, cudaStream_t s, bool pairs) {
  run(gu, false, out, x, ldx, w, N, in, out, s, m, pairs);
}

void Gemm::run(void* y, bool f32, int ldy, const void* x, int ldx, const void* w, int N, int in, int out,
               cudaStream_t s, __nv_bfloat16* silu, bool pairs) {
  const Key k{N,
              in,
              out,
              ldx,
              ldy,
              f32,
              alignment_of(x, int64_t(ldx) * 2),
              alignment_of(w, int64_t(in) * 2),
              alignment_of(y, int64_t(ldy) * (f32 ? 4 : 2)),
              silu ? (pairs ? 2 : 1) : 0};
  if (N < 0 || in <= 0 || out <= 0 || ldx < in || ldy < out || (silu && (f32 || out % 2 != 0)))
    throw InternalError(fmt::format("Gemm: bad shape {}{}", shape_text(k), silu ? " (silu)" : ""));
  if (N == 0) return;
  std::lock_guard<std::mutex> lock(impl_->mu);
  // the versions of sala's gemv that race cuBLASLt for this shape
  const auto races = [&](int v) {
    return impl_->use_gemv && impl_->tune_small && version_in_race(v) && gemv_supported(x, ldx, w, N, in, v);
  };
  bool gemv_ok = false;
  for (int v = 1; v <= kGemvVersions; ++v) gemv_ok = gemv_ok || races(v);
  auto it = impl_->plans.find(k);
  if (it == impl_->plans.end()) {
    it = impl_->plans.emplace(k, make_plan(impl_->handle, impl_->workspace_bytes, k)).first;
    if (!impl_->tune_small) it->second.tuned = true;
    if (gemv_ok) it->second.tuned = false;  // a single cuBLASLt candidate still races the gemv
  }
  Plan& p = it->second;
  auto run_gemv = [&](int version) {
    const auto* xb = static_cast<const __nv_bfloat16*>(x);
    const auto* wb = static_cast<const __nv_bfloat16*>(w);
    if (silu)
      gemv_silu(silu, out / 2, xb, ldx, wb, N, in, out, s, version, pairs);
    else
      gemv(y, f32, ldy, xb, ldx, wb, N, in, out, s, version);
  };
  const float alpha = 1.0f, beta = 0.0f;
  auto launch = [&](const cublasLtMatmulAlgo_t& algo) {
    const cublasStatus_t st = cublasLtMatmul(impl_->handle, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d,
                                             &algo, impl_->workspace, impl_->workspace_bytes, s);
    if (st == CUBLAS_STATUS_SUCCESS && silu) {
      if (pairs)
        cuda::silu_mul_pairs(silu, static_cast<const __nv_bfloat16*>(y), N, out / 2, s);
      else
        cuda::silu_mul(silu, static_cast<const __nv_bfloat16*>(y), N, out / 2, s);
    }
    return st;
  };
  if (!p.tuned) {
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    SALA_CUDA_CHECK(cudaStreamIsCapturing(s, &cap));
    int chosen = INT32_MIN;
    {
      std::lock_guard<std::mutex> cl(tune_cache().mu);
      auto ci = tune_cache().choice.find({k, gemv_ok});
      if (ci != tune_cache().choice.end()) chosen = ci->second;
    }
    if (chosen != INT32_MIN && chosen < int(p.candidates.size())) {  // tuned before, by this or another Gemm
      p.gemv = chosen < 0 ? -chosen : 0;
      if (chosen >= 0) p.algo = p.candidates[size_t(chosen)];
      p.tuned = true;
    } else if (cap == cudaStreamCaptureStatusNone) {  // timing needs a synchronisation: never inside a graph capture
      // Every candidate (cuBLASLt's, then each gemv version) timed in turns: kRounds rounds, each timing 3 launches of
      // every candidate in order, and a candidate's best round counts. Timing each candidate's runs back to back
      // (best of 5) let a clock ramp or a burst of noise during one candidate's turn decide: in one H200 kernel lab
      // the engine's pick ran 8% slower than the best candidate (q|k|v|z at N = 32, 45.4 vs 41.9 us). A warm-up
      // launch first; a cuBLASLt refusal drops the candidate.
      constexpr int kRounds = 7;
      std::vector<int> ids;  // >= 0: cuBLASLt candidate; < 0: gemv version -id
      SALA_CUDA_CHECK(cudaStreamSynchronize(s));
      for (size_t i = 0; i < p.candidates.size(); ++i)
        if (launch(p.candidates[i]) == CUBLAS_STATUS_SUCCESS) ids.push_back(int(i));
      for (int v = 1; v <= kGemvVersions; ++v)
        if (races(v)) run_gemv(v), ids.push_back(-v);
      const auto run_id = [&](int id) {
        if (id < 0)
          run_gemv(-id);
        else
          SALA_LT(launch(p.candidates[size_t(id)]), &k);
      };
      std::vector<float> best(ids.size(), 0.f);
      for (int round = 0; round < kRounds; ++round)
        for (size_t i = 0; i < ids.size(); ++i) {
          SALA_CUDA_CHECK(cudaEventRecord(impl_->e0, s));
          for (int l = 0; l < 3; ++l) run_id(ids[i]);
          SALA_CUDA_CHECK(cudaEventRecord(impl_->e1, s));
          SALA_CUDA_CHECK(cudaEventSynchronize(impl_->e1));
          float ms = 0;
          SALA_CUDA_CHECK(cudaEventElapsedTime(&ms, impl_->e0, impl_->e1));
          best[i] = round == 0 ? ms : std::min(best[i], ms);
        }
      if (ids.empty()) throw InternalError(fmt::format("Gemm: no candidate runs {}", shape_text(k)));
      const size_t win = size_t(std::min_element(best.begin(), best.end()) - best.begin());
      p.gemv = ids[win] < 0 ? -ids[win] : 0;
      size_t best_i = 0;  // the fastest cuBLASLt candidate: the plan's algo whichever wins
      for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] >= 0 && (ids[best_i] < 0 || best[i] < best[best_i])) best_i = i;
      if (ids[best_i] >= 0) p.algo = p.candidates[size_t(ids[best_i])];
      p.tuned = true;
      std::lock_guard<std::mutex> cl(tune_cache().mu);
      tune_cache().choice[{k, gemv_ok}] = ids[win];
    }
  }
  if (p.gemv)
    run_gemv(p.gemv);
  else
    SALA_LT(launch(p.algo), &k);
}

}  // namespace sala::cuda
