// Helpers shared by the CLI subcommands: id-list parsing, model resolution, byte formatting, fingerprints.
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sala/model/config.h"
#include "sala/model/model.h"

namespace sala::app {

using clk = std::chrono::steady_clock;
inline double since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

// "a, b,c": the comma-separated items, spaces dropped, empty items skipped.
std::vector<std::string> split_list(const std::string& s);
// A --lengths token count: 4096, 4k, 128K, 1m (k = 1024), whole, from min_tokens to 2^31; UsageError otherwise.
int64_t parse_length(const std::string& s, int64_t min_tokens = 1);

// "1,2,3", "1 2 3" or "[1, 2, 3]"; at least one id; UsageError naming `what` otherwise.
std::vector<int32_t> parse_ids(const std::string& s, const std::string& what);
std::string join_ids(std::span<const int32_t> ids);
std::string human_bytes(double b);
uint32_t fingerprint(std::span<const float> v);  // FNV-1a of the bytes: numerics changes show at a glance
// A model given as a folder, a config.json path or a preset name.
ModelConfig resolve_config(const std::string& model, const std::string& preset);

// Option checks shared by the commands that run a model (UsageError naming the option):
// -n >= 0, --chunk >= 0, --context >= 0 (0 = the model's limit).
void check_lengths(int64_t max_new, int64_t chunk, int64_t context);
// The context limit a run uses: --context, or max_position_embeddings when 0. Above max_position_embeddings it warns
// on stderr (positions past it were never trained; the reference computes them all the same).
int64_t context_limit(const ModelConfig& c, int64_t context);
// Every id in [0, vocab_size), else an error naming `what`, the id and its index.
void check_ids_in_vocab(std::span<const int32_t> ids, const ModelConfig& c, const std::string& what);
// --check-weights: scan every weight for NaN/Inf at load (names the tensor).
void add_check_weights_flag(CLI::App* cmd, bool& flag);
// --device cpu|cuda (default cpu).
void add_device_option(CLI::App* cmd, std::string& device);
Device parse_device(const std::string& s);
// Loads a model for a run on `device` with a cache planned for one sequence of `context` tokens.
Model load_for_run(const std::string& dir, const std::string& device, bool check_weights, int64_t context);

}  // namespace sala::app
