// InfLLM-V2 block selection on the CPU (sala-model.md §4.3-§4.5, exact rules §4.9).
//   K1 = mean-pool(K, kernel, stride), K2 = mean-pool(K, 4 kernel, 4 stride), keys only, per kv head;
//   stage 1: p_h[i] = exp(s q_h·K1[i] - lse_h), lse_h from K2; S[i] = Σ_{h in group} p_h[i];
//   pool S onto blocks (kernel B/stride+1, step B/stride, padding 1); force init + local blocks;
//   top (topk + window/B) blocks, ties toward the lower index; ascending; indices > q_blk become -1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace sala::cpu {

// Mean-pooled keys grown from an uncompressed tail, as the reference grows them during decode: when the tail holds
// `kernel` keys, their mean becomes the next window and the first `stride` keys leave the tail. Building from a whole
// sequence at once gives bit-identical windows (same summation order).
struct CompressedKeys {
  int64_t kernel = 0, stride = 0, heads = 0, dim = 0;
  std::vector<float> windows;  // (count, heads, dim)
  std::vector<float> tail;     // (tail_len, heads, dim)

  void init(int64_t kernel_, int64_t stride_, int64_t heads_, int64_t dim_);
  int64_t count() const { return heads > 0 && dim > 0 ? int64_t(windows.size()) / (heads * dim) : 0; }
  void append(const float* k, int64_t n);  // k: (n, heads, dim)
  void clear();
  size_t bytes() const { return (windows.capacity() + tail.capacity()) * sizeof(float); }
};

// Number of compressed windows (kernel 2*stride) that stage 1 lets a query at absolute position `pos` see, in a call
// of `call_len` queries. Equals the complete windows ending at or before pos, except that the official kernel shows one
// window fewer to every row of a call whose length is ≡ stride-1 (mod stride) (and >= 2*stride-1): §4.9 item 1.
// For a call starting at position 0 this is exactly the kernel's integer formula; for a call after a cache it is the
// same rule applied to absolute positions (the reference defines no such call). A 1-token call (decode) sees every
// complete window.
int64_t stage1_visible_windows(int64_t pos, int64_t call_len, int64_t stride);

struct SelectParams {
  int64_t block = 64, stride = 16;  // attention block, K1 stride (K2 stride = 4 stride)
  int64_t topk_total = 96, local_blocks = 32, init_blocks = 1;
  float scale = 0;  // 1/sqrt(D)
};

// idx: (Hkv, T, topk_total) block indices of query rows t = 0..T-1 at positions pos0 + t, in a call of `call_len`
// queries. k1, k2 hold every window of the keys up to pos0 + T - 1. Optional scores_out: (Hkv, T, n_k1) stage-1 sums.
void infllmv2_select(int32_t* idx, const float* q, const CompressedKeys& k1, const CompressedKeys& k2, int64_t T,
                     int64_t pos0, int64_t call_len, int64_t Hq, const SelectParams& p,
                     std::vector<float>* scores_out = nullptr);

}  // namespace sala::cpu
