#include "sala/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "sala/core/error.h"

namespace sala {

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
  // Nothing sorts the whole vocabulary: top-k is a selection, top-p sorts a growing prefix of the most likely
  // candidates only until it holds the mass, min-p is a filter.
  std::vector<int32_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  };
  int64_t keep = V;
  if (p_.top_k > 0 && p_.top_k < V) {
    std::nth_element(ids.begin(), ids.begin() + (p_.top_k - 1), ids.end(), by_logit);
    // HF removes only logits below the k-th value: every token tied with it stays.
    const float kth = logits[size_t(ids[size_t(p_.top_k - 1)])];
    keep = std::partition(ids.begin(), ids.end(), [&](int32_t t) { return logits[size_t(t)] >= kth; }) - ids.begin();
  }
  ids.resize(size_t(keep));
  const int32_t top = *std::min_element(ids.begin(), ids.end(), by_logit);
  // softmax over the kept candidates (in double), indexed by token id
  const double mx = logits[size_t(top)], temp = double(p_.temperature);
  prob_.resize(static_cast<size_t>(V));
  double sum = 0;
  for (int32_t t : ids) sum += prob_[size_t(t)] = std::exp((double(logits[size_t(t)]) - mx) / temp);
  for (int32_t t : ids) prob_[size_t(t)] /= sum;
  if (p_.top_p < 1.0f) {  // smallest prefix (by descending logit) whose mass reaches top_p (at least one token)
    int64_t m = std::min<int64_t>(keep, 64), n = 0;
    while (true) {
      if (m < keep) std::nth_element(ids.begin(), ids.begin() + m, ids.end(), by_logit);
      std::sort(ids.begin(), ids.begin() + m, by_logit);
      double c = 0;
      for (n = 0; n < m;) {
        c += prob_[size_t(ids[size_t(n++)])];
        if (c >= double(p_.top_p)) break;
      }
      if (c >= double(p_.top_p) || m == keep) break;
      m = std::min(keep, 4 * m);
    }
    keep = n;
    ids.resize(size_t(keep));
  }
  if (p_.min_p > 0.0f) {  // drop tokens below min_p times the top probability
    const double thr = double(p_.min_p) * prob_[size_t(top)];
    keep = std::stable_partition(ids.begin(), ids.end(), [&](int32_t t) { return prob_[size_t(t)] >= thr; }) -
           ids.begin();
    ids.resize(size_t(keep));
  }
  double total = 0;
  for (int32_t t : ids) total += prob_[size_t(t)];
  double r = rng_.uniform() * total;
  for (int32_t t : ids) {
    r -= prob_[size_t(t)];
    if (r < 0) return t;
  }
  return ids.back();
}

}  // namespace sala
