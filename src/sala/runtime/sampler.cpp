#include "sala/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

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

int32_t argmax(std::span<const float> v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());  // first maximum: lowest id wins ties
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { p.validate(); }

int32_t Sampler::sample(std::vector<float>& logits, std::span<const int32_t> history) {
  const int64_t V = int64_t(logits.size());
  if (p_.repetition_penalty != 1.0f) {
    std::vector<bool> seen(static_cast<size_t>(V), false);
    for (int32_t t : history)
      if (t >= 0 && t < V && !seen[size_t(t)]) {
        seen[size_t(t)] = true;
        float& l = logits[size_t(t)];
        l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
      }
  }
  if (p_.temperature <= 0.0f) return argmax(logits);

  // Ordering is unchanged by a positive temperature, so candidates are ranked on the raw logits and the temperature
  // is applied in double after subtracting the maximum (a tiny temperature then gives a clean argmax, not inf - inf).
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  };
  int64_t keep = V;
  if (p_.top_k > 0 && p_.top_k < V) {
    std::partial_sort(ids.begin(), ids.begin() + p_.top_k, ids.end(), by_logit);
    keep = p_.top_k;
    // HF removes only logits below the k-th value: every token tied with it stays.
    const float kth = logits[size_t(ids[size_t(keep - 1)])];
    std::sort(ids.begin() + keep, ids.end(), by_logit);
    while (keep < V && logits[size_t(ids[size_t(keep)])] == kth) ++keep;
  } else {
    std::sort(ids.begin(), ids.end(), by_logit);
  }
  // softmax over the kept candidates (in double)
  const double mx = logits[size_t(ids[0])], temp = double(p_.temperature);
  std::vector<double> prob(static_cast<size_t>(keep));
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i)
    sum += prob[size_t(i)] = std::exp((double(logits[size_t(ids[size_t(i)])]) - mx) / temp);
  for (auto& p : prob) p /= sum;
  if (p_.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
    double c = 0;
    int64_t n = 0;
    while (n < keep) {
      c += prob[size_t(n++)];
      if (c >= double(p_.top_p)) break;
    }
    keep = n;
  }
  if (p_.min_p > 0.0f) {  // drop tokens below min_p times the top probability
    const double thr = double(p_.min_p) * prob[0];
    int64_t n = 1;
    while (n < keep && prob[size_t(n)] >= thr) ++n;
    keep = n;
  }
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) total += prob[size_t(i)];
  double r = rng_.uniform() * total;
  for (int64_t i = 0; i < keep; ++i) {
    r -= prob[size_t(i)];
    if (r < 0) return ids[size_t(i)];
  }
  return ids[size_t(keep - 1)];
}

}  // namespace sala
