#include "sala/model/info.h"

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

}  // namespace sala
