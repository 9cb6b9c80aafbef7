// SALA_CUDA_REQUIRE(cond, kernel): a launcher's precondition on its arguments (sizes, strides, alignment). The callers
// are the CUDA backend, so a failure is a bug in sala: it throws sala::InternalError naming the kernel and the failed
// condition. The thrower lives in arg_check.cpp so that .cu files stay free of fmt.
#pragma once

namespace sala::cuda {

[[noreturn]] void throw_kernel_arg_error(const char* kernel, const char* cond, const char* file, int line);

}  // namespace sala::cuda

#define SALA_CUDA_REQUIRE(cond, kernel)                                             \
  do {                                                                              \
    if (!(cond)) ::sala::cuda::throw_kernel_arg_error(kernel, #cond, __FILE__, __LINE__); \
  } while (0)
