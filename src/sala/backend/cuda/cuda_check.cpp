#include "sala/backend/cuda/cuda_check.h"

#include "sala/core/error.h"

namespace sala::cuda {

void throw_cuda_error(int err, const char* call, const char* file, int line) {
  cudaGetLastError();  // a handled failure must not come back at the next launch check
  fail("CUDA error {} ({}) in {} at {}:{}", err, cudaGetErrorString(cudaError_t(err)), call, file, line);
}

}  // namespace sala::cuda
