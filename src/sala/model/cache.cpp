#include "sala/model/cache.h"

namespace sala {

SequenceState SequenceState::create(const ModelConfig& c, int64_t max_len) {
  SequenceState s;
  s.max_len = max_len > 0 ? max_len : c.max_position_embeddings;
  s.layers.resize(size_t(c.num_hidden_layers));
  for (size_t l = 0; l < s.layers.size(); ++l) {
    LayerCache& L = s.layers[l];
    L.kind = c.layer_kinds[l];
    switch (L.kind) {
      case LayerKind::Sparse:
        L.kv_heads = c.num_key_value_heads;
        L.head_dim = c.sparse_head_dim();
        L.k1.init(c.sparse.kernel_size, c.sparse.kernel_stride, L.kv_heads, L.head_dim);
        L.k2.init(4 * c.sparse.kernel_size, 4 * c.sparse.kernel_stride, L.kv_heads, L.head_dim);
        break;
      case LayerKind::Dense:
        L.kv_heads = c.num_key_value_heads;
        L.head_dim = c.dense_head_dim();
        break;
      case LayerKind::Lightning:
        L.kv_heads = c.lightning_heads();
        L.head_dim = c.lightning_dim();
        L.state.assign(size_t(L.kv_heads * L.head_dim * L.head_dim), 0.0f);
        break;
    }
  }
  return s;
}

bool SequenceState::matches(const ModelConfig& c) const {
  if (layers.size() != size_t(c.num_hidden_layers)) return false;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerCache& L = layers[l];
    if (L.kind != c.layer_kinds[l]) return false;
    switch (L.kind) {
      case LayerKind::Sparse:
        if (L.kv_heads != c.num_key_value_heads || L.head_dim != c.sparse_head_dim() ||
            L.k1.kernel != c.sparse.kernel_size || L.k1.stride != c.sparse.kernel_stride)
          return false;
        break;
      case LayerKind::Dense:
        if (L.kv_heads != c.num_key_value_heads || L.head_dim != c.dense_head_dim()) return false;
        break;
      case LayerKind::Lightning:
        if (L.kv_heads != c.lightning_heads() || L.head_dim != c.lightning_dim() ||
            L.state.size() != size_t(L.kv_heads * L.head_dim * L.head_dim))
          return false;
        break;
    }
  }
  return true;
}

void SequenceState::reset() {
  pos = 0;
  poisoned = false;
  for (auto& L : layers) {
    L.k.clear();
    L.v.clear();
    L.k1.clear();
    L.k2.clear();
    std::fill(L.state.begin(), L.state.end(), 0.0f);
  }
}

}  // namespace sala
