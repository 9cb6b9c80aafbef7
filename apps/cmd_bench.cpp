// sala bench: a model of any config with random weights made on the device (no file; the 9B shapes included),
// prefill of L tokens, then D decode tokens after two untimed ones (batch B: the prefilled sequence cloned B times,
// greedy tokens drawn on the device), timed; each figure beside
// its floor (FLOPs over the measured matmul rate, bytes over the measured copy bandwidth, model/info.h) and the ratio.
// --lengths runs a sweep (one model, several contexts); --out appends JSON lines (bench/results format).
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "sala/core/error.h"
#include "sala/core/rng.h"
#include "sala/model/info.h"
#include "sala/model/model.h"
#include "sala/model/presets.h"
#include "sala/runtime/sampler.h"
#include "sala_version.h"

namespace sala::app {

namespace {

// The engine's environment switches that are set (A/B runs differ only in them), recorded with each JSON line.
nlohmann::json engine_switches() {
  nlohmann::json e = nlohmann::json::object();
  for (const char* k : {"SALA_CUDA_GRAPHS", "SALA_CUDA_FUSE", "SALA_CUDA_PDL", "SALA_CUDA_GU_PAIRS", "SALA_GEMV_MMA",
                        "OMP_NUM_THREADS"})
    if (const char* v = std::getenv(k)) e[k] = v;
  return e;
}

std::string today() {
  std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%d", std::gmtime(&t));
  return b;
}

// The per-op table of --profile on stderr: time per op, share of the phase's wall time, and what is left (host work,
// launch gaps, synchronisation). Returns {op: seconds per step}.
nlohmann::json print_profile(const std::string& what, const std::vector<Backend::OpTime>& ops, double wall,
                             int64_t steps) {
  nlohmann::json j = nlohmann::json::object();
  if (ops.empty()) {
    fmt::print(stderr, "profile: this backend does not time its ops\n");
    return j;
  }
  double sum = 0;
  for (const auto& o : ops) sum += o.seconds;
  fmt::print(stderr, "\nprofile: {} ({:.3f} s wall{})\n{:<42} {:>8} {:>11} {:>7}\n", what, wall,
             steps > 1 ? fmt::format(", {} steps", steps) : "", "op", "calls", "ms / step", "% wall");
  for (const auto& o : ops) {
    fmt::print(stderr, "{:<42} {:>8} {:>11.3f} {:>6.1f}%\n", o.op, o.calls / steps, o.seconds * 1e3 / double(steps),
               100.0 * o.seconds / wall);
    j[o.op] = o.seconds / double(steps);
  }
  fmt::print(stderr, "{:<42} {:>8} {:>11.3f} {:>6.1f}%\n", "(not in an op: host, launches, syncs)", "",
             (wall - sum) * 1e3 / double(steps), 100.0 * (wall - sum) / wall);
  j["(not in an op)"] = (wall - sum) / double(steps);
  return j;
}

}  // namespace

void add_bench_commands(CLI::App& app) {
  struct Args {
    std::string preset = "minicpm-sala-9b", config, device = "cuda", lengths = "32k", out, command;
    int64_t decode = 32, chunk = 0, batch = 1;
    uint64_t seed = 1;
    bool profile = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "Time prefill and decode of a random-weight model made on the device, "
                                          "beside the floors (measured matmul rate and bandwidth)");
  cmd->add_option("--preset", a->preset, "Named config (minicpm-sala-9b, minicpm4-8b, qwen3-8b, sala-small, ...)")
      ->capture_default_str();
  cmd->add_option("--config", a->config, "A config.json instead of a preset");
  cmd->add_option("--lengths", a->lengths, "Prompt lengths, comma-separated (8k, 32k, 1m ...)")->capture_default_str();
  cmd->add_option("--decode", a->decode, "Decode tokens after each prefill")->capture_default_str();
  cmd->add_option("--batch", a->batch, "Sequences decoded together (the prefilled one, cloned)")->capture_default_str();
  cmd->add_option("--chunk", a->chunk, "Prefill chunk (0 = 8192 on cuda, 2048 on cpu)")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Weight and prompt seed")->capture_default_str();
  cmd->add_option("--out", a->out, "Append one JSON line per length to this file");
  cmd->add_flag("--profile", a->profile,
                "Time every op (CUDA events, with decode steps run eagerly; wall clock on the CPU) and print where "
                "prefill and decode spend their time");
  add_device_option(cmd, a->device);
  cmd->callback([a] {
    const Device dev = parse_device(a->device);
    std::vector<int64_t> lengths;
    for (const std::string& s : split_list(a->lengths)) lengths.push_back(parse_length(s));
    if (lengths.empty()) fail_usage("--lengths: no lengths given");
    if (a->decode < 1) fail_usage("--decode = {} must be >= 1", a->decode);
    if (a->batch < 1) fail_usage("--batch = {} must be >= 1", a->batch);
    if (a->chunk < 0) fail_usage("--chunk = {} must be >= 0", a->chunk);
    const std::string name = a->config.empty() ? a->preset : a->config;
    const ModelConfig cfg = a->config.empty() ? preset_config(a->preset) : load_config(a->config);
    const int64_t chunk = a->chunk > 0 ? a->chunk : (dev == Device::CUDA ? 8192 : 2048);
    const int64_t max_len = *std::max_element(lengths.begin(), lengths.end()) + a->decode + 2;  // + the warm-up steps

    auto t0 = clk::now();
    Model m = Model::random(cfg, a->seed, dev);
    const double build_s = since(t0);
    const Peaks peaks = m.backend().measure_peaks();
    CachePlan plan;
    // batch 1 decodes the prefilled sequence itself, so peak memory is that of one sequence (weights + its cache); a
    // batch is cloned from the prefilled one, which stays
    plan.max_seqs = a->batch == 1 ? 1 : a->batch + 1;
    plan.max_tokens = max_len;
    plan.total_tokens = max_len * plan.max_seqs;
    plan.max_step_rows = std::max(chunk, a->batch);
    m.plan(plan);
    fmt::print(stderr, "bench: {} on {}; weights made in {:.1f}s; peaks: matmul {:.3g} TFLOP/s, copy {:.0f} GB/s ({})\n",
               name, m.backend().describe(), build_s, peaks.matmul_tflops, peaks.copy_gbs, peaks.how);
    if (max_len > cfg.max_position_embeddings)
      fmt::print(stderr, "sala: warning: {} tokens are above max_position_embeddings {} (random weights: timing only)\n",
                 max_len, cfg.max_position_embeddings);

    std::string table = fmt::format("{:<16} {:>8} {:>9} {:>9} {:>6} {:>11} {:>9} {:>9} {:>6} {:>8}\n", "config",
                                    "context", "ttft_s", "floor_s", "ratio", "prefill t/s", "decode t/s", "floor t/s",
                                    "ratio", "peak GiB");
    for (int64_t L : lengths) {
      Rng r(a->seed * 7919 + uint64_t(L));
      std::vector<int32_t> ids(static_cast<size_t>(L));
      for (auto& x : ids) x = int32_t(r.below(uint64_t(cfg.vocab_size)));
      m.backend().reset_memory_peak();
      if (a->profile) m.backend().set_profiling(true);
      SequenceState st = m.new_state(max_len);
      const auto tp = clk::now();
      std::vector<float> logits = m.prefill(ids, st, chunk, nullptr, false, [&](int64_t done, int64_t total) {
        if (total <= chunk) return;
        const double s = since(tp), rate = double(done) / std::max(s, 1e-9);
        fmt::print(stderr, "\rprefill {}/{} tokens, {:.0f} tok/s, ETA {:.0f}s   ", done, total, rate,
                   double(total - done) / std::max(rate, 1e-9));
        if (done == total) fmt::print(stderr, "\n");
      });
      int32_t tok = argmax(logits);
      const double ttft = since(tp);
      const auto prof_prefill = m.backend().take_profile();
      // decode: the prefilled sequence itself (batch 1), else B copies of it, one token each per step
      std::vector<SequenceState> seqs;
      if (a->batch == 1)
        seqs.push_back(std::move(st));
      else
        for (int64_t b = 0; b < a->batch; ++b) seqs.push_back(m.clone_state(st));
      std::vector<std::vector<float>> out(size_t(a->batch));
      std::vector<std::vector<int32_t>> next(size_t(a->batch), std::vector<int32_t>{tok});
      std::vector<Model::Item> items(size_t(a->batch));
      // greedy tokens drawn where the logits are (the GPU), else argmax on the host
      const bool on_device = m.samples_on_device();
      const SamplingParams greedy;
      std::vector<int32_t> drawn(size_t(a->batch));
      std::vector<Model::Draw> draws(size_t(a->batch));
      for (int64_t b = 0; b < a->batch; ++b) draws[size_t(b)] = {&greedy, 0, {}, &drawn[size_t(b)]};
      auto decode_step = [&] {
        for (int64_t b = 0; b < a->batch; ++b) {
          Model::end_call(seqs[size_t(b)]);
          m.begin_call(seqs[size_t(b)], 1);
          items[size_t(b)] = {&seqs[size_t(b)], next[size_t(b)], false, on_device ? nullptr : &out[size_t(b)],
                              on_device ? &draws[size_t(b)] : nullptr};
        }
        m.step(items);
        for (int64_t b = 0; b < a->batch; ++b)
          next[size_t(b)][0] = on_device ? drawn[size_t(b)] : argmax(out[size_t(b)]);
      };
      // two untimed steps: the first of a shape tunes the small GEMMs, the second records the CUDA graph
      for (int w = 0; w < 2; ++w) decode_step();
      (void)m.backend().take_profile();  // not the warm-up's
      const auto td = clk::now();
      for (int64_t k = 0; k < a->decode; ++k) decode_step();
      const double dec_s = since(td);
      const auto prof_decode = m.backend().take_profile();
      m.backend().set_profiling(false);
      nlohmann::json jprof;
      if (a->profile) {
        jprof["prefill"] = print_profile(fmt::format("{} prefill of {} tokens", name, L), prof_prefill, ttft, 1);
        jprof["decode"] = print_profile(fmt::format("{} decode at {} tokens, batch {}{}", name, L, a->batch,
                                                    dev == Device::CUDA ? " (eager steps)" : ""),
                                        prof_decode, dec_s, a->decode);
      }
      const double peak = double(m.backend().memory_peak()) / double(1ull << 30);
      const double pre_floor = prefill_flops(cfg, L) / (peaks.matmul_tflops * 1e12);
      // random weights are fp32 on the CPU backend, bf16 on CUDA
      const double wb = dev == Device::CUDA ? 2 : 4;
      const double tok_floor_s = decode_bytes(cfg, L + a->decode / 2, a->batch, wb) / (peaks.copy_gbs * 1e9);
      const double dec_rate = double(a->decode * a->batch) / dec_s, floor_rate = double(a->batch) / tok_floor_s;
      table += fmt::format("{:<16} {:>8} {:>9.3f} {:>9.3f} {:>6.1f} {:>11.0f} {:>9.1f} {:>9.1f} {:>6.1f} {:>8.2f}\n", name,
                           L, ttft, pre_floor, ttft / pre_floor, double(L) / ttft, dec_rate, floor_rate,
                           floor_rate / dec_rate, peak);
      if (!a->out.empty()) {
        nlohmann::json j = {{"engine", "sala"},
                            {"card", m.backend().describe()},
                            {"date", today()},
                            {"commit", SALA_COMMIT},
                            {"command", "sala bench --preset " + name + " --device " + a->device + " --lengths " +
                                            a->lengths + " --decode " + std::to_string(a->decode) + " --batch " +
                                            std::to_string(a->batch) + " --chunk " + std::to_string(chunk)},
                            {"cuda_graphs", m.backend().records_graphs()},
                            {"config", name},
                            {"context", L},
                            {"batch", a->batch},
                            {"ttft_s", ttft},
                            {"ttft_floor_s", pre_floor},
                            {"ttft_ratio", ttft / pre_floor},
                            {"prefill_tok_s", double(L) / ttft},
                            {"decode_tok_s", dec_rate},
                            {"decode_floor_tok_s", floor_rate},
                            {"decode_ratio", floor_rate / dec_rate},
                            {"peak_gpu_gib", peak},
                            {"matmul_tflops", peaks.matmul_tflops},
                            {"copy_gbs", peaks.copy_gbs}};
        if (a->profile) j["profile"] = jprof;
        j["env"] = engine_switches();
        std::ofstream f(a->out, std::ios::app);
        if (!f) fail("{}: cannot open for appending", a->out);
        f << j.dump() << "\n";
      }
    }
    std::fputs(table.c_str(), stdout);
  });
}

}  // namespace sala::app
