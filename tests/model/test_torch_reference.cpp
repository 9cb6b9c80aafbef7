// Whole model against an independent float64 PyTorch reference (tools/torch_ref/sala_ref.py, written from the
// specification only): `sala init` a random model, `sala dump` a prefill over random ids, then
// tools/torch_ref/compare.py checks every traced tensor (relative error <= 1e-4, fp32 vs float64) and every InfLLM-V2
// top-k index (identical). Cases: sala-tiny above dense_len (block selection, incl. call lengths that trigger the
// stage-1 visibility off-by-one of §4.9 item 1), at dense_len and below it (dense), and the dense teachers
// minicpm-tiny (muP; plus a LongRoPE variant) and llama-tiny. Skips when /usr/bin/python3 cannot import torch
// (scripts/install_deps.sh installs python3-torch). Also a MiniCPM config without its muP fields (HF class defaults).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "test_util.h"

namespace {

using sala::test::ShellRun;
using sala::test::shell;

const std::string kPython = "/usr/bin/python3";

std::string sala_bin() { return std::string(SALA_BINARY_DIR) + "/sala"; }
std::string compare_py() { return std::string(SALA_SOURCE_DIR) + "/tools/torch_ref/compare.py"; }

// Empty when the reference can run, else why not (the skip message).
std::string torch_missing() {
  static const std::string why = [] {
    if (!std::filesystem::exists(kPython)) return kPython + " not found";
    ShellRun r = shell(kPython + " -c 'import torch, numpy'");
    if (r.code != 0) return kPython + " cannot import torch/numpy (apt-get install python3-torch python3-numpy)";
    return std::string();
  }();
  return why;
}

std::string random_ids(int n, uint32_t seed, int vocab = 512) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(0, vocab - 1);
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? "," : "") + std::to_string(d(rng));
  return s;
}

// init a preset -> (optionally) edit its config.json with a Python statement over the dict `c` -> dump n random ids
// -> compare.py; asserts every step succeeds.
void check_against_torch(const std::string& tag, const std::string& preset, int n_tokens, uint32_t seed,
                         const std::string& config_edit = "") {
  const std::string missing = torch_missing();
  if (!missing.empty()) GTEST_SKIP() << "torch reference unavailable: " << missing;
  if (!std::filesystem::exists(sala_bin())) GTEST_SKIP() << "sala binary not built";
  const sala::test::TempDir tmp_dir("torchref_" + tag);
  const std::string dir = tmp_dir.str();
  const std::string model = dir + "/m";
  ShellRun r = shell(sala_bin() + " init --preset " + preset + " --out " + model + " --seed " + std::to_string(seed));
  ASSERT_EQ(r.code, 0) << r.out;
  if (!config_edit.empty()) {
    const std::string script = "import json,sys; p=sys.argv[1]; c=json.load(open(p)); " + config_edit +
                               "; json.dump(c,open(p,'w'),indent=1)";
    r = shell(kPython + " -c \"" + script + "\" " + model + "/config.json");
    ASSERT_EQ(r.code, 0) << r.out;
  }
  const std::string ids = random_ids(n_tokens, seed * 7919u + uint32_t(n_tokens));
  const std::string dump = dir + "/dump.safetensors";
  r = shell(sala_bin() + " dump " + model + " --ids " + ids + " --out " + dump);
  ASSERT_EQ(r.code, 0) << r.out;
  r = shell(kPython + " " + compare_py() + " " + model + " " + dump + " --ids " + ids);
  EXPECT_EQ(r.code, 0) << "compare.py (" << tag << ", " << n_tokens << " tokens) failed:\n" << r.out;
  EXPECT_NE(r.out.find("PASSED"), std::string::npos) << r.out;
}

}  // namespace

// 300 tokens > dense_len 128: every sparse layer runs block selection (K1/K2, stage 1, pooling, forced blocks, ties).
TEST(TorchReference, SalaTinySparse300) { check_against_torch("sala300", "sala-tiny", 300, 1); }

// 299 = 3 (mod 4): the K1 visibility off-by-one (stride 4); 319 = 15 (mod 16): K1 and K2 (stride 16) both.
TEST(TorchReference, SalaTinySparseVisibilityOffByOne) {
  check_against_torch("sala299", "sala-tiny", 299, 2);
  check_against_torch("sala319", "sala-tiny", 319, 3);
}

// Exactly dense_len: the first length that switches to block selection.
TEST(TorchReference, SalaTinyAtDenseLen) { check_against_torch("sala128", "sala-tiny", 128, 4); }

// Below dense_len: sparse layers run dense causal attention.
TEST(TorchReference, SalaTinyDense100) { check_against_torch("sala100", "sala-tiny", 100, 5); }

TEST(TorchReference, MinicpmTiny) { check_against_torch("minicpm", "minicpm-tiny", 100, 6); }

TEST(TorchReference, LlamaTiny) { check_against_torch("llama", "llama-tiny", 100, 7); }

// minicpm-tiny with LongRoPE (max_position_embeddings 2048 > original 512: long factors, cos/sin scaled).
TEST(TorchReference, MinicpmTinyLongRope) {
  check_against_torch("longrope", "minicpm-tiny", 100, 8,
                      "c['max_position_embeddings']=2048; "
                      "c['rope_scaling']={'rope_type':'longrope','original_max_position_embeddings':512,"
                      "'long_factor':[1.0,1.3,1.9,2.6,3.7,5.1,7.0,9.5],"
                      "'short_factor':[1.0,1.1,1.2,1.3,1.4,1.5,1.6,1.7]}");
}

// minicpm-tiny's checkpoint loaded with a config.json lacking the muP fields and tie_word_embeddings: the HF MiniCPM
// config-class defaults apply (scale_emb = scale_depth = dim_model_base = 1, tied embeddings, so the stored lm_head is
// ignored; docs/model.md, Checkpoints).
TEST(TorchReference, MinicpmTinyConfigDefaults) {
  check_against_torch("defaults", "minicpm-tiny", 100, 9,
                      "[c.pop(k) for k in ('scale_emb','scale_depth','dim_model_base','tie_word_embeddings')]");
}
