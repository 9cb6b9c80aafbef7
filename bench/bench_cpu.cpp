// bench_cpu: CPU prefill and decode tokens/s of sala's fp32 reference path for the tiny and ~100M SALA configs
// (random weights, real shapes). Floors: prefill = matmul FLOPs / measured FMA rate of this machine's cores; decode =
// fp32 weight bytes / measured read bandwidth. Prints a table; --out FILE also writes it (for bench/results/).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "sala/core/rng.h"
#include "sala/model/model.h"
#include "sala/model/presets.h"

using namespace sala;
using clk = std::chrono::steady_clock;

namespace {

double seconds_since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

// FMA rate: independent accumulators in registers, every thread; the Haswell clone uses AVX2 FMA like the matmul.
__attribute__((target_clones("arch=haswell", "default"))) double measure_gflops() {
  const int64_t iters = 50'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t = clk::now();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
      typedef float v8 __attribute__((vector_size(32)));
      v8 a[10], b, c;
      for (int j = 0; j < 8; ++j) b[j] = 1.0000001f, c[j] = 1e-7f;
      for (int k = 0; k < 10; ++k)
        for (int j = 0; j < 8; ++j) a[k][j] = float(j + k + omp_get_thread_num());
      for (int64_t i = 0; i < iters / 80; ++i)
        for (int k = 0; k < 10; ++k) a[k] = a[k] * b + c;
      for (int k = 0; k < 10; ++k)
        for (int j = 0; j < 8; ++j) sink += a[k][j];
    }
    double s = seconds_since(t);
    if (sink == 1234.5f) std::puts("");
    best = std::max(best, 2.0 * double(iters) * omp_get_max_threads() / s / 1e9);
  }
  return best;
}

__attribute__((target_clones("arch=haswell", "default"))) double measure_read_gbs() {
  std::vector<float> buf(size_t(64) << 20, 1.0f);  // 256 MiB
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t = clk::now();
    float sum = 0;
#pragma omp parallel reduction(+ : sum)
    {
      float acc[16] = {};
      const int nt = omp_get_num_threads(), id = omp_get_thread_num();
      const size_t per = buf.size() / size_t(nt), lo = per * size_t(id);
      for (size_t i = lo; i + 16 <= lo + per; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += buf[i + size_t(j)];
      for (float a : acc) sum += a;
    }
    double s = seconds_since(t);
    if (sum == 0.5) std::puts("");
    best = std::max(best, double(buf.size()) * 4 / s / 1e9);
  }
  return best;
}

struct Row {
  std::string model, phase;
  int64_t tokens;
  double seconds, floor_s;
};

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--out") out = argv[i + 1];
  const double gflops = measure_gflops(), gbs = measure_read_gbs();
  std::vector<Row> rows;
  for (auto [preset, prompt, gen] : {std::tuple{"sala-tiny", 512, 64}, std::tuple{"sala-100m", 256, 16}}) {
    ModelConfig c = preset_config(preset);
    Model m(c, random_weights(c, 1));
    // matmul FLOPs per token: 2 x every weight except the embedding table (the lm_head is counted)
    double mm_params = double(parameter_count(c)) - double(c.vocab_size * c.hidden_size) * (c.tie_word_embeddings ? 0 : 1);
    Rng r(5);
    std::vector<int32_t> ids(static_cast<size_t>(prompt));
    for (auto& x : ids) x = int32_t(r.below(uint64_t(c.vocab_size)));
    SequenceState st = m.new_state();
    auto t = clk::now();
    auto logits = m.prefill(ids, st, 0);
    double pre = seconds_since(t);
    rows.push_back({preset, "prefill", prompt, pre, 2 * mm_params * prompt / (gflops * 1e9)});
    t = clk::now();
    for (int i = 0; i < gen; ++i) logits = m.decode(int32_t(i % c.vocab_size), st);
    double dec = seconds_since(t);
    rows.push_back({preset, "decode", gen, dec, double(parameter_count(c)) * 4 * gen / (gbs * 1e9)});
  }
  std::string table = "bench_cpu: " + std::to_string(omp_get_max_threads()) + " threads, measured FMA rate " +
                      std::to_string(int(gflops)) + " GFLOP/s, read bandwidth " + std::to_string(int(gbs)) + " GB/s\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %-8s %7s %10s %10s %10s %7s\n", "model", "phase", "tokens", "tok/s", "time_s",
                "floor_s", "ratio");
  table += line;
  for (auto& r : rows) {
    std::snprintf(line, sizeof line, "%-10s %-8s %7ld %10.1f %10.3f %10.4f %7.1f\n", r.model.c_str(), r.phase.c_str(),
                  long(r.tokens), double(r.tokens) / r.seconds, r.seconds, r.floor_s, r.seconds / r.floor_s);
    table += line;
  }
  std::fputs(table.c_str(), stdout);
  if (!out.empty()) std::ofstream(out) << table;
  return 0;
}
