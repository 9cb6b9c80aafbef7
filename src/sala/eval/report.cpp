#include "sala/eval/report.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <map>
#include <nlohmann/json.hpp>

namespace sala::eval {

namespace {

struct Mean {
  double sum = 0;
  int64_t n = 0;
  void add(double x) { sum += x, ++n; }
  double value() const { return n ? sum / double(n) : 0; }
};

std::vector<std::string> task_order(const std::vector<Record>& recs) {
  std::vector<std::string> t;
  for (const Record& r : recs)
    if (std::find(t.begin(), t.end(), r.task) == t.end()) t.push_back(r.task);
  return t;
}

// JSON text of a string that may hold invalid UTF-8 (model output): bytes that do not decode are replaced.
nlohmann::json text(const std::string& s) {
  return nlohmann::json::parse(nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

std::string length_label(int64_t n) {
  if (n >= (1 << 20) && n % (1 << 20) == 0) return fmt::format("{}M", n >> 20);
  if (n >= (1 << 10) && n % (1 << 10) == 0) return fmt::format("{}K", n >> 10);
  return std::to_string(n);
}

std::string record_json(const Record& r) {
  nlohmann::json refs = nlohmann::json::array();
  for (const std::string& s : r.references) refs.push_back(text(s));
  nlohmann::json j = {{"task", r.task},   {"length", r.length},
                      {"tokens", r.tokens}, {"depth", r.depth < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.depth)},
                      {"index", r.index}, {"seed", r.seed},
                      {"score", r.score}, {"references", refs},
                      {"output", text(r.output)}, {"output_tokens", r.output_tokens}};
  return j.dump();
}

std::string ppl_json(const PplResult& r, int64_t window, int64_t stride) {
  nlohmann::json j = {{"task", "ppl"},          {"file", text(r.name)},       {"tokens", r.tokens},
                      {"scored", r.scored},     {"windows", r.windows},       {"window", window},
                      {"stride", stride},       {"nll_sum", r.nll},           {"mean_nll", r.mean_nll()},
                      {"ppl", r.ppl()},         {"bytes", r.bytes},           {"bits_per_byte", r.bits_per_byte()}};
  return j.dump();
}

std::string summary_markdown(const std::vector<Record>& recs, const std::vector<PplResult>& ppl,
                             const std::string& header) {
  std::string md = header;
  if (!recs.empty()) {
    std::vector<int64_t> lengths;
    for (const Record& r : recs) lengths.push_back(r.length);
    std::sort(lengths.begin(), lengths.end());
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
    const std::vector<std::string> tasks = task_order(recs);
    std::map<std::pair<std::string, int64_t>, Mean> cell;
    std::map<std::string, Mean> row;
    std::map<std::string, int64_t> samples;
    for (const Record& r : recs) {
      cell[{r.task, r.length}].add(r.score);
      row[r.task].add(r.score);
      ++samples[r.task];
    }
    md += "| task |";
    for (int64_t L : lengths) md += " " + length_label(L) + " |";
    md += " mean | samples |\n|---|";
    for (size_t i = 0; i < lengths.size(); ++i) md += "---:|";
    md += "---:|---:|\n";
    std::map<int64_t, Mean> col;  // RULER's average: the mean of the task scores at each length
    Mean all;
    for (const std::string& t : tasks) {
      md += "| " + t + " |";
      for (int64_t L : lengths) {
        auto it = cell.find({t, L});
        if (it == cell.end()) {
          md += " — |";
          continue;
        }
        md += fmt::format(" {:.1f} |", it->second.value());
        col[L].add(it->second.value());
      }
      md += fmt::format(" {:.1f} | {} |\n", row[t].value(), samples[t]);
      all.add(row[t].value());
    }
    if (tasks.size() > 1) {
      md += "| **mean** |";
      for (int64_t L : lengths) md += fmt::format(" **{:.1f}** |", col[L].value());
      md += fmt::format(" **{:.1f}** | {} |\n", all.value(), recs.size());
    }
  }
  if (!ppl.empty()) {
    if (!recs.empty()) md += "\n";
    md += "| text | tokens | scored | windows | mean NLL (nats) | perplexity | bits/byte |\n"
          "|---|---:|---:|---:|---:|---:|---:|\n";
    const auto line = [](const PplResult& r) {
      return fmt::format("| {} | {} | {} | {} | {:.4f} | {:.3f} | {:.4f} |\n", r.name, r.tokens, r.scored, r.windows,
                         r.mean_nll(), r.ppl(), r.bits_per_byte());
    };
    for (const PplResult& r : ppl) md += line(r);
    if (ppl.size() > 1) md += line(ppl_total(ppl));
  }
  return md;
}

std::string heatmap_tsv(const std::vector<Record>& recs) {
  std::map<std::tuple<int64_t, int64_t, double>, Mean> cell;  // (task order, length, depth)
  const std::vector<std::string> tasks = task_order(recs);
  for (const Record& r : recs) {
    const int64_t t = std::find(tasks.begin(), tasks.end(), r.task) - tasks.begin();
    cell[{t, r.length, r.depth}].add(r.score);
  }
  std::string s = "task\tlength\tdepth\tscore\tsamples\n";
  for (const auto& [k, m] : cell) {
    const auto& [t, L, d] = k;
    s += fmt::format("{}\t{}\t{}\t{:.2f}\t{}\n", tasks[size_t(t)], L, d < 0 ? std::string("-") : fmt::format("{:g}", d),
                     m.value(), m.n);
  }
  return s;
}

}  // namespace sala::eval
