#include "sala/backend/cuda/arg_check.h"

#include "sala/core/error.h"

namespace sala::cuda {

void throw_kernel_arg_error(const char* kernel, const char* cond, const char* file, int line) {
  throw InternalError(fmt::format("CUDA kernel {}: argument check failed: {} ({}:{})", kernel, cond, file, line));
}

}  // namespace sala::cuda
