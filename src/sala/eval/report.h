// The outputs of `sala eval` (docs/eval.md "Files"): one JSON object per sample (results.jsonl), the per-task summary
// as a Markdown table (tasks x lengths, RULER's mean row; perplexity per file), and the length x depth grid of mean
// scores per task (heatmap.tsv, the input of tools/plot_eval.py).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sala/eval/perplexity.h"

namespace sala::eval {

struct Record {
  std::string task;
  int64_t length = 0;  // target
  int64_t tokens = 0;  // prompt tokens
  double depth = -1;   // percent; -1: not a depth task
  int64_t index = 0;
  uint64_t seed = 0;
  std::vector<std::string> references;
  std::string output;
  int64_t output_tokens = 0;
  double score = 0;  // percent
};

std::string length_label(int64_t n);  // 4096 -> 4K, 1048576 -> 1M, 1000 -> 1000
std::string record_json(const Record& r);
std::string ppl_json(const PplResult& r, int64_t window, int64_t stride);
// header: lines put above the tables (model, device, settings, throughput).
std::string summary_markdown(const std::vector<Record>& recs, const std::vector<PplResult>& ppl,
                             const std::string& header);
std::string heatmap_tsv(const std::vector<Record>& recs);

}  // namespace sala::eval
