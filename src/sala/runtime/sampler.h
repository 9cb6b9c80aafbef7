// Token sampling with the Hugging Face logits-processor order: repetition penalty, then temperature, top-k, top-p,
// min-p, then a draw from the softmax. temperature <= 0 means greedy (argmax, lowest id on ties).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "sala/core/rng.h"
#include "sala/core/sampling.h"

namespace sala {

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // logits are modified in place. history: tokens the repetition penalty applies to (prompt + generated).
  int32_t sample(std::vector<float>& logits, std::span<const int32_t> history);

 private:
  SamplingParams p_;
  Rng rng_;
  std::vector<double> prob_;  // scratch, by token id
};

int32_t argmax(std::span<const float> v);

}  // namespace sala
