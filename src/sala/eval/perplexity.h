// Perplexity / mean token loss of text under a model, with Hugging Face's sliding-window rule: windows of `window`
// tokens start every `stride` tokens; each window is a fresh sequence, and scores only the tokens the previous windows
// did not (so every scored token has at least window - stride tokens of context once the first window is past). A
// token is scored from the logits of the row before it (log-softmax in double), so the first token of a text (BOS)
// is never scored, nor the first token of a window that starts past the last window's end (stride > window).
// window = 0 (or >= the text) is one window over the whole text.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sala/eval/runner.h"

namespace sala::eval {

struct PplWindow {
  int64_t begin = 0, end = 0;  // tokens [begin, end) are fed
  int64_t score_from = 0;      // tokens [score_from, end) are scored (score_from > begin)
};
// The windows over n tokens (n >= 2). window 0 = n; stride 0 = window. UsageError-free: callers check the options.
std::vector<PplWindow> ppl_windows(int64_t n, int64_t window, int64_t stride);

struct PplDoc {
  std::string name;
  std::vector<int32_t> ids;
  int64_t bytes = 0;  // of the text (bits per byte)
};

struct PplResult {
  std::string name;
  int64_t tokens = 0, scored = 0, bytes = 0, windows = 0;
  double nll = 0;  // summed over the scored tokens, in nats
  double mean_nll() const { return scored ? nll / double(scored) : 0; }
  double ppl() const;
  double bits_per_byte() const;  // nll / ln 2 / bytes
};

// One result per document (documents of fewer than 2 tokens score nothing), windows run batched through run_jobs.
std::vector<PplResult> perplexity(const Model& m, const std::vector<PplDoc>& docs, int64_t window, int64_t stride,
                                  const RunOptions& o, RunStats* stats = nullptr);
PplResult ppl_total(const std::vector<PplResult>& r);  // all documents pooled (token-weighted)

}  // namespace sala::eval
