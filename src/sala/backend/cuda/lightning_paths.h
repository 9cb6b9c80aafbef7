// The Lightning kernel family behind cuda::lightning (kernels.h), each path selectable, so that tests can check every
// one against the CPU and the benchmark can compare them. Auto is what lightning() runs: the recurrent kernel when
// every sequence of the step has one row (a decode step, rows.N == rows.S) or the rows are not 16-byte aligned, the
// chunked tensor-core kernel otherwise, with 32 value columns per CTA, or 16 when 32 would give fewer CTAs than SMs.
#pragma once
#include "sala/backend/cuda/kernels.h"

namespace sala::cuda {

enum class LightningPath {
  Auto,
  Recurrent,  // token by token, the state slice in registers (any row count; the decode kernel)
  Chunk16,    // 64-token chunks on mma.sync, 16 / 32 / 64 value columns of the state per CTA
  Chunk32,
  Chunk64,
};

void lightning_path(LightningPath path, bf16* o, int ldo, const bf16* x, int ld, int q_off, int k_off, int v_off,
                    float* state, int64_t state_stride, const float* log_decay, float scale, int H, int Hkv, int D,
                    const StepRows& rows, cudaStream_t s);

}  // namespace sala::cuda
