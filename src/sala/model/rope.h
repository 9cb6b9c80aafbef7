// Rotary position embedding, NeoX / Hugging Face "rotate_half" convention (pairs i and i + D/2).
// Angles are computed in fp32 exactly as the reference does (inv_freq = 1 / theta^(2i/D) in fp32, angle = pos * inv_freq
// in fp32), because at 10^5..10^6 positions the fp32 rounding of the angle is part of what the reference computes.
// LongRoPE (MiniCPM4): angle = (pos * (1/ext_i)) * inv_freq_i, cos/sin scaled by sqrt(1 + ln(s)/ln(orig)).
#pragma once
#include <cstdint>
#include <vector>

#include "sala/model/config.h"

namespace sala {

class Rope {
 public:
  Rope() = default;
  Rope(const RopeConfig& rc, int64_t dim, int64_t max_position_embeddings);
  // x: (T, H, dim) rows at positions pos0 .. pos0+T-1, rotated in place.
  void apply(float* x, int64_t T, int64_t H, int64_t pos0) const;
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_ = 0;
  std::vector<float> inv_freq_, inv_ext_;  // inv_ext_ empty for plain RoPE
  float mscale_ = 1.0f;
};

}  // namespace sala
