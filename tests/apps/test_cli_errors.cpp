// The CLI's error convention (README "Errors"): every failure prints one `sala: error: ...` line naming the option,
// file, tensor or field, and exits 1 (bad input or request), 2 (bad command line) or 3 (internal error); a failed
// command leaves no partial output; values that used to be accepted silently are errors or warnings.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "sala/io/safetensors.h"
#include "sala/model/presets.h"
#include "sala/model/weights.h"
#include "test_util.h"

namespace {

using sala::test::ShellRun;
using sala::test::TempDir;

std::string sala_bin() { return std::string(SALA_BINARY_DIR) + "/sala"; }
std::string tiny() { return std::string(SALA_SOURCE_DIR) + "/models/sala-tiny"; }

// stdout and stderr separately: a failed command must not have printed anything on stdout.
struct Split {
  int code = -1;
  std::string out, err;
};
Split run_split(const std::string& args, const TempDir& tmp) {
  const std::string o = tmp.file("stdout.txt"), e = tmp.file("stderr.txt");
  // shell() adds 2>&1 after the command: the redirections inside the group win
  ShellRun r = sala::test::shell("{ timeout 60 " + sala_bin() + " " + args + " > " + o + " 2> " + e + "; }");
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  return {r.code, slurp(o), slurp(e)};
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// One `sala: error:` line on stderr that names every fragment; nothing on stdout.
void expect_failure(const Split& r, int code, std::initializer_list<std::string> names) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_EQ(count(r.err, "sala: error: "), 1u) << r.err;
  EXPECT_EQ(r.err.rfind("sala: error: ", 0), 0u) << r.err;
  for (const auto& n : names) EXPECT_NE(r.err.find(n), std::string::npos) << "missing '" << n << "' in: " << r.err;
  EXPECT_EQ(r.out, "") << "a failed command printed on stdout";
}

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(sala_bin())) GTEST_SKIP() << "sala binary not built";
  }
  TempDir tmp{"cli_errors"};
};

}  // namespace

TEST_F(CliErrors, CommandLineErrorsExitTwoWithThePrefix) {
  expect_failure(run_split("generat x", tmp), 2, {"unknown command 'generat'", "did you mean 'generate'"});
  expect_failure(run_split("import llama2x a", tmp), 2, {"import: unknown command 'llama2x'", "llama2c"});
  expect_failure(run_split("tokenizer trian", tmp), 2, {"unknown command 'trian'", "train"});
  expect_failure(run_split("", tmp), 2, {"subcommand is required"});
  expect_failure(run_split("info " + tiny() + " --bogus", tmp), 2, {"--bogus"});
  expect_failure(run_split("generate", tmp), 2, {"model is required", "sala generate --help"});
  expect_failure(run_split("info " + tiny() + " --context -5", tmp), 2, {"--context", "-5"});
  expect_failure(run_split("info " + tiny() + " --context abc", tmp), 2, {"--context"});
}

TEST_F(CliErrors, VersionNamesTheCommit) {
  Split r = run_split("--version", tmp);
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.rfind("sala 0.", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("(commit "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("(commit )"), std::string::npos) << r.out;
}

TEST_F(CliErrors, IdListsHaveOneGrammar) {
  // out of range and malformed values name the option (no "stoll"); empty lists are errors, not BOS
  expect_failure(run_split("generate " + tiny() + " --ids 99999999999999999999 -q", tmp), 2, {"--ids", "out of range"});
  expect_failure(run_split("generate " + tiny() + " --ids 1,x -q", tmp), 2, {"--ids", "'x'"});
  expect_failure(run_split("generate " + tiny() + " --ids -3 -q", tmp), 2, {"--ids", "'-3'"});
  expect_failure(run_split("generate " + tiny() + " --ids ,,, -q", tmp), 2, {"--ids", "no token ids"});
  expect_failure(run_split("generate " + tiny() + " --ids '' -q", tmp), 2, {"--ids", "no token ids"});
  expect_failure(run_split("dump " + tiny() + " --ids 1 --decode-ids 2,y --out " + tmp.file("d.st"), tmp), 2,
                 {"--decode-ids"});
  EXPECT_FALSE(std::filesystem::exists(tmp.file("d.st")));
  // the same grammar everywhere: brackets and spaces as Python prints a list
  Split a = run_split("generate " + tiny() + " --ids '[1, 5, 9]' -n 3 --ignore-eos -q", tmp);
  Split b = run_split("generate " + tiny() + " --ids 1,5,9 -n 3 --ignore-eos -q", tmp);
  EXPECT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  Split d = run_split("detokenize " + tiny() + " '[1, 5, 9]'", tmp);
  Split e = run_split("detokenize " + tiny() + " 1,5,9", tmp);
  EXPECT_EQ(d.code, 0) << d.err;
  EXPECT_EQ(d.out, e.out);
  expect_failure(run_split("detokenize " + tiny() + " 1,99999", tmp), 1, {"99999", "outside the vocabulary"});
  expect_failure(run_split("detokenize " + tiny() + " 1,-4", tmp), 2, {"'-4'"});
}

TEST_F(CliErrors, SilentlyAcceptedValuesAreRefusedOrWarned) {
  expect_failure(run_split("generate " + tiny() + " --ids 1 --context -1 -q", tmp), 2, {"--context"});
  expect_failure(run_split("generate " + tiny() + " --ids 1 -n -2 -q", tmp), 2, {"--max-new-tokens"});
  expect_failure(run_split("generate " + tiny() + " --ids 1 --chunk -2 -q", tmp), 2, {"--chunk"});
  expect_failure(run_split("generate " + tiny() + " --ids 1 --temperature -1 -q", tmp), 2, {"--temperature"});
  expect_failure(run_split("generate " + tiny() + " --ids 1 --temperature nan -q", tmp), 2, {"--temperature"});
  expect_failure(run_split("generate " + tiny() + " --ids 1 --stop-ids 5,70000 -q", tmp), 1,
                 {"--stop-ids", "70000", "outside the vocabulary"});
  expect_failure(run_split("init --preset sala-tiny --out " + tmp.file("m") + " --shard-gb -1", tmp), 2,
                 {"--shard-gb"});
  expect_failure(run_split("init --preset sala-tiny --out " + tmp.file("m") + " --shard-gb nan", tmp), 2,
                 {"--shard-gb"});
  expect_failure(run_split("init --preset sala-tiny --out " + tmp.file("m") + " --dtype f8", tmp), 2, {"--dtype"});
  EXPECT_FALSE(std::filesystem::exists(tmp.file("m")));
  // above max_position_embeddings (4096): a warning on stderr, the run goes on (the reference computes it too)
  Split r = run_split("generate " + tiny() + " --ids 1,2 --context 5000 -n 2 --ignore-eos -q", tmp);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("sala: warning: --context 5000 is above the model's max_position_embeddings 4096"),
            std::string::npos)
      << r.err;
}

TEST_F(CliErrors, AFailedGenerateEchoesNoPrompt) {
  // the prompt text is echoed before generation starts: every argument is checked before that
  for (const std::string extra : {"--temperature -1", "--stop-ids 99999", "--context 2", "--top-p 0"}) {
    Split r = run_split("generate " + tiny() + " --prompt 'Once upon a time' " + extra, tmp);
    EXPECT_NE(r.code, 0) << extra;
    EXPECT_EQ(r.out, "") << extra;
    EXPECT_EQ(count(r.err, "sala: error: "), 1u) << r.err;
  }
  expect_failure(run_split("generate " + tiny() + " --prompt 'x' --ids 1", tmp), 2, {"--prompt", "--ids"});
}

TEST_F(CliErrors, InitRefusesASizeItCannotWrite) {
  // ~2^47 parameters: far more than any disk here; refused before a byte is written, naming both sizes
  const std::string cfg = tmp.file("huge.json");
  std::ofstream(cfg) << R"({"model_type": "llama", "vocab_size": 1000000, "hidden_size": 262144,
    "intermediate_size": 1000000, "num_hidden_layers": 64, "num_attention_heads": 64, "num_key_value_heads": 8,
    "max_position_embeddings": 4096})";
  Split r = run_split("init --config " + cfg + " --out " + tmp.file("out"), tmp);
  expect_failure(r, 1, {tmp.file("out"), "not enough free disk space", "GiB", "available"});
  EXPECT_FALSE(std::filesystem::exists(tmp.file("out")));
  // absurd sizes are refused by the config check, naming the field (no overflow, no bad_alloc)
  std::ofstream(cfg) << R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 9000000000000,
    "intermediate_size": 10, "num_hidden_layers": 2, "num_attention_heads": 2})";
  expect_failure(run_split("info " + cfg, tmp), 1, {cfg, "hidden_size", "larger than sala supports"});
}

TEST_F(CliErrors, ReInitLeavesNoStaleWeights) {
  // sharded over a single file, and back: the folder must load exactly what the last init wrote
  const std::string m = tmp.file("m"), fresh_a = tmp.file("fa"), fresh_b = tmp.file("fb");
  const std::string gen = " --ids 1,5,9 -n 6 --ignore-eos -q";
  ASSERT_EQ(run_split("init --preset sala-tiny --seed 1 --out " + m, tmp).code, 0);
  ASSERT_EQ(run_split("init --preset sala-tiny --seed 2 --shard-gb 0.001 --out " + m, tmp).code, 0);
  ASSERT_EQ(run_split("init --preset sala-tiny --seed 2 --shard-gb 0.001 --out " + fresh_b, tmp).code, 0);
  EXPECT_FALSE(std::filesystem::exists(m + "/model.safetensors")) << "a stale single file shadows the shards";
  EXPECT_TRUE(std::filesystem::exists(m + "/model.safetensors.index.json"));
  EXPECT_EQ(run_split("generate " + m + gen, tmp).out, run_split("generate " + fresh_b + gen, tmp).out);
  ASSERT_EQ(run_split("init --preset sala-tiny --seed 3 --out " + m, tmp).code, 0);
  ASSERT_EQ(run_split("init --preset sala-tiny --seed 3 --out " + fresh_a, tmp).code, 0);
  EXPECT_FALSE(std::filesystem::exists(m + "/model.safetensors.index.json"));
  for (const auto& e : std::filesystem::directory_iterator(m))
    EXPECT_EQ(e.path().filename().string().find("model-0"), std::string::npos) << "stale shard " << e.path();
  Split r = run_split("generate " + m + gen, tmp);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, run_split("generate " + fresh_a + gen, tmp).out);
  EXPECT_NE(r.out, run_split("generate " + fresh_b + gen, tmp).out);
}

TEST_F(CliErrors, CompareFlagsNaN) {
  // a dump full of NaN must not "match" a real one
  const std::string a = tmp.file("a.safetensors"), b = tmp.file("b.safetensors");
  ASSERT_EQ(run_split("dump " + tiny() + " --ids 1,5,9 --out " + a, tmp).code, 0);
  {
    auto f = sala::io::SafetensorsFile::open(a);
    std::vector<std::vector<float>> data;
    data.reserve(f.tensors().size());  // the spans below point into these buffers
    std::vector<sala::io::TensorToWrite> tw;
    for (const auto& t : f.tensors()) {
      if (t.dtype != sala::DType::F32) continue;
      data.emplace_back(size_t(t.numel()), std::nanf(""));
      tw.push_back({t.name, t.dtype, t.shape, sala::test::byte_view(data.back())});
    }
    sala::io::write_safetensors(b, tw);
  }
  Split r = run_split("compare " + a + " " + b + " --rtol 1e9", tmp);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("first tensor over rtol"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("non-finite"), std::string::npos) << r.out;
  EXPECT_EQ(run_split("compare " + a + " " + a, tmp).code, 0);
}

TEST_F(CliErrors, CheckWeightsNamesANonFiniteTensor) {
  const sala::ModelConfig c = sala::preset_config("sala-tiny");
  sala::Weights w = sala::random_weights(c, 5);
  w.layers[2].up[77] = std::numeric_limits<float>::infinity();
  const std::string m = tmp.file("nan");
  sala::save_model(c, w, m, sala::DType::BF16);
  expect_failure(run_split("info " + m + " --check-weights", tmp), 1,
                 {"model.layers.2.mlp.up_proj.weight", "element 77", "+Inf"});
  expect_failure(run_split("generate " + m + " --ids 1 --check-weights -q", tmp), 1,
                 {"model.layers.2.mlp.up_proj.weight"});
  Split ok = run_split("info " + tiny() + " --check-weights", tmp);
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("all finite"), std::string::npos) << ok.out;
}

TEST_F(CliErrors, MissingTensorNamesTheCheckpoint) {
  const sala::ModelConfig c = sala::preset_config("sala-tiny");
  const sala::Weights w = sala::random_weights(c, 5);
  std::vector<std::vector<uint16_t>> bufs;
  std::vector<sala::io::TensorToWrite> tw;
  bufs.reserve(sala::tensor_specs(c).size());  // the spans below point into these buffers
  for (const auto& s : sala::tensor_specs(c)) {
    if (s.name == "model.norm.weight") continue;
    const auto& v = w.get(s);
    bufs.emplace_back(v.size());
    sala::convert_from_f32(bufs.back().data(), v.data(), sala::DType::BF16, v.size());
    tw.push_back({s.name, sala::DType::BF16, s.shape, sala::test::byte_view(bufs.back())});
  }
  const std::string m = tmp.file("missing");
  std::filesystem::create_directories(m);
  sala::save_config(c, m);
  sala::io::write_safetensors(m + "/model.safetensors", tw);
  expect_failure(run_split("generate " + m + " --ids 1 -q", tmp), 1, {m, "model.norm.weight", "missing"});
}

TEST_F(CliErrors, TokenizerTrainLimits) {
  const std::string corpus = tmp.file("c.txt");
  {
    std::ofstream f(corpus);
    for (int i = 0; i < 200; ++i) f << "the quick brown fox " << i << " jumps over the lazy dog\n";
  }
  // the README's example on a small corpus: the soft limit (default) ends with fewer pieces and says so
  Split r = run_split("tokenizer train -i " + corpus + " -o " + tmp.file("tok") + " --vocab-size 8000", tmp);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("fewer than --vocab-size 8000"), std::string::npos) << r.out;
  // --hard-vocab-limit asks for the exact size, which this corpus cannot give
  r = run_split("tokenizer train -i " + corpus + " -o " + tmp.file("tok2") + " --vocab-size 8000 --hard-vocab-limit",
                tmp);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err.rfind("sala: error: ", 0), 0u) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("tok2") + "/tokenizer.json"));
  // --soft-vocab-limit is the default spelled out
  r = run_split("tokenizer train -i " + corpus + " -o " + tmp.file("tok3") + " --vocab-size 8000 --soft-vocab-limit",
                tmp);
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(CliErrors, ImportChecksItsVocabularyBeforeWritingTheModel) {
  SALA_REQUIRE_SHARED("fixtures/stories260K/stories260K.bin");
  const std::string bin = sala::test::shared_path("fixtures/stories260K/stories260K.bin");
  const std::string tok = sala::test::shared_path("fixtures/stories260K/tok512.bin");
  // the vocabulary cut after its first 100 pieces: well-formed, but 100 tokens for a 512-token model
  std::string bytes = sala::test::read_text(tok);
  size_t at = 4;
  for (int piece = 0; piece < 100; ++piece) {
    int32_t n;
    std::memcpy(&n, bytes.data() + at + 4, 4);
    at += 8 + size_t(n);
  }
  const std::string small = tmp.file("tok100.bin");
  std::ofstream(small, std::ios::binary) << bytes.substr(0, at);
  const std::string out = tmp.file("imported");
  expect_failure(run_split("import llama2c " + bin + " --vocab " + small + " --out " + out, tmp), 1,
                 {small, "100 tokens", "vocab_size 512"});
  EXPECT_FALSE(std::filesystem::exists(out)) << "a failed import wrote its model";
  // re-importing without --vocab removes the vocabulary of an earlier import (it would decode another model's ids)
  ASSERT_EQ(run_split("import llama2c " + bin + " --vocab " + tok + " --out " + out, tmp).code, 0);
  ASSERT_TRUE(std::filesystem::exists(out + "/llama2c_tokenizer.bin"));
  ASSERT_EQ(run_split("import llama2c " + bin + " --out " + out, tmp).code, 0);
  EXPECT_FALSE(std::filesystem::exists(out + "/llama2c_tokenizer.bin"));
}

// sala bench on the CPU: the table on stdout, one JSON line per length with every figure beside its floor, --profile's
// per-op tables, and bad values refused naming the option.
TEST_F(CliErrors, BenchOnTheCpuWritesItsFiguresAndRefusesBadValues) {
  const std::string j = tmp.file("bench.jsonl");
  setenv("SALA_CUDA_FUSE", "0", 1);  // recorded in each line's "env" (the CPU backend ignores it)
  const Split ok = run_split("bench --preset sala-tiny --device cpu --lengths 100,64 --decode 2 --profile --out " + j, tmp);
  unsetenv("SALA_CUDA_FUSE");
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(ok.out.find("sala-tiny"), std::string::npos) << ok.out;
  for (const char* want : {"profile: sala-tiny prefill of 100 tokens", "profile: sala-tiny decode at 64 tokens, batch 1",
                           "linear gate_proj|up_proj", "attention (sparse layer, dense call)", "lightning"})
    EXPECT_NE(ok.err.find(want), std::string::npos) << want << "\n" << ok.err;
  std::ifstream f(j);
  std::string line;
  int lines = 0;
  while (std::getline(f, line)) {
    ++lines;
    for (const char* key : {"\"ttft_s\"", "\"ttft_floor_s\"", "\"decode_tok_s\"", "\"decode_floor_tok_s\"",
                            "\"commit\"", "\"command\"", "\"card\"", "\"date\"", "\"profile\"",
                            "\"env\":{\"SALA_CUDA_FUSE\":\"0\"}"})
      EXPECT_NE(line.find(key), std::string::npos) << key << " missing in " << line;
  }
  EXPECT_EQ(lines, 2);
  expect_failure(run_split("bench --preset sala-tiny --device cpu --lengths 100 --decode 0", tmp), 2, {"--decode"});
  expect_failure(run_split("bench --preset sala-tiny --device cpu --lengths 12q", tmp), 2, {"12q"});
  expect_failure(run_split("bench --preset no-such --device cpu", tmp), 1, {"no-such"});
}
