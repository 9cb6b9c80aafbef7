// The CUDA backend's entry point: programs built with CUDA call register_backend() once (before loading a model with
// --device cuda); sala::make_cuda_backend then creates it (backend/backend.h).
#pragma once

namespace sala::cuda {

void register_backend();

}  // namespace sala::cuda
