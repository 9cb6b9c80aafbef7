// RoPE on the CPU (the tables and their rules: model/rope.h, RopeTables in backend/backend.h).
#pragma once
#include <cstdint>

#include "sala/backend/backend.h"

namespace sala::cpu {

// x: (T, H, dim) rows at positions pos0 .. pos0+T-1, rotated in place; seq_len (the call's end) selects LongRoPE's
// factors.
void rope_apply(float* x, int64_t T, int64_t H, const RopeTables& r, int64_t pos0, int64_t seq_len);

}  // namespace sala::cpu
