// Rotary position embedding, NeoX / Hugging Face "rotate_half" convention (pairs i and i + D/2).
// Angles are computed in fp32 exactly as the reference does (inv_freq = 1 / theta^(2i/D) in fp32, angle = pos * inv_freq
// in fp32), because at 10^5..10^6 positions the fp32 rounding of the angle is part of what the reference computes.
// LongRoPE (MiniCPM4): angle = (pos * (1/ext_i)) * inv_freq_i, cos/sin scaled by sqrt(1 + ln(s)/ln(orig)) with
// s = max_position_embeddings / original. The factors are the long ones once the sequence (the call's last position
// + 1) exceeds the original context, or always when max_position_embeddings does: HF rebuilds its cos/sin cache with
// the long factors when it first sees such a length (the scale stays the one computed at construction).
// The backends apply the tables (backend/cpu/rope.h and the CUDA qk_norm_rope kernel).
#pragma once
#include <cstdint>

#include "sala/backend/backend.h"
#include "sala/model/config.h"

namespace sala {

RopeTables make_rope_tables(const RopeConfig& rc, int64_t dim, int64_t max_position_embeddings);

}  // namespace sala
