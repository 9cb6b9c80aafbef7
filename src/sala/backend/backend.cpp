#include "sala/backend/backend.h"

#include "sala/core/error.h"

namespace sala {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

void Backend::sample(const Act&, const SamplingParams&, uint64_t, std::span<const int32_t>, int) {
  throw InternalError(describe() + ": no sampling on this backend (samples() is false)");
}
void Backend::read_tokens(std::vector<int32_t>&, int) {
  throw InternalError(describe() + ": no sampling on this backend (samples() is false)");
}

namespace {
BackendFactory g_cuda_factory = nullptr;
}
void register_cuda_backend(BackendFactory f) { g_cuda_factory = f; }
std::unique_ptr<Backend> make_cuda_backend(std::string* why_not) {
  if (!g_cuda_factory) {
    if (why_not) *why_not = "this build of sala has no CUDA backend (configure with SALA_CUDA=ON and nvcc 13)";
    return nullptr;
  }
  return g_cuda_factory(why_not);
}

}  // namespace sala
