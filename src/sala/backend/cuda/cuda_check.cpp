#include "sala/backend/cuda/cuda_check.h"

#include "sala/core/error.h"

namespace sala::cuda {

void throw_cuda_error(int err, const char* call, const char* file, int line) {
  fail("CUDA error {} ({}) in {} at {}:{}", err, cudaGetErrorString(cudaError_t(err)), call, file, line);
}

}  // namespace sala::cuda
