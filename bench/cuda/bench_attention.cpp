// bench_attention: the attention-side kernels at MiniCPM-SALA shapes (32 query heads, 2 KV heads, D 128, bf16, one
// sequence, pages in order): dense causal prefill at 8K / 32K, block-sparse prefill at 32K / 128K over the blocks
// that infllmv2_select picks (topk 96, 32 local, 1 init), stage-1 selection at 32K / 128K, and decode rows at 128K
// (dense, sparse, selection). Each line: median time of several runs after a warm-up (CUDA events), the work
// (useful FLOPs or bytes), the floor (FLOPs / 790 TFLOP/s bf16, bytes / 4.17 TB/s, the larger) and time / floor.
//   dense FLOPs     4 T^2 D Hq / 2 (causal)
//   sparse FLOPs    4 D Hq x keys visited (each row's selected keys <= its position, counted from the idx lists)
//   stage-1 FLOPs   2 D Hq x (visible K1 + visible K2 windows) per row
//   decode bytes    K + V of the keys the row reads (dense: all; sparse: its blocks), + K1 + K2 for selection
// Inputs are random bf16 (never zeros): a 32 MiB random block tiled over the buffers.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <set>
#include <vector>

#include "sala/backend/cuda/attention_tuning.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"

using namespace sala;
using cuda::bf16;

namespace {

constexpr int Hq = 32, Hkv = 2, D = 128;
constexpr double kPeakFlops = 790e12, kPeakBytes = 4.17e12;

template <class T>
T* dev_alloc(size_t n) {
  T* p = nullptr;
  SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)));
  return p;
}

// Fills n bf16 with a tiled random block (uniform in [-2, 2], bf16-rounded).
void fill_random(bf16* dst, size_t n) {
  static std::vector<uint16_t> block = [] {
    std::vector<uint16_t> b(size_t(16) << 20);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (auto& x : b) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      const float f = float(double(s >> 11) * 0x1.0p-53 * 4.0 - 2.0);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      x = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return b;
  }();
  for (size_t at = 0; at < n; at += block.size()) {
    const size_t m = std::min(block.size(), n - at);
    SALA_CUDA_CHECK(cudaMemcpy(dst + at, block.data(), m * 2, cudaMemcpyHostToDevice));
  }
}

double median_ms(const std::function<void()>& fn, int reps, int inner = 1) {
  cudaEvent_t e0, e1;
  SALA_CUDA_CHECK(cudaEventCreate(&e0));
  SALA_CUDA_CHECK(cudaEventCreate(&e1));
  fn();  // warm-up
  SALA_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    SALA_CUDA_CHECK(cudaEventRecord(e0));
    for (int i = 0; i < inner; ++i) fn();
    SALA_CUDA_CHECK(cudaEventRecord(e1));
    SALA_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms;
    SALA_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms / float(inner));
  }
  SALA_CUDA_CHECK(cudaEventDestroy(e0));
  SALA_CUDA_CHECK(cudaEventDestroy(e1));
  std::sort(t.begin(), t.end());
  return double(t[t.size() / 2]);
}

struct Line {
  std::string op, shape;
  double ms, flops, bytes;
};
std::vector<Line> lines;

void report(const std::string& op, const std::string& shape, double ms, double flops, double bytes) {
  lines.push_back({op, shape, ms, flops, bytes});
  const double floor_ms = std::max(flops / kPeakFlops, bytes / kPeakBytes) * 1e3;
  std::printf("%-22s %-22s %10.3f ms  %8.1f TFLOP/s  %7.2f TB/s  floor %9.3f ms  ratio %6.2f\n", op.c_str(),
              shape.c_str(), ms, flops / (ms * 1e-3) / 1e12, bytes / (ms * 1e-3) / 1e12, floor_ms, ms / floor_ms);
  std::fflush(stdout);
}

int visible(int pos, int call_len, int stride) {  // cpu::stage1_visible_windows
  const int kernel = 2 * stride;
  const int complete = pos + 1 >= kernel ? (pos + 1 - kernel) / stride + 1 : 0;
  const bool off = call_len >= kernel - 1 && call_len % stride == stride - 1;
  return std::max(0, complete - (off ? 1 : 0));
}

// One sequence of T tokens in slot 0 (pages 0 .. in order), prefilled as one call; device buffers for its step rows.
struct Seq {
  int T, pages;
  size_t ld = size_t(Hq + 2 * Hkv) * D;
  bf16 *x, *kp, *vp, *k1, *k2, *o;
  int32_t *pos, *row_seq, *cu, *slot, *pos0, *call_len, *pt;
  uint32_t *flags_dense, *flags_sparse;
  // the last row alone, as a decode step
  int32_t *d_pos, *d_row_seq, *d_cu, *d_call_len;

  explicit Seq(int T_) : T(T_), pages((T_ + 63) / 64) {
    x = dev_alloc<bf16>(size_t(T) * ld);
    fill_random(x, size_t(T) * ld);
    kp = dev_alloc<bf16>(size_t(pages) * Hkv * 64 * D);
    vp = dev_alloc<bf16>(size_t(pages) * Hkv * 64 * D);
    k1 = dev_alloc<bf16>(size_t(pages) * Hkv * 4 * D);
    k2 = dev_alloc<bf16>(size_t(pages) * Hkv * D);
    o = dev_alloc<bf16>(size_t(T) * Hq * D);
    std::vector<int32_t> hpos(static_cast<size_t>(T)), zeros(static_cast<size_t>(T), 0), hpt(static_cast<size_t>(pages));
    for (int i = 0; i < T; ++i) hpos[size_t(i)] = i;
    for (int j = 0; j < pages; ++j) hpt[size_t(j)] = j;
    auto up = [](const std::vector<int32_t>& h) {
      int32_t* p = dev_alloc<int32_t>(h.size());
      SALA_CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
      return p;
    };
    pos = up(hpos);
    row_seq = up(zeros);
    cu = up({0, T});
    slot = up({0});
    pos0 = up({0});
    call_len = up({T});
    pt = up(hpt);
    flags_dense = reinterpret_cast<uint32_t*>(up({0}));
    flags_sparse = reinterpret_cast<uint32_t*>(up({int32_t(cuda::kSeqSparse)}));
    d_pos = up({T - 1});
    d_row_seq = up({0});
    d_cu = up({0, 1});
    d_call_len = up({1});
  }
  cuda::StepRows rows(bool sparse) const {
    cuda::StepRows r;
    r.N = T;
    r.S = 1;
    r.pos = pos;
    r.row_seq = row_seq;
    r.cu_seqlens = cu;
    r.slot = slot;
    r.pos0 = pos0;
    r.call_len = call_len;
    r.flags = sparse ? flags_sparse : flags_dense;
    r.page_table = pt;
    r.pt_stride = pages;
    return r;
  }
  cuda::StepRows decode_rows(bool sparse) const {
    cuda::StepRows r = rows(sparse);
    r.N = 1;
    r.pos = d_pos;
    r.row_seq = d_row_seq;
    r.cu_seqlens = d_cu;
    r.pos0 = d_pos;
    r.call_len = d_call_len;
    return r;
  }
  const bf16* last_row() const { return x + size_t(T - 1) * ld; }
  void append() {
    cuda::kv_append(kp, vp, k1, k2, x, int(ld), Hq * D, (Hq + Hkv) * D, Hkv, D, rows(false), nullptr);
  }
};

cuda::SelectArgs sala_select() {
  cuda::SelectArgs a;
  a.scale = 1.0f / std::sqrt(float(D));
  return a;
}

// keys visited by the rows of idx (N, Hkv, K), each row at position pos0 + r; times the heads per group
double sparse_keys(const int32_t* didx, int N, int pos0, int K) {
  std::vector<int32_t> idx(size_t(N) * Hkv * K);
  SALA_CUDA_CHECK(cudaMemcpy(idx.data(), didx, idx.size() * 4, cudaMemcpyDeviceToHost));
  double keys = 0;
  for (int r = 0; r < N; ++r)
    for (int g = 0; g < Hkv; ++g)
      for (int j = 0; j < K; ++j) {
        const int b = idx[(size_t(r) * Hkv + g) * K + j];
        if (b < 0) continue;
        keys += std::max(0, std::min(64, pos0 + r - 64 * b + 1));
      }
  return keys * (Hq / Hkv);
}

}  // namespace

int main() {
  cudaDeviceProp prop;
  SALA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bench_attention on %s (%d SMs); SALA shapes: %d q heads, %d kv heads, D %d, bf16\n", prop.name,
              prop.multiProcessorCount, Hq, Hkv, D);
  std::printf("floors: FLOPs / %.0f TFLOP/s, bytes / %.2f TB/s\n\n", kPeakFlops / 1e12, kPeakBytes / 1e12);
  const float scale = 1.0f / std::sqrt(float(D));
  const cuda::SelectArgs sa = sala_select();
  const double kv_bytes_per_key = 2.0 * Hkv * D * 2;  // K + V, all kv heads

  for (int T : {8192, 32768}) {  // dense causal prefill
    Seq s(T);
    s.append();
    const size_t ws = cuda::attention_workspace_bytes(T, 1, Hq, Hkv, D, T);
    void* w = ws ? dev_alloc<uint8_t>(ws) : nullptr;
    const double flops = 4.0 * double(T) * T * D * Hq / 2;
    const double bytes = double(T) * (2.0 * Hq * D * 2 + kv_bytes_per_key);
    // kernel lab: v1 (mma.sync) and v2 (wgmma) at 8 and 4 warps, v3 (paired warpgroups, 8 warps), then the
    // launcher's choice
    for (auto [version, warps] :
         {std::pair{1, 8}, std::pair{1, 4}, std::pair{2, 8}, std::pair{2, 4}, std::pair{3, 8}, std::pair{0, 0}}) {
      cuda::attention_version_override(version);
      cuda::attention_warps_override(warps);
      const double ms = median_ms([&] {
        cuda::attention(s.o, Hq * D, s.x, int(s.ld), 0, Hq, Hkv, D, s.kp, s.vp, nullptr, 0, scale, T, s.rows(false),
                        w, nullptr);
      }, 5);
      const std::string name =
          version == 0 ? "attention dense" : "attn dense v" + std::to_string(version) + " " + std::to_string(warps) + "w";
      report(name, "prefill " + std::to_string(T / 1024) + "K", ms, flops, bytes);
    }
    cuda::attention_warps_override(0);
    cuda::attention_version_override(0);
  }

  for (int T : {32768, 131072}) {  // selection + sparse prefill, then decode rows at the end of the 128K context
    Seq s(T);
    const double ms_app = median_ms([&] { s.append(); }, 3);
    report("kv_append", "prefill " + std::to_string(T / 1024) + "K", ms_app, 0,
           double(T) * kv_bytes_per_key * 2 + double(T) * Hkv * D * 2 * (1.0 / 16 + 1.0 / 64));
    const int K = sa.topk_total;
    int32_t* idx = dev_alloc<int32_t>(size_t(T) * Hkv * K);
    const size_t sws = cuda::select_workspace_bytes(T, 1, Hq, Hkv, T);
    void* sw = dev_alloc<uint8_t>(sws);
    double windows = 0;
    for (int p = 0; p < T; ++p) windows += visible(p, T, 16) + visible(p, T, 64);
    // kernel lab: stage 1 with CTAs of 4 rows (v1, v3) and 16 rows (v2, v4), on mma.sync (v1, v2) and wgmma (v3, v4),
    // beside the launcher's choice; the last run (the choice) leaves the idx lists the sparse attention below reads.
    // Each version is checked against the CPU by tests/cuda (CudaInfllmv2Select.*).
    for (int version : {1, 2, 3, 4, 0}) {
      cuda::SelectArgs sv = sa;
      sv.stage1_version = version;
      const double ms_sel = median_ms([&] {
        cuda::infllmv2_select(idx, s.x, int(s.ld), 0, Hq, Hkv, D, s.k1, s.k2, sv, T, s.rows(true), sw, nullptr);
      }, 3);
      const char* names[] = {"infllmv2_select", "select v1 (4 mma)", "select v2 (16 mma)", "select v3 (4 wg)",
                             "select v4 (16 wg)"};
      report(names[version],
             "prefill " + std::to_string(T / 1024) + "K", ms_sel, 2.0 * D * Hq * windows,
             double(T) * Hq * D * 2 + double(T) * Hkv * 4 * (T / 64 / 2));
    }
    const size_t aws = cuda::attention_workspace_bytes(T, 1, Hq, Hkv, D, T);
    void* aw = aws ? dev_alloc<uint8_t>(aws) : nullptr;
    const double keys = sparse_keys(idx, T, 0, K);
    for (auto [version, warps] :
         {std::pair{1, 4}, std::pair{1, 8}, std::pair{2, 4}, std::pair{2, 8}, std::pair{3, 8}, std::pair{0, 0}}) {
      cuda::attention_version_override(version);  // each version at each CTA size, then the launcher's choice
      cuda::attention_warps_override(warps);
      const double ms_sp = median_ms([&] {
        cuda::attention(s.o, Hq * D, s.x, int(s.ld), 0, Hq, Hkv, D, s.kp, s.vp, idx, K, scale, T, s.rows(true), aw,
                        nullptr);
      }, 3);
      report(version ? "attn sparse v" + std::to_string(version) + " " + std::to_string(warps) + "w"
                     : std::string("attention sparse"),
             "prefill " + std::to_string(T / 1024) + "K", ms_sp, 4.0 * D * keys, double(T) * (2.0 * Hq * D * 2));
    }
    cuda::attention_warps_override(0);
    cuda::attention_version_override(0);
    {
      // How much of a tile's K/V traffic its rows share: the mean union of the lists of 8 consecutive rows (the
      // 8-warp tile's rows), against 8 x the mean list. Random weights select nearly independent blocks per row
      // beyond the 33 forced ones, so each loaded block serves about one warp; then the same kernel with every
      // 8-row group reading its first row's lists (blocks a trained model's neighbouring queries would share).
      std::vector<int32_t> h(size_t(T) * Hkv * K);
      SALA_CUDA_CHECK(cudaMemcpy(h.data(), idx, h.size() * 4, cudaMemcpyDeviceToHost));
      double uni = 0, per_row = 0;
      long tiles = 0;
      for (int r0 = 0; r0 + 8 <= T; r0 += 8)
        for (int g = 0; g < Hkv; ++g) {
          std::set<int> u;
          for (int r = r0; r < r0 + 8; ++r)
            for (int j = 0; j < K; ++j) {
              const int b = h[(size_t(r) * Hkv + g) * K + j];
              if (b >= 0) u.insert(b), per_row += 1;
            }
          uni += double(u.size());
          ++tiles;
        }
      std::printf("  union of 8 rows' lists: %.1f blocks (8 x mean list = %.1f): %.2f warps per loaded block\n",
                  uni / tiles, per_row / tiles, per_row / uni);
      for (int r = 0; r < T; ++r)
        if (r % 8)
          std::copy_n(h.begin() + size_t(r - r % 8) * Hkv * K, size_t(Hkv) * K, h.begin() + size_t(r) * Hkv * K);
      int32_t* shared_idx = dev_alloc<int32_t>(h.size());
      SALA_CUDA_CHECK(cudaMemcpy(shared_idx, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
      for (int version : {1, 2, 3}) {
        cuda::attention_version_override(version);
        const double ms_sh = median_ms([&] {
          cuda::attention(s.o, Hq * D, s.x, int(s.ld), 0, Hq, Hkv, D, s.kp, s.vp, shared_idx, K, scale, T,
                          s.rows(true), aw, nullptr);
        }, 3);
        report("sparse 8-shared v" + std::to_string(version), "prefill " + std::to_string(T / 1024) + "K", ms_sh,
               4.0 * D * sparse_keys(shared_idx, T, 0, K), double(T) * (2.0 * Hq * D * 2));
      }
      cuda::attention_version_override(0);
      SALA_CUDA_CHECK(cudaFree(shared_idx));
    }
    if (T == 131072) {
      // decode rows: one row at position T - 1 (call length 1)
      const size_t dws = cuda::attention_workspace_bytes(1, 1, Hq, Hkv, D, T);
      void* dw = dws ? dev_alloc<uint8_t>(dws) : nullptr;
      const double ms_dd = median_ms([&] {
        cuda::attention(s.o, Hq * D, s.last_row(), int(s.ld), 0, Hq, Hkv, D, s.kp, s.vp, nullptr, 0, scale, T,
                        s.decode_rows(false), dw, nullptr);
      }, 5, 20);
      report("attention dense", "decode 1 row @128K", ms_dd, 4.0 * D * Hq * T, double(T) * kv_bytes_per_key);
      const size_t dsws = cuda::select_workspace_bytes(1, 1, Hq, Hkv, T);
      void* dsw = dev_alloc<uint8_t>(dsws);
      int32_t* didx = dev_alloc<int32_t>(size_t(Hkv) * K);
      const double ms_ds = median_ms([&] {
        cuda::infllmv2_select(didx, s.last_row(), int(s.ld), 0, Hq, Hkv, D, s.k1, s.k2, sa, T, s.decode_rows(true),
                              dsw, nullptr);
      }, 5, 20);
      const double n1 = visible(T - 1, 1, 16), n2 = visible(T - 1, 1, 64);
      report("infllmv2_select", "decode 1 row @128K", ms_ds, 2.0 * D * Hq * (n1 + n2), (n1 + n2) * Hkv * D * 2);
      const double ms_dsp = median_ms([&] {
        cuda::attention(s.o, Hq * D, s.last_row(), int(s.ld), 0, Hq, Hkv, D, s.kp, s.vp, didx, K, scale, T,
                        s.decode_rows(true), dw, nullptr);
      }, 5, 20);
      const double dkeys = sparse_keys(didx, 1, T - 1, K);
      report("attention sparse", "decode 1 row @128K", ms_dsp, 4.0 * D * dkeys, dkeys / (Hq / Hkv) * 2 * D * 2);
    }
  }
  SALA_CUDA_CHECK(cudaDeviceSynchronize());

  std::printf("\n== summary (%s)\n%-18s %-20s %10s %10s %10s %7s\n", prop.name, "op", "shape", "ms", "TFLOP/s", "TB/s",
              "x floor");
  for (auto& l : lines) {
    const double floor_ms = std::max(l.flops / kPeakFlops, l.bytes / kPeakBytes) * 1e3;
    std::printf("%-18s %-20s %10.3f %10.1f %10.2f %7.2f\n", l.op.c_str(), l.shape.c_str(), l.ms,
                l.flops / (l.ms * 1e-3) / 1e12, l.bytes / (l.ms * 1e-3) / 1e12, l.ms / floor_ms);
  }
  return 0;
}
