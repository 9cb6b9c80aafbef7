// Benchmark hooks of the attention kernels (not for the engine): force a variant so bench_attention can time the
// alternatives on one card. 0 restores the automatic choice.
#pragma once

namespace sala::cuda {

// CTA size (4 or 8 warps: 4 or 8 SALA rows per tile) of the tiled attention kernel (every launch but decode steps).
void attention_warps_override(int warps);

// Version of the tiled kernel (kernel lab): 1 = mma.sync per warp, 2 = wgmma per warpgroup (4-warp CTAs), 3 = wgmma
// with two warpgroups a phase apart (8-warp CTAs); 0 restores the default. Decode steps always take the decode kernel.
void attention_version_override(int version);

}  // namespace sala::cuda
