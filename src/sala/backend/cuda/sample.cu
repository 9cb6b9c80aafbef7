// Token sampling on the GPU, one logits row per sequence, with the rules of runtime/sampler.cpp (Hugging Face's
// order): repetition penalty over the row's history, then greedy argmax (lowest id on ties), or temperature, top-k
// (every token tied with the k-th stays), top-p (smallest prefix whose mass reaches p, at least one token), min-p
// (tokens below min_p times the top probability go), and a draw. Probabilities are computed in double after
// subtracting the maximum, as on the CPU.
//
// Kernels: (1) one block per row applies the penalty once per distinct history token (a bitmap of seen ids in
// shared memory) and either writes the argmax or prepares the sort; (2) CUB's segmented radix sort orders each row by
// logit, descending and stable, so ties keep ascending ids (the CPU's ranking); (3) one block per row walks the
// sorted row: top-k by binary search, the softmax sum by a block reduction, top-p and the draw by block scans, min-p
// by binary search (the probabilities of a sorted row never increase).
//
// The draw of row r at (seed, step) uses u = splitmix64 chain of (seed, step, r), 53 bits, so it is reproducible and
// independent of the batch it runs in.
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <cstdint>

#include "sala/backend/cuda/arg_check.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/kernels.h"

namespace sala::cuda {

namespace {

constexpr int kPrepThreads = 1024;
constexpr int kDrawThreads = 512;
constexpr int kDrawItems = 8;  // consecutive sorted entries per thread in a scan tile
constexpr int kMaxVocab = 48 * 1024 * 8;  // the seen-bitmap lives in (default) shared memory

size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

struct Workspace {
  float* keys_out;
  int32_t* vals_in;
  int32_t* vals_out;
  int32_t* offsets;
  void* cub_tmp;
  size_t cub_bytes;
};

size_t cub_sort_bytes(int rows, int V) {
  size_t bytes = 0;
  SALA_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), rows * V, rows,
      static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(nullptr), 0, 32));
  return bytes;
}

Workspace carve(void* ws, int rows, int V) {
  const size_t n = size_t(rows) * size_t(V);
  char* p = static_cast<char*>(ws);
  Workspace w;
  w.keys_out = reinterpret_cast<float*>(p);
  p += align_up(n * sizeof(float));
  w.vals_in = reinterpret_cast<int32_t*>(p);
  p += align_up(n * sizeof(int32_t));
  w.vals_out = reinterpret_cast<int32_t*>(p);
  p += align_up(n * sizeof(int32_t));
  w.offsets = reinterpret_cast<int32_t*>(p);
  p += align_up(size_t(rows + 1) * sizeof(int32_t));
  w.cub_tmp = p;
  w.cub_bytes = cub_sort_bytes(rows, V);
  return w;
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct ArgBest {
  float v;
  int i;
};
struct ArgBestOp {
  __device__ __forceinline__ ArgBest operator()(const ArgBest& a, const ArgBest& b) const {
    return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
  }
};

// (1) penalty, then argmax (greedy) or the sort's inputs.
__global__ void __launch_bounds__(kPrepThreads)
    prep_kernel(int32_t* __restrict__ out, float* __restrict__ logits, int V, const int32_t* __restrict__ history,
                int hist_len, int hist_ld, float penalty, bool greedy, int32_t* __restrict__ vals_in,
                int32_t* __restrict__ offsets, int rows) {
  extern __shared__ uint32_t seen[];  // (V + 31) / 32 words, only with a penalty
  const int r = blockIdx.x, tid = threadIdx.x;
  float* lr = logits + size_t(r) * V;
  if (penalty != 1.0f && hist_len > 0) {
    const int words = (V + 31) / 32;
    for (int w = tid; w < words; w += kPrepThreads) seen[w] = 0u;
    __syncthreads();
    const int32_t* hr = history + size_t(r) * hist_ld;
    for (int i = tid; i < hist_len; i += kPrepThreads) {
      const int32_t t = hr[i];
      if (t < 0 || t >= V) continue;
      const uint32_t bit = 1u << (t % 32);
      if (atomicOr(&seen[t / 32], bit) & bit) continue;  // another thread owns this id
      const float l = lr[t];
      lr[t] = l > 0 ? l / penalty : l * penalty;
    }
    __syncthreads();  // penalised logits visible to the whole block
  }
  // A NaN or a +Inf would make any token "the answer": the row gives -1 and the draw leaves it. -Inf is a masked
  // token (never drawn), as on the host.
  int bad = 0;
  for (int i = tid; i < V; i += kPrepThreads) bad |= isnan(lr[i]) || lr[i] == INFINITY;
  if (__syncthreads_or(bad)) {
    if (tid == 0) out[r] = -1;
    return;
  }
  if (greedy) {
    ArgBest best{-INFINITY, 0x7fffffff};
    if (tid < V) best = ArgBest{lr[tid], tid};
    for (int i = tid + kPrepThreads; i < V; i += kPrepThreads) {
      const float v = lr[i];
      if (v > best.v) best = ArgBest{v, i};  // increasing i: the first maximum of this thread's ids
    }
    using Reduce = cub::BlockReduce<ArgBest, kPrepThreads>;
    __shared__ typename Reduce::TempStorage tmp;
    const ArgBest b = Reduce(tmp).Reduce(best, ArgBestOp());
    if (tid == 0) out[r] = b.i;
    return;
  }
  // -0 and +0 rank equal on the CPU; the radix sort would order them, so every zero becomes +0.
  for (int i = tid; i < V; i += kPrepThreads) {
    const float l = lr[i];
    if (l == 0.0f) lr[i] = 0.0f;
    vals_in[size_t(r) * V + i] = i;
  }
  if (tid == 0) offsets[r] = r * V;
  if (tid == 0 && r == rows - 1) offsets[rows] = rows * V;
  if (tid == 0) out[r] = 0;  // a finite row: the draw writes it
}

struct DrawShared {
  typename cub::BlockReduce<double, kDrawThreads>::TempStorage reduce;
  typename cub::BlockScan<double, kDrawThreads>::TempStorage scan;
  double total;
  int found;
  int keep;
};

// First index i < n whose inclusive prefix sum of prob(i) reaches thr (>= thr; > thr when strict), or n.
template <class Prob>
__device__ int first_crossing(DrawShared& sh, const Prob& prob, int n, double thr, bool strict) {
  using Scan = cub::BlockScan<double, kDrawThreads>;
  using Reduce = cub::BlockReduce<double, kDrawThreads>;
  const int tid = threadIdx.x;
  double carry = 0;
  for (int base = 0; base < n; base += kDrawThreads * kDrawItems) {
    const int i0 = base + tid * kDrawItems;
    double p[kDrawItems], mine = 0;
#pragma unroll
    for (int k = 0; k < kDrawItems; ++k) {
      p[k] = i0 + k < n ? prob(i0 + k) : 0.0;
      mine += p[k];
    }
    double excl;
    if (tid == 0) sh.found = n;
    Scan(sh.scan).ExclusiveSum(mine, excl);
    __syncthreads();  // sh.found initialised; the scan storage is reused below
    double c = carry + excl;
#pragma unroll
    for (int k = 0; k < kDrawItems; ++k) {
      if (i0 + k >= n) break;
      c += p[k];
      if (strict ? c > thr : c >= thr) {
        atomicMin(&sh.found, i0 + k);
        break;
      }
    }
    const double tile = Reduce(sh.reduce).Sum(mine);
    if (tid == 0) sh.total = tile;
    __syncthreads();
    const int f = sh.found;
    carry += sh.total;
    __syncthreads();  // everyone has read sh.found / sh.total before the next tile writes them
    if (f < n) return f;
  }
  return n;
}

// (3) the draw from the sorted row.
__global__ void __launch_bounds__(kDrawThreads)
    draw_kernel(int32_t* __restrict__ out, const float* __restrict__ keys, const int32_t* __restrict__ ids, int V,
                double temp, int top_k, float top_p, float min_p, uint64_t seed, uint64_t step) {
  __shared__ DrawShared sh;
  const int r = blockIdx.x, tid = threadIdx.x;
  if (out[r] < 0) return;  // the row is not finite (prep_kernel)
  const float* sk = keys + size_t(r) * V;
  const int32_t* sid = ids + size_t(r) * V;
  const double mx = double(sk[0]);
  if (tid == 0) {
    int keep = V;
    if (top_k > 0 && top_k < V) {  // every entry tied with the k-th stays: first index >= k below it
      const float kth = sk[top_k - 1];
      int lo = top_k, hi = V;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (sk[mid] < kth) hi = mid; else lo = mid + 1;
      }
      keep = lo;
    }
    sh.keep = keep;
  }
  __syncthreads();
  int keep = sh.keep;
  auto p_un = [&](int i) { return exp((double(sk[i]) - mx) / temp); };
  // softmax normaliser over the kept entries
  double mine = 0;
  for (int i = tid; i < keep; i += kDrawThreads) mine += p_un(i);
  {
    using Reduce = cub::BlockReduce<double, kDrawThreads>;
    const double s = Reduce(sh.reduce).Sum(mine);
    if (tid == 0) sh.total = s;
    __syncthreads();
  }
  const double sum = sh.total;
  __syncthreads();
  auto prob = [&](int i) { return p_un(i) / sum; };
  if (top_p < 1.0f) {
    const int f = first_crossing(sh, prob, keep, double(top_p), false);
    keep = f < keep ? f + 1 : keep;
  }
  if (min_p > 0.0f) {  // first index >= 1 below min_p * prob(0); prob never increases along the sorted row
    if (tid == 0) {
      const double thr = double(min_p) * prob(0);
      int lo = 1, hi = keep;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (prob(mid) < thr) hi = mid; else lo = mid + 1;
      }
      sh.keep = lo;
    }
    __syncthreads();
    keep = sh.keep;
    __syncthreads();
  }
  mine = 0;
  for (int i = tid; i < keep; i += kDrawThreads) mine += prob(i);
  {
    using Reduce = cub::BlockReduce<double, kDrawThreads>;
    const double s = Reduce(sh.reduce).Sum(mine);
    if (tid == 0) sh.total = s;
    __syncthreads();
  }
  const double total = sh.total;
  __syncthreads();
  const uint64_t z = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ uint64_t(r));
  const double u = double(z >> 11) * 0x1.0p-53;
  const int f = first_crossing(sh, prob, keep, u * total, true);
  if (tid == 0) out[r] = sid[f < keep ? f : keep - 1];
}

}  // namespace

size_t sample_workspace_bytes(int rows, int V) {
  SALA_CUDA_REQUIRE(rows > 0 && V > 0 && int64_t(rows) * V < (int64_t(1) << 31), "sample_workspace_bytes");
  const size_t n = size_t(rows) * size_t(V);
  return align_up(n * sizeof(float)) + 2 * align_up(n * sizeof(int32_t)) + align_up(size_t(rows + 1) * 4) +
         align_up(cub_sort_bytes(rows, V));
}

void sample(int32_t* out, float* logits, int rows, int V, const int32_t* history, int hist_len, int hist_ld,
            const SampleArgs& a,
            void* workspace, cudaStream_t s) {
  SALA_CUDA_REQUIRE(rows >= 0 && V > 0 && V <= kMaxVocab && int64_t(rows) * V < (int64_t(1) << 31), "sample");
  SALA_CUDA_REQUIRE(hist_len >= 0 && hist_ld >= 0 && (hist_len == 0 || history), "sample");
  SALA_CUDA_REQUIRE(a.repetition_penalty > 0 && a.top_p > 0 && a.top_p <= 1 && a.min_p >= 0 && a.min_p <= 1 &&
                        a.top_k >= 0,
                    "sample");
  if (rows == 0) return;
  const bool greedy = !(a.temperature > 0);
  const bool penalise = a.repetition_penalty != 1.0f && hist_len > 0;
  const size_t shmem = penalise ? size_t((V + 31) / 32) * sizeof(uint32_t) : 0;
  if (greedy) {
    prep_kernel<<<rows, kPrepThreads, shmem, s>>>(out, logits, V, history, hist_len, hist_ld, a.repetition_penalty, true,
                                                  nullptr, nullptr, rows);
    SALA_CUDA_CHECK_LAUNCH();
    return;
  }
  SALA_CUDA_REQUIRE(workspace != nullptr, "sample");
  const Workspace w = carve(workspace, rows, V);
  prep_kernel<<<rows, kPrepThreads, shmem, s>>>(out, logits, V, history, hist_len, hist_ld, a.repetition_penalty, false,
                                                w.vals_in, w.offsets, rows);
  SALA_CUDA_CHECK_LAUNCH();
  size_t bytes = w.cub_bytes;
  const int32_t* offs = w.offsets;
  SALA_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      w.cub_tmp, bytes, static_cast<const float*>(logits), w.keys_out, static_cast<const int32_t*>(w.vals_in),
      w.vals_out, rows * V, rows, offs, offs + 1, 0, 32, s));
  draw_kernel<<<rows, kDrawThreads, 0, s>>>(out, w.keys_out, w.vals_out, V, double(a.temperature), a.top_k, a.top_p,
                                            a.min_p, a.seed, a.step);
  SALA_CUDA_CHECK_LAUNCH();
}

}  // namespace sala::cuda
