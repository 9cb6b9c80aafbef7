// bench_gemm_lightning: the GEMMs, Lightning kernels and elementwise kernels of the CUDA backend at MiniCPM-SALA 9B
// shapes (hidden 4096, inter 16384, 32 heads of 128, vocabulary 73448, bf16), each beside its floor: the larger of
// FLOPs over 790 TFLOP/s (bf16 dense, measured on an H200 through PyTorch and cuBLASLt) and bytes over 4.17 TB/s
// (device copy bandwidth, read + write), and the ratio time / floor. CUDA events, warm-up, median of repeats.
// Inputs are random bf16 (never zeros: zeros run faster than real data).
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/gemm.h"
#include "sala/backend/cuda/kernels.h"
#include "sala/backend/cuda/lightning_paths.h"
#include "sala/core/dtype.h"
#include "sala/core/rng.h"
#include "sala/model/model.h"

using namespace sala;
using cuda::bf16;

namespace {

constexpr double kPeakFlops = 790e12, kPeakBytes = 4.17e12;

struct Row {
  std::string op, shape;
  double us, rate;
  const char* unit;
  double floor_us;
};
std::vector<Row> g_rows;

void report(const std::string& op, const std::string& shape, double ms, double flops, double bytes) {
  const double t = ms * 1e-3, floor_t = std::max(flops / kPeakFlops, bytes / kPeakBytes);
  const bool flop_bound = flops / kPeakFlops >= bytes / kPeakBytes;
  Row r{op, shape, ms * 1e3, flop_bound ? flops / t / 1e12 : bytes / t / 1e9, flop_bound ? "TFLOP/s" : "GB/s",
        floor_t * 1e6};
  std::printf("%-24s %-28s %10.1f us %9.1f %-7s floor %9.1f us  ratio %5.2f\n", r.op.c_str(), r.shape.c_str(), r.us,
              r.rate, r.unit, r.floor_us, r.us / r.floor_us);
  std::fflush(stdout);
  g_rows.push_back(r);
}

void* dmalloc(size_t bytes) {
  void* p = nullptr;
  SALA_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

// Random normal bf16 (std `sd`): an 8 MiB host block, tiled over the buffer.
void fill_bf16(void* dev, size_t count, uint64_t seed, float sd) {
  const size_t block = size_t(1) << 22;
  std::vector<uint16_t> h(std::min(block, count));
  Rng rng(seed);
  for (auto& x : h) x = f32_to_bf16(float(rng.normal()) * sd);
  for (size_t off = 0; off < count; off += h.size()) {
    const size_t n = std::min(h.size(), count - off);
    SALA_CUDA_CHECK(cudaMemcpy(static_cast<uint16_t*>(dev) + off, h.data(), n * 2, cudaMemcpyHostToDevice));
  }
}

template <class T>
T* upload(const std::vector<T>& h) {
  T* p = static_cast<T*>(dmalloc(std::max<size_t>(h.size(), 1) * sizeof(T)));
  SALA_CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

cudaStream_t g_stream;
cudaEvent_t g_e0, g_e1;

template <class F>
double time_ms(F&& fn, int reps, int warm = 2) {
  for (int i = 0; i < warm; ++i) fn();
  SALA_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    SALA_CUDA_CHECK(cudaEventRecord(g_e0, g_stream));
    fn();
    SALA_CUDA_CHECK(cudaEventRecord(g_e1, g_stream));
    SALA_CUDA_CHECK(cudaEventSynchronize(g_e1));
    float ms = 0;
    SALA_CUDA_CHECK(cudaEventElapsedTime(&ms, g_e0, g_e1));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return double(t[t.size() / 2]);
}

// Device arrays of a step's rows: S sequences of T rows each, slots 0..S-1.
struct Step {
  std::vector<int32_t> pos, row_seq, cu{0}, slot, pos0, call_len;
  std::vector<uint32_t> flags;
  cuda::StepRows rows;
  std::vector<void*> owned;
  Step(int S, int T, uint32_t fl) {
    for (int s = 0; s < S; ++s) {
      for (int t = 0; t < T; ++t) {
        pos.push_back(t);
        row_seq.push_back(s);
      }
      cu.push_back(cu.back() + T);
      slot.push_back(s);
      pos0.push_back(0);
      call_len.push_back(T);
      flags.push_back(fl);
    }
    rows.N = S * T;
    rows.S = S;
    rows.pos = keep(upload(pos));
    rows.row_seq = keep(upload(row_seq));
    rows.cu_seqlens = keep(upload(cu));
    rows.slot = keep(upload(slot));
    rows.pos0 = keep(upload(pos0));
    rows.call_len = keep(upload(call_len));
    rows.flags = keep(upload(flags));
  }
  template <class T>
  T* keep(T* p) {
    owned.push_back(p);
    return p;
  }
  ~Step() {
    for (void* p : owned) cudaFree(p);
  }
};

void bench_gemm() {
  struct Shape {
    const char* name;
    int in, out;
    bool f32;
  };
  const Shape shapes[] = {{"o 4096->4096", 4096, 4096, false},
                          {"q|k|v|z 4096->16384", 4096, 4 * 4096, false},
                          {"gate|up 4096->32768", 4096, 2 * 16384, false},
                          {"down 16384->4096", 16384, 4096, false},
                          {"lm_head 4096->73448 f32", 4096, 73448, true}};
  const int Ns[] = {1, 4, 8, 16, 32, 2048, 16384};
  const size_t wmax = size_t(73448) * 4096, xmax = size_t(16384) * 16384, ymax = size_t(16384) * 73448 * 4;
  void* w = dmalloc(wmax * 2);
  void* x = dmalloc(xmax * 2);
  void* y = dmalloc(ymax);
  fill_bf16(w, wmax, 1, 0.02f);
  fill_bf16(x, xmax, 2, 1.0f);
  // kernel lab for the decode products: the engine's Gemm (tuned small-N, sala's gemv among the candidates),
  // cuBLASLt alone (tuned), the heuristic's first pick, and each gemv version alone, side by side on the same
  // operands (each version is checked against the CPU by tests/cuda CudaGemm.GemvMatchesCpu and
  // CudaGemm.GemvTensorCoresMatchCpu)
  cuda::Gemm gemm, lt_only(size_t(32) << 20, true, false), heuristic(size_t(32) << 20, false);
  for (const Shape& sh : shapes)
    for (int N : Ns)
      for (int variant = 0; variant < (N <= 64 ? 3 + cuda::kGemvVersions : 1); ++variant) {
        if (variant >= 3 && !cuda::gemv_supported(x, sh.in, w, N, sh.in, variant - 2)) continue;
        cuda::Gemm& gm = variant == 0 ? gemm : variant == 1 ? lt_only : heuristic;
        auto run = [&] {
          if (variant >= 3)
            cuda::gemv(y, sh.f32, sh.out, static_cast<const bf16*>(x), sh.in, static_cast<const bf16*>(w), N, sh.in,
                       sh.out, g_stream, variant - 2);
          else if (sh.f32)
            gm.matmul_f32(static_cast<float*>(y), sh.out, static_cast<const bf16*>(x), sh.in,
                          static_cast<const bf16*>(w), N, sh.in, sh.out, g_stream);
          else
            gm.matmul(static_cast<bf16*>(y), sh.out, static_cast<const bf16*>(x), sh.in, static_cast<const bf16*>(w),
                      N, sh.in, sh.out, g_stream);
        };
        const double flops = 2.0 * N * double(sh.in) * sh.out;
        const int reps = flops > 1e12 ? 10 : 30;
        const double ms = time_ms(run, reps, 3);
        const double bytes = 2.0 * sh.in * double(sh.out) + 2.0 * N * sh.in + (sh.f32 ? 4.0 : 2.0) * N * sh.out;
        static const char* names[] = {"gemm (engine)",       "gemm (cuBLASLt tuned)", "gemm (heuristic #0)",
                                      "gemv v1 (sala)",      "gemv v2 (sala)",        "gemv v3 (sala)",
                                      "gemv v4 (mma 64x128)", "gemv v5 (mma 64x128 /2)",
                                      "gemv v6 (mma 64x128 /4)", "gemv v7 (mma 32x256)",
                                      "gemv v8 (mma 32x256 /2)", "gemv v9 (mma 32x256 /4)",
                                      "gemv v10 (mma 128x128)",  "gemv v11 (mma 128x128 /2)",
                                      "gemv v12 (mma 128x128 /4)"};
        static_assert(sizeof names / sizeof names[0] == 3 + cuda::kGemvVersions);
        report(names[variant], std::string(sh.name) + " N=" + std::to_string(N), ms, flops, bytes);
      }
  SALA_CUDA_CHECK(cudaFree(w));
  SALA_CUDA_CHECK(cudaFree(x));
  SALA_CUDA_CHECK(cudaFree(y));
}

// FLOP model of the chunked form (chunk 64, d = e = 128): intra 2·64·128·2 + inter 2·128² + state 2·128² per token per
// head (../shared/research/kernels-engines.md §1.6).
constexpr double kLightningFlopsPerTokenHead = 98304;

void bench_lightning_prefill() {
  const int H = 32, D = 128, ld = 4 * 4096, ldo = 4096;
  const int64_t hdd = int64_t(H) * D * D;
  std::vector<float> g;
  for (double s : alibi_slopes(H)) g.push_back(float(-s));
  float* dg = upload(g);
  struct Case {
    int S, T;
  };
  for (Case c : {Case{1, 32768}, Case{8, 4096}}) {
    const int N = c.S * c.T;
    void* x = dmalloc(size_t(N) * ld * 2);
    void* o = dmalloc(size_t(N) * ldo * 2);
    float* st = static_cast<float*>(dmalloc(size_t(c.S) * hdd * 4));
    fill_bf16(x, size_t(N) * ld, 3, 1.0f);
    Step step(c.S, c.T, cuda::kSeqFresh);
    const double flops = double(N) * H * kLightningFlopsPerTokenHead;
    const double bytes = 4.0 * N * 4096 * 2 + 2.0 * c.S * hdd * 4;
    for (auto [path, name] : {std::pair{cuda::LightningPath::Auto, "auto"},
                              std::pair{cuda::LightningPath::Chunk16, "BV16"},
                              std::pair{cuda::LightningPath::Chunk32, "BV32"},
                              std::pair{cuda::LightningPath::Chunk64, "BV64"}}) {
      const double ms = time_ms(
          [&] {
            cuda::lightning_path(path, static_cast<bf16*>(o), ldo, static_cast<const bf16*>(x), ld, 0, 4096, 8192, st,
                                 hdd, dg, 0.0883883f, H, H, D, step.rows, g_stream);
          },
          5);
      report(std::string("lightning prefill ") + name, std::to_string(c.S) + " x " + std::to_string(c.T) + " tok",
             ms, flops, bytes);
      std::printf("%-24s %-28s %10.2f Mtok/s  %.1f TFLOP/s (98K FLOP/token/head)\n", "", "", N / (ms * 1e-3) / 1e6,
                  flops / (ms * 1e-3) / 1e12);
    }
    SALA_CUDA_CHECK(cudaFree(x));
    SALA_CUDA_CHECK(cudaFree(o));
    SALA_CUDA_CHECK(cudaFree(st));
  }
  SALA_CUDA_CHECK(cudaFree(dg));
}

void bench_lightning_decode() {
  const int H = 32, D = 128, layers = 24, ld = 4 * 4096, ldo = 4096;
  const int64_t hdd = int64_t(H) * D * D;
  std::vector<float> g;
  for (double s : alibi_slopes(H)) g.push_back(float(-s));
  float* dg = upload(g);
  for (int B : {1, 32}) {
    std::vector<float*> st(layers);
    for (auto& p : st) {
      p = static_cast<float*>(dmalloc(size_t(B) * hdd * 4));
      SALA_CUDA_CHECK(cudaMemset(p, 0, size_t(B) * hdd * 4));
    }
    void* x = dmalloc(size_t(B) * ld * 2);
    void* o = dmalloc(size_t(B) * ldo * 2);
    fill_bf16(x, size_t(B) * ld, 4, 1.0f);
    Step step(B, 1, 0);
    auto layer_loop = [&] {
      for (int l = 0; l < layers; ++l)
        cuda::lightning(static_cast<bf16*>(o), ldo, static_cast<const bf16*>(x), ld, 0, 4096, 8192, st[size_t(l)],
                        hdd, dg, 0.0883883f, H, H, D, step.rows, g_stream);
    };
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    SALA_CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
    layer_loop();
    SALA_CUDA_CHECK(cudaStreamEndCapture(g_stream, &graph));
    SALA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const int inner = 20;
    const double graph_ms = time_ms(
                                [&] {
                                  for (int i = 0; i < inner; ++i) SALA_CUDA_CHECK(cudaGraphLaunch(exec, g_stream));
                                },
                                7) /
                            inner;
    const double plain_ms = time_ms(
                                [&] {
                                  for (int i = 0; i < inner; ++i) layer_loop();
                                },
                                7) /
                            inner;
    const double bytes = 2.0 * layers * B * double(hdd) * 4 + layers * B * (4.0 * 4096 * 2);
    const double flops = 4.0 * layers * B * double(hdd);
    report("lightning decode graph", "24 layers, batch " + std::to_string(B), graph_ms, flops, bytes);
    report("lightning decode", "24 launches, batch " + std::to_string(B), plain_ms, flops, bytes);
    SALA_CUDA_CHECK(cudaGraphExecDestroy(exec));
    SALA_CUDA_CHECK(cudaGraphDestroy(graph));
    for (auto p : st) SALA_CUDA_CHECK(cudaFree(p));
    SALA_CUDA_CHECK(cudaFree(x));
    SALA_CUDA_CHECK(cudaFree(o));
  }
  SALA_CUDA_CHECK(cudaFree(dg));
}

void bench_elementwise() {
  const int N = 8192, hidden = 4096, inter = 16384, H = 32, D = 128;
  float* h = static_cast<float*>(dmalloc(size_t(N) * hidden * 4));
  void* a = dmalloc(size_t(N) * hidden * 2);
  void* out = dmalloc(size_t(N) * inter * 2);
  void* gu = dmalloc(size_t(N) * 2 * inter * 2);
  void* w = dmalloc(size_t(inter) * 2);
  fill_bf16(a, size_t(N) * hidden, 5, 1.0f);
  fill_bf16(gu, size_t(N) * 2 * inter, 6, 1.0f);
  fill_bf16(w, size_t(inter), 7, 1.0f);
  fill_bf16(h, size_t(N) * hidden * 2, 8, 1.0f);  // fp32 bit patterns of random bf16 pairs: finite, non-zero
  double ms = time_ms(
      [&] {
        cuda::add_rmsnorm(h, static_cast<const bf16*>(a), hidden, 0.25f, static_cast<bf16*>(out), hidden,
                          static_cast<const bf16*>(w), 1e-6f, 1.0f, N, hidden, g_stream);
      },
      20);
  report("add_rmsnorm", std::to_string(N) + " x 4096", ms, 0, double(N) * hidden * (4 + 4 + 2 + 2));
  ms = time_ms([&] { cuda::silu_mul(static_cast<bf16*>(out), static_cast<const bf16*>(gu), N, inter, g_stream); }, 20);
  report("silu_mul", std::to_string(N) + " x 16384", ms, 0, double(N) * inter * (4 + 2));
  // q|k norm + RoPE in place over the 64 heads of a q|k|v|z row
  std::vector<float> inv(size_t(D / 2));
  for (int i = 0; i < D / 2; ++i) inv[size_t(i)] = 1.0f / std::pow(10000.0f, float(2 * i) / float(D));
  float* dinv = upload(inv);
  const int Nr = 4096;  // gu holds Nr rows of 4 * 4096
  Step step(1, Nr, 0);
  cuda::RopeArgs ra;
  ra.inv_freq = dinv;
  ms = time_ms(
      [&] {
        cuda::qk_norm_rope(static_cast<bf16*>(gu), 4 * 4096, 0, H, 4096, H, D, static_cast<const bf16*>(w),
                           static_cast<const bf16*>(w), 1e-6f, ra, step.rows, g_stream);
      },
      20);
  report("qk_norm_rope", std::to_string(Nr) + " x 64 heads of 128", ms, 0, double(Nr) * 2 * 4096 * 2 * 2);
  for (void* p : {static_cast<void*>(h), a, out, gu, w, static_cast<void*>(dinv)}) SALA_CUDA_CHECK(cudaFree(p));
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  SALA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  SALA_CUDA_CHECK(cudaStreamCreate(&g_stream));
  SALA_CUDA_CHECK(cudaEventCreate(&g_e0));
  SALA_CUDA_CHECK(cudaEventCreate(&g_e1));
  std::printf("bench_gemm_lightning on %s (%d SMs), floors: %.0f TFLOP/s bf16, %.2f TB/s\n", prop.name,
              prop.multiProcessorCount, kPeakFlops / 1e12, kPeakBytes / 1e12);
  {
    const size_t bytes = size_t(1) << 30;
    void* a = dmalloc(bytes);
    void* b = dmalloc(bytes);
    SALA_CUDA_CHECK(cudaMemset(a, 1, bytes));
    const double ms = time_ms([&] { SALA_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, g_stream)); }, 10);
    std::printf("measured device copy: %.0f GB/s (read + write)\n", 2.0 * bytes / (ms * 1e-3) / 1e9);
    SALA_CUDA_CHECK(cudaFree(a));
    SALA_CUDA_CHECK(cudaFree(b));
  }
  const char* only = std::getenv("SALA_BENCH_ONLY");  // gemm | prefill | decode | elementwise
  auto want = [&](const char* part) { return !only || std::strstr(only, part); };
  if (want("gemm")) bench_gemm();
  if (want("prefill")) bench_lightning_prefill();
  if (want("decode")) bench_lightning_decode();
  if (want("elementwise")) bench_elementwise();

  std::printf("\n== summary (time vs floor = max(FLOP / 790 TFLOP/s, bytes / 4.17 TB/s))\n");
  std::printf("%-24s %-28s %10s %14s %10s %6s\n", "op", "shape", "time_us", "rate", "floor_us", "ratio");
  for (const Row& r : g_rows)
    std::printf("%-24s %-28s %10.1f %8.1f %-7s %8.1f %6.2f\n", r.op.c_str(), r.shape.c_str(), r.us, r.rate, r.unit,
                r.floor_us, r.us / r.floor_us);
  return 0;
}
