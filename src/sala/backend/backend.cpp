#include "sala/backend/backend.h"

#include <algorithm>

#include "sala/core/error.h"

namespace sala {

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

void Backend::sample(const Act&, const SamplingParams&, uint64_t, std::span<const int32_t>, int) {
  throw InternalError(describe() + ": no sampling on this backend (samples() is false)");
}
void Backend::read_tokens(std::vector<int32_t>&, int) {
  throw InternalError(describe() + ": no sampling on this backend (samples() is false)");
}

void OpTimes::add(std::string_view op, double seconds) {
  for (Backend::OpTime& t : sums_)  // a few dozen labels: a scan is cheaper than a map here
    if (t.op == op) {
      ++t.calls;
      t.seconds += seconds;
      return;
    }
  sums_.push_back({std::string(op), 1, seconds});
}

std::vector<Backend::OpTime> OpTimes::take() {
  std::vector<Backend::OpTime> out;
  out.swap(sums_);
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seconds > b.seconds; });
  return out;
}

std::string matrix_label(std::span<const HostTensor> parts) {
  std::string label = "linear ";
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view n = parts[i].name;
    if (n.ends_with(".weight")) n.remove_suffix(7);
    const size_t dot = n.rfind('.');
    label += (i ? "|" : "") + std::string(dot == std::string_view::npos ? n : n.substr(dot + 1));
  }
  return label;
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
