#include "sala/model/info.h"

#include <algorithm>

#include "sala/model/weights.h"

namespace sala {

MemoryEstimate estimate_memory(const ModelConfig& c, double wb, double kb) {
  MemoryEstimate m;
  m.params = parameter_count(c);
  m.weight_bytes = double(m.params) * wb;
  for (LayerKind k : c.layer_kinds) {
    switch (k) {
      case LayerKind::Sparse: {
        const double row = double(c.num_key_value_heads * c.sparse_head_dim()) * kb;
        m.kv_bytes_per_token += 2 * row;
        m.compressed_bytes_per_token += row / double(c.sparse.kernel_stride) + row / double(4 * c.sparse.kernel_stride);
        break;
      }
      case LayerKind::Dense: m.kv_bytes_per_token += 2.0 * double(c.num_key_value_heads * c.dense_head_dim()) * kb; break;
      case LayerKind::Lightning:
        m.state_bytes += 4.0 * double(c.lightning_heads() * c.lightning_dim() * c.lightning_dim());
        break;
    }
  }
  return m;
}

namespace {
double matmul_params(const ModelConfig& c) {
  double n = 0;
  for (const TensorSpec& s : tensor_specs(c))
    if (s.shape.size() == 2 && s.role != TensorRole::Embed && s.role != TensorRole::LmHead) n += double(s.numel());
  return n;
}
}  // namespace

double prefill_flops(const ModelConfig& c, int64_t L) {
  const double Ld = double(L), hid = double(c.hidden_size);
  double f = 2.0 * matmul_params(c) * Ld + 2.0 * double(c.vocab_size) * hid;  // lm_head: last row
  const double sum_p1 = Ld * (Ld + 1) / 2;                                     // sum over positions of (p + 1)
  for (LayerKind k : c.layer_kinds) {
    if (k == LayerKind::Lightning) {
      const double D = double(c.lightning_dim()), H = double(c.lightning_heads());
      f += Ld * H * (2 * D * 64 + 4 * D * D);
      continue;
    }
    const double D = double(k == LayerKind::Sparse ? c.sparse_head_dim() : c.dense_head_dim());
    const double H = double(c.num_attention_heads);
    if (k == LayerKind::Dense || L < c.sparse.dense_len) {
      f += 4 * D * H * sum_p1;
      continue;
    }
    const double stride = double(c.sparse.kernel_stride), keys = double(c.sparse.total_topk() * c.sparse.block_size);
    f += 2 * D * H * (1 / stride + 1 / (4 * stride)) * sum_p1;
    // sum over p of min(p + 1, keys)
    const double full = std::min(Ld, keys);
    f += 4 * D * H * (full * (full + 1) / 2 + (Ld - full) * keys);
  }
  return f;
}

double decode_bytes(const ModelConfig& c, int64_t n, int64_t batch, double wb) {
  const double nd = double(n), B = double(batch);
  double b = wb * (matmul_params(c) + double(c.vocab_size * c.hidden_size));  // lm_head read once per step
  for (LayerKind k : c.layer_kinds) {
    if (k == LayerKind::Lightning) {
      b += B * 2 * 4.0 * double(c.lightning_heads() * c.lightning_dim() * c.lightning_dim());
      continue;
    }
    const double D = double(k == LayerKind::Sparse ? c.sparse_head_dim() : c.dense_head_dim());
    const double row = double(c.num_key_value_heads) * D * 2;  // one token's key (or value), bf16
    if (k == LayerKind::Dense || n < c.sparse.dense_len) {
      b += B * 2 * row * nd;
      continue;
    }
    const double stride = double(c.sparse.kernel_stride);
    b += B * row * (nd / stride + nd / (4 * stride));
    b += B * 2 * row * std::min(nd, double(c.sparse.total_topk() * c.sparse.block_size));
  }
  return b;
}

}  // namespace sala
