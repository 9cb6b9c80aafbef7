// What the draw of a next token takes: the parameters of Hugging Face's logits processors. Host sampling is
// runtime/sampler.h; a GPU backend samples with the same rules (Backend::sample), so both read this one struct.
#pragma once
#include <cstdint>

namespace sala {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, lowest id on ties)
  int64_t top_k = 0;          // 0 = off
  float top_p = 1.0f;         // 1 = off
  float min_p = 0.0f;         // 0 = off
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  void validate() const;      // throws sala::UsageError naming the bad option
  bool greedy() const { return !(temperature > 0.0f); }
};

}  // namespace sala
