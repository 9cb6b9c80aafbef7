// Programmatic dependent launch (Hopper): a kernel launched with the programmatic-serialization attribute may start
// while the kernel before it in the stream is still running, once every block of that one has called pdl_trigger()
// (or exited). It must call pdl_wait() before it touches anything the kernel before it writes or reads; what it does
// before (prefetching its weights, which nothing writes) overlaps the previous kernel. Outside such a launch both
// are no-ops, so any kernel may trigger.
#pragma once

namespace sala::cuda::detail {

__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

}  // namespace sala::cuda::detail
