#include "sala/model/trace.h"

#include <cstring>

#include "sala/core/error.h"

namespace sala {

void Trace::put(const std::string& name, DType t, const void* p, std::vector<int64_t> shape, bool concat) {
  const std::string full = prefix + name;
  size_t n = dtype_size(t);
  for (auto d : shape) n *= size_t(d);
  auto it = index_.find(full);
  if (it == index_.end()) {
    index_[full] = entries_.size();
    Entry e{full, t, std::move(shape), std::vector<std::byte>(n)};
    std::memcpy(e.data.data(), p, n);
    entries_.push_back(std::move(e));
    return;
  }
  Entry& e = entries_[it->second];
  if (!concat) {
    e.shape = std::move(shape);
    e.data.resize(n);
    std::memcpy(e.data.data(), p, n);
    return;
  }
  SALA_CHECK(e.dtype == t && e.shape.size() == shape.size() &&
             std::equal(e.shape.begin() + 1, e.shape.end(), shape.begin() + 1));
  size_t at = e.data.size();
  e.data.resize(at + n);
  std::memcpy(e.data.data() + at, p, n);
  e.shape[0] += shape[0];
}

void Trace::rows_f32(const std::string& name, const float* p, std::vector<int64_t> shape) {
  put(name, DType::F32, p, std::move(shape), true);
}
void Trace::rows_i32(const std::string& name, const int32_t* p, std::vector<int64_t> shape) {
  put(name, DType::I32, p, std::move(shape), true);
}
void Trace::set_f32(const std::string& name, const float* p, std::vector<int64_t> shape) {
  put(name, DType::F32, p, std::move(shape), false);
}
const Trace::Entry* Trace::find(const std::string& full) const {
  auto it = index_.find(full);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

}  // namespace sala
