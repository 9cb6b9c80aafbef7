// Programmatic dependent launch (Hopper, griddepcontrol): a kernel launched by launch_pdl may be started while the
// kernel before it on the stream is still running, so that its launch, its CTAs' start and any loads that depend on
// nothing the stream computes (weights) overlap the predecessor's tail. Rules for a kernel launched this way:
//   - pdl_wait() before its first access to memory that another kernel of the stream writes or reads (activations,
//     caches, states): griddepcontrol.wait returns once every prerequisite grid has completed and its writes are
//     visible. Only constant data (weights) may be read before it.
//   - pdl_launch_dependents() lets the next PDL kernel start early (it fires once every CTA of this grid has called
//     it or exited); called at the top, the next kernel starts during this one's last wave.
// A kernel launched plainly (<<<>>>) after a PDL one, or a PDL one after a plain one, keeps the stream's order: both
// instructions are no-ops in a grid that was not launched as a dependent. SALA_CUDA_PDL is a mask of the kernel
// groups launched this way (PdlGroup; -1, the default: all; 0: none), for A/B timing and for bisecting. On the H200
// it makes batch-1 decode 1-2% faster (bench/results/2026-12-01-issue8-pdl-h200.md). A first gemv form that issued
// its weight loads before the wait and read x through __ldg raced (results differing run to run); gemv now waits
// first (gemv.cu: SALA_GEMV_PREWAIT), and with that the whole GPU suite, five repeats of the decode-consistency
// cases and memcheck passed with every group on (eed5aa1).
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "sala/backend/cuda/cuda_check.h"

namespace sala::cuda::detail {

__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_launch_dependents() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}
// The top of a kernel that touches nothing before its wait: wait, then let the next kernel launch.
__device__ __forceinline__ void pdl_begin() {
  pdl_wait();
  pdl_launch_dependents();
}

enum PdlGroup : int {
  kPdlElementwise = 1,
  kPdlGemv = 2,
  kPdlLightning = 4,
  kPdlKvAppend = 8,
  kPdlSelect = 16,
  kPdlAttention = 32,
};
bool pdl_enabled(int group);  // util.cu: the group's bit of SALA_CUDA_PDL (read once)

// cluster_x > 1: thread-block clusters of cluster_x CTAs along x (grid.x a multiple of it), whose CTAs read each
// other's shared memory (gemv_mma.cu's split-K sums).
template <typename... Params, typename... Args>
void launch_pdl_cluster(int group, unsigned cluster_x, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                        cudaStream_t s, Args&&... args) {
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled(group) ? 1 : 0;
  attr[1].id = cudaLaunchAttributeClusterDimension;
  attr[1].val.clusterDim.x = cluster_x;
  attr[1].val.clusterDim.y = 1;
  attr[1].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = cluster_x > 1 ? 2 : 1;
  SALA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}
template <typename... Params, typename... Args>
void launch_pdl(int group, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                Args&&... args) {
  launch_pdl_cluster(group, 1, kernel, grid, block, smem, s, std::forward<Args>(args)...);
}

}  // namespace sala::cuda::detail
