#include "common.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "sala/core/error.h"
#include "sala/io/safetensors.h"
#include "sala/model/presets.h"

namespace sala::app {

std::vector<int32_t> parse_ids(const std::string& s, const std::string& what) {
  // One grammar for every id list (--ids, --stop-ids, --decode-ids, detokenize): non-negative integers separated by
  // commas and/or whitespace, optionally inside [ ] as Python prints a list.
  std::vector<int32_t> out;
  const auto is_sep = [](char c) { return c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  size_t i = 0, n = s.size();
  while (i < n && is_sep(s[i])) ++i;
  const bool bracket = i < n && s[i] == '[';
  if (bracket) {
    while (n > i && is_sep(s[n - 1])) --n;
    if (n == i + 1 || s[n - 1] != ']') fail_usage("{}: '{}' opens a [ list that is not closed", what, io::printable(s));
    ++i, --n;
  }
  while (i < n) {
    while (i < n && is_sep(s[i])) ++i;
    if (i >= n) break;
    size_t j = i;
    int64_t v = 0;
    while (j < n && s[j] >= '0' && s[j] <= '9') {
      v = v * 10 + (s[j] - '0');
      if (v > INT32_MAX) fail_usage("{}: token id '{}' is out of range", what, io::printable(s.substr(i, 20)));
      ++j;
    }
    if (j == i || (j < n && !is_sep(s[j]))) {
      size_t k = i;
      while (k < n && !is_sep(s[k])) ++k;
      fail_usage("{}: '{}' is not a token id (a non-negative integer); give a list like 1,2,3", what,
                 io::printable(s.substr(i, k - i)));
    }
    out.push_back(int32_t(v));
    i = j;
  }
  if (out.empty()) fail_usage("{}: '{}' holds no token ids; give a list like 1,2,3", what, io::printable(s));
  return out;
}

std::string join_ids(std::span<const int32_t> ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) b /= 1024, ++i;
  return fmt::format("{:.2f} {}", b, u[i]);
}

uint32_t fingerprint(std::span<const float> v) {
  uint32_t h = 2166136261u;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * 4; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

ModelConfig resolve_config(const std::string& model, const std::string& preset) {
  if (!preset.empty()) return preset_config(preset);
  if (model.empty()) fail("give a model folder, a config.json or --preset NAME");
  return load_config(model);
}

void check_lengths(int64_t max_new, int64_t chunk, int64_t context) {
  if (max_new < 0) fail_usage("-n/--max-new-tokens = {} must be >= 0", max_new);
  if (chunk < 0) fail_usage("--chunk = {} must be >= 0 (0 = the whole prompt at once)", chunk);
  if (context < 0) fail_usage("--context = {} must be >= 0 (0 = max_position_embeddings)", context);
}

int64_t context_limit(const ModelConfig& c, int64_t context) {
  if (context < 0) fail_usage("--context = {} must be >= 0 (0 = max_position_embeddings)", context);
  if (context == 0) return c.max_position_embeddings;
  if (context > c.max_position_embeddings)
    fmt::print(stderr,
               "sala: warning: --context {} is above the model's max_position_embeddings {}: positions past it were "
               "not trained\n",
               context, c.max_position_embeddings);
  return context;
}

void check_ids_in_vocab(std::span<const int32_t> ids, const ModelConfig& c, const std::string& what) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= c.vocab_size)
      fail("{}: token id {} (at index {}) is outside the vocabulary [0, {})", what, ids[i], i, c.vocab_size);
}

void add_device_option(CLI::App* cmd, std::string& device) {
  cmd->add_option("--device", device, "Where to run: cpu (the exact fp32 path) or cuda (bf16, an H100/H200)")
      ->capture_default_str();
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::CPU;
  if (s == "cuda" || s == "gpu") return Device::CUDA;
  fail_usage("--device '{}' is not supported (cpu, cuda)", s);
}

Model load_for_run(const std::string& dir, const std::string& device, bool check_weights, int64_t context) {
  const Device d = parse_device(device);
  Model m = Model::load(dir, {.check_finite = check_weights, .device = d});
  const int64_t limit = context > 0 ? context : m.config().max_position_embeddings;
  if (d == Device::CUDA && limit != m.cache_plan().max_tokens) {
    CachePlan p = m.cache_plan();
    p.max_tokens = limit;
    m.plan(p);
  }
  return m;
}

void add_check_weights_flag(CLI::App* cmd, bool& flag) {
  cmd->add_flag("--check-weights", flag, "Scan every weight for NaN/Inf while loading (names the first bad tensor)");
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : s + ",") {
    if (ch == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (ch != ' ') {
      cur += ch;
    }
  }
  return out;
}

int64_t parse_length(const std::string& s, int64_t min_tokens) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = s.substr(used);
  double mult = 1;
  if (unit == "k" || unit == "K") mult = 1024;
  else if (unit == "m" || unit == "M") mult = 1024 * 1024;
  else used = unit.empty() ? used : 0;
  if (used == 0) fail_usage("--lengths: '{}' is not a token count (e.g. 4096, 32k, 1m)", s);
  const double n = v * mult;
  if (!(n >= double(min_tokens) && n <= double(int64_t(1) << 31) && n == std::floor(n)))
    fail_usage("--lengths: {} is out of range ({} tokens to 2G)", s, min_tokens);
  return int64_t(n);
}

}  // namespace sala::app
