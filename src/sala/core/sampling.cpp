#include "sala/core/sampling.h"

#include <cmath>

#include "sala/core/error.h"

namespace sala {

void SamplingParams::validate() const {
  // Option values wrong in themselves: UsageError (the CLI's exit code 2), named as the CLI options are.
  if (!(std::isfinite(temperature) && temperature >= 0))
    fail_usage("--temperature = {} must be a number >= 0 (0 = greedy)", temperature);
  if (top_k < 0) fail_usage("--top-k = {} must be >= 0 (0 = off)", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail_usage("--top-p = {} must be in (0, 1]", top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail_usage("--min-p = {} must be in [0, 1]", min_p);
  if (!(repetition_penalty > 0.0f && std::isfinite(repetition_penalty)))
    fail_usage("--repetition-penalty = {} must be a positive number", repetition_penalty);
}

}  // namespace sala
