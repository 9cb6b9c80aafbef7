#include "sala/eval/perplexity.h"

#include <algorithm>
#include <cmath>

#include "sala/core/error.h"

namespace sala::eval {

std::vector<PplWindow> ppl_windows(int64_t n, int64_t window, int64_t stride) {
  SALA_CHECK(n >= 0 && window >= 0 && stride >= 0);
  if (window == 0 || window > n) window = n;
  if (stride == 0) stride = window;
  std::vector<PplWindow> w;
  if (n < 2) return w;
  int64_t prev_end = 0;
  for (int64_t b = 0;; b += stride) {
    const int64_t e = std::min(b + window, n);
    const int64_t from = std::max(prev_end, b + 1);
    if (from < e) w.push_back({b, e, from});
    prev_end = e;
    if (e == n) break;
  }
  return w;
}

double PplResult::ppl() const { return std::exp(mean_nll()); }
double PplResult::bits_per_byte() const { return bytes ? nll / std::log(2.0) / double(bytes) : 0; }

std::vector<PplResult> perplexity(const Model& m, const std::vector<PplDoc>& docs, int64_t window, int64_t stride,
                                  const RunOptions& o, RunStats* stats) {
  const int64_t V = m.config().vocab_size;
  std::vector<PplResult> res(docs.size());
  std::vector<Job> jobs;
  std::vector<double> nll;  // per window, summed in the callback
  std::vector<std::pair<size_t, PplWindow>> where;
  for (size_t d = 0; d < docs.size(); ++d) {
    res[d].name = docs[d].name;
    res[d].tokens = int64_t(docs[d].ids.size());
    res[d].bytes = docs[d].bytes;
    for (const PplWindow& w : ppl_windows(int64_t(docs[d].ids.size()), window, stride)) where.push_back({d, w});
  }
  nll.assign(where.size(), 0.0);
  for (size_t k = 0; k < where.size(); ++k) {
    const auto& [d, w] = where[k];
    const std::vector<int32_t>& ids = docs[d].ids;
    Job j;
    j.ids.assign(ids.begin() + w.begin, ids.begin() + w.end);
    // row r of a chunk sits at window position pos0 + r and predicts the token after it
    j.on_rows = [&nll, k, w, &ids, V](int64_t pos0, std::span<const float> logits) {
      const int64_t rows = int64_t(logits.size()) / V;
      double sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t target = w.begin + pos0 + r + 1;
        if (target < w.score_from || target >= w.end) continue;
        const float* x = logits.data() + r * V;
        double mx = x[0];
        for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(x[v]));
        double s = 0;
        for (int64_t v = 0; v < V; ++v) s += std::exp(double(x[v]) - mx);
        sum += mx + std::log(s) - double(x[ids[size_t(target)]]);
      }
      if (!std::isfinite(sum)) fail("perplexity: non-finite logits in the window at token {}", w.begin + pos0);
      nll[k] += sum;
    };
    jobs.push_back(std::move(j));
  }
  run_jobs(m, jobs, o, stats);
  for (size_t k = 0; k < where.size(); ++k) {
    PplResult& r = res[where[k].first];
    r.nll += nll[k];
    r.scored += where[k].second.end - where[k].second.score_from;
    ++r.windows;
  }
  return res;
}

PplResult ppl_total(const std::vector<PplResult>& r) {
  PplResult t;
  t.name = "(all)";
  for (const PplResult& x : r) {
    t.tokens += x.tokens, t.scored += x.scored, t.bytes += x.bytes, t.windows += x.windows;
    t.nll += x.nll;
  }
  return t;
}

}  // namespace sala::eval
