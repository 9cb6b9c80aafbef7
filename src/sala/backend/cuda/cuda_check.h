// SALA_CUDA_CHECK(call): every CUDA runtime call goes through it; a failure throws sala::Error with the call's text,
// file and line (the thrower lives in cuda_check.cpp, so this header stays free of fmt and usable from .cu files).
#pragma once
#include <cuda_runtime_api.h>

namespace sala::cuda {

[[noreturn]] void throw_cuda_error(int err, const char* call, const char* file, int line);

}  // namespace sala::cuda

#define SALA_CUDA_CHECK(call)                                                          \
  do {                                                                                 \
    cudaError_t sala_err_ = (call);                                                    \
    if (sala_err_ != cudaSuccess)                                                      \
      ::sala::cuda::throw_cuda_error(int(sala_err_), #call, __FILE__, __LINE__);       \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define SALA_CUDA_CHECK_LAUNCH() SALA_CUDA_CHECK(cudaGetLastError())
