// libFuzzer target for the whole checkpoint load path: the input is written as model.safetensors into a private
// folder and goes through io::Checkpoint::open (open_regular_file, mmap, parse_safetensors_header), then
// validate_checkpoint and load_weights for a fixed two-layer SALA config (one sparse, one Lightning layer, 8 hidden),
// as Model::load does. Every outcome must be a clean sala::Error or weights of exactly the config's shapes; a crash, a
// sanitizer report or any other exception (an InternalError from SALA_CHECK included) is a finding.
// The file is written, not parsed in memory, so the real open/mmap path runs (in /dev/shm when there is one: cheap).
// With SALA_FUZZ_SEED_DIR set, LLVMFuzzerInitialize first writes the seed corpus there: valid checkpoints of the
// config in BF16, F16 and F32 written by save_model, and a few near-misses (scripts/fuzz.sh relies on this).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "sala/core/error.h"
#include "sala/io/checkpoint.h"
#include "sala/io/safetensors.h"
#include "sala/model/config.h"
#include "sala/model/presets.h"
#include "sala/model/weights.h"

namespace {

namespace fs = std::filesystem;
using namespace sala;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_checkpoint_load: %s\n", what);
  __builtin_trap();
}

// sala-tiny's settings scaled down so a whole checkpoint is ~5 kB in BF16 (fits the fuzzer's -max_len).
ModelConfig fuzz_config() {
  nlohmann::json j = config_to_json(preset_config("sala-tiny"));
  j["num_hidden_layers"] = 2;
  j["mixer_types"] = {"minicpm4", "lightning-attn"};
  j["hidden_size"] = 8;
  j["intermediate_size"] = 16;
  j["num_attention_heads"] = 2;
  j["num_key_value_heads"] = 1;
  j["head_dim"] = 4;
  j["lightning_nh"] = 2;
  j["lightning_nkv"] = 2;
  j["lightning_head_dim"] = 4;
  j["vocab_size"] = 16;
  j["max_position_embeddings"] = 64;
  j["sparse_config"] = {{"block_size", 4}, {"dense_len", 8}, {"init_blocks", 1}, {"kernel_size", 4},
                        {"kernel_stride", 2}, {"topk", 2},    {"use_nope", false}, {"window_size", 4}};
  return parse_config(j, "fuzz config");
}

const ModelConfig& config() {
  static const ModelConfig c = fuzz_config();
  return c;
}

// A folder of this process's own, removed at exit (the path is never destroyed, so the exit handler can use it).
const fs::path& work_dir() {
  static const fs::path* dir = [] {
    fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    std::string tmpl = (base / "sala-fuzz-ckpt-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) finding("cannot create a temp folder");
    auto* p = new fs::path(tmpl);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(work_dir(), ec);
    });
    return p;
  }();
  return *dir;
}

void write_all(const fs::path& p, const void* data, size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), std::streamsize(n));
  if (!out) finding("cannot write the input file");
}

void write_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  const ModelConfig& c = config();
  const Weights w = random_weights(c, 7);
  const fs::path tmp = work_dir() / "seed";
  for (auto [dt, name] : {std::pair{DType::BF16, "valid_bf16"}, std::pair{DType::F16, "valid_f16"},
                          std::pair{DType::F32, "valid_f32"}}) {
    save_model(c, w, tmp.string(), dt);
    fs::copy_file(tmp / io::kSafeWeightsName, dir / name, fs::copy_options::overwrite_existing);
    // The point of these seeds is that they load: if the config or the writer drifts, say so instead of fuzzing
    // only the rejection paths.
    (void)load_weights(c, io::Checkpoint::open((dir / name).string()));
  }
  // Near-misses, rewritten through the writer so each is a well-formed file: one tensor missing, one of a wrong
  // shape, one of an integer dtype, one extra (unused) tensor.
  io::Checkpoint ck = io::Checkpoint::open((dir / "valid_bf16").string());
  const auto& f = ck.files().front();
  auto rewrite = [&](const char* seed_name, auto&& edit) {
    std::vector<io::TensorToWrite> ts;
    for (const auto& t : f.tensors()) ts.push_back({t.name, t.dtype, t.shape, f.bytes(t)});
    edit(ts);
    io::write_safetensors((dir / seed_name).string(), ts, {{"format", "pt"}});
  };
  rewrite("missing_tensor", [](auto& ts) { ts.erase(ts.begin()); });
  rewrite("wrong_shape", [](auto& ts) {
    auto& t = ts.back();
    t.shape = {int64_t(t.bytes.size() / 2)};
  });
  rewrite("int_dtype", [](auto& ts) { ts.back().dtype = DType::I16; });
  static const uint16_t extra[2] = {0x3F80, 0x3F80};
  rewrite("extra_tensor", [](auto& ts) {
    ts.push_back({"model.rotary_emb.inv_freq", DType::BF16, {2}, std::as_bytes(std::span<const uint16_t>(extra))});
  });
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  try {
    (void)config();
    (void)work_dir();
    if (const char* dir = std::getenv("SALA_FUZZ_SEED_DIR")) write_seeds(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_checkpoint_load: setup failed: %s\n", e.what());
    return 1;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ModelConfig& c = config();
  const fs::path path = work_dir() / io::kSafeWeightsName;
  write_all(path, data, size);
  try {
    io::Checkpoint ck = io::Checkpoint::open(work_dir().string());
    const std::vector<std::string> unused = validate_checkpoint(c, ck);
    const std::vector<std::string> names = ck.names();
    const std::set<std::string> all(names.begin(), names.end());
    for (const auto& n : unused)
      if (!all.count(n)) finding("validate_checkpoint reported an unused tensor that is not in the checkpoint");
    const Weights w = load_weights(c, ck);
    for (const TensorSpec& s : tensor_specs(c)) {
      if (s.role == TensorRole::LmHead && c.tie_word_embeddings) continue;
      if (w.get(s).size() != size_t(s.numel())) finding("load_weights returned a tensor of the wrong size");
      if (!all.count(s.name)) finding("load_weights succeeded without a tensor the config needs");
    }
    check_weights_finite(c, ck);
  } catch (const sala::Error&) {
    return 0;  // rejected cleanly
  }
  return 0;
}
