#include "sala/model/rope.h"

#include <cmath>

namespace sala {

RopeTables make_rope_tables(const RopeConfig& rc, int64_t dim, int64_t max_pos) {
  RopeTables t;
  t.dim = dim;
  const int64_t half = dim / 2;
  t.inv_freq.resize(size_t(half));
  for (int64_t i = 0; i < half; ++i) t.inv_freq[size_t(i)] = 1.0f / std::pow(float(rc.theta), float(2 * i) / float(dim));
  if (rc.longrope()) {
    t.inv_ext_short.resize(size_t(half));
    t.inv_ext_long.resize(size_t(half));
    for (int64_t i = 0; i < half; ++i) {
      t.inv_ext_short[size_t(i)] = 1.0f / float(rc.short_factor[size_t(i)]);
      t.inv_ext_long[size_t(i)] = 1.0f / float(rc.long_factor[size_t(i)]);
    }
    // HF builds its first cache for max_position_embeddings tokens: long factors from the start if that exceeds the
    // original context.
    t.long_from = max_pos > rc.original_max_position_embeddings ? 0 : rc.original_max_position_embeddings;
    double s = double(max_pos) / double(rc.original_max_position_embeddings);
    t.mscale =
        s <= 1.0 ? 1.0f : float(std::sqrt(1.0 + std::log(s) / std::log(double(rc.original_max_position_embeddings))));
  }
  return t;
}

}  // namespace sala
