// Rotary position embedding, NeoX / Hugging Face "rotate_half" convention (pairs i and i + D/2).
// Angles are computed in fp32 exactly as the reference does (inv_freq = 1 / theta^(2i/D) in fp32, angle = pos * inv_freq
// in fp32), because at 10^5..10^6 positions the fp32 rounding of the angle is part of what the reference computes.
// LongRoPE (MiniCPM4): angle = (pos * (1/ext_i)) * inv_freq_i, cos/sin scaled by sqrt(1 + ln(s)/ln(orig)) with
// s = max_position_embeddings / original. The factors are the long ones once the sequence (the call's last position
// + 1) exceeds the original context, or always when max_position_embeddings does: HF rebuilds its cos/sin cache with
// the long factors when it first sees such a length (the scale stays the one computed at construction).
#pragma once
#include <cstdint>
#include <vector>

#include "sala/model/config.h"

namespace sala {

class Rope {
 public:
  Rope() = default;
  Rope(const RopeConfig& rc, int64_t dim, int64_t max_position_embeddings);
  // x: (T, H, dim) rows at positions pos0 .. pos0+T-1, rotated in place; seq_len selects LongRoPE's factors.
  void apply(float* x, int64_t T, int64_t H, int64_t pos0, int64_t seq_len = 0) const;
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_ = 0;
  std::vector<float> inv_freq_, inv_ext_short_, inv_ext_long_;  // inv_ext_* empty for plain RoPE
  int64_t long_from_ = 0;  // seq_len above which the long factors apply
  float mscale_ = 1.0f;
};

}  // namespace sala
