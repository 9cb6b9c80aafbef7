// Trace: named intermediates recorded by the forward pass (as ggml's cb(cur, "attn_norm", il)), so a port can be
// compared with any other implementation tensor by tensor (`sala dump`). Per-token tensors have the token axis first
// and are concatenated across the chunks of a call, so a chunked prefill traces the same tensors as a single call;
// per-sequence tensors (states) keep their last value.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sala/core/dtype.h"

namespace sala {

class Trace {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> data;
  };
  std::string prefix;  // prepended to every name, e.g. "prefill." or "step3."

  void rows_f32(const std::string& name, const float* p, std::vector<int64_t> shape);      // concat on axis 0
  void rows_i32(const std::string& name, const int32_t* p, std::vector<int64_t> shape);
  void set_f32(const std::string& name, const float* p, std::vector<int64_t> shape);       // replace
  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* find(const std::string& full_name) const;

 private:
  void put(const std::string& name, DType t, const void* p, std::vector<int64_t> shape, bool concat);
  std::vector<Entry> entries_;
  std::map<std::string, size_t> index_;
};

}  // namespace sala
