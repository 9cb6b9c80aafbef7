// The sala CLI given a FIFO or a folder where it expects a file: each command must fail at once with exit code 1 and
// "sala: error: <path>: not a regular file ...". Commands run under `timeout 10`, so one that blocks on a FIFO open
// fails the test (exit 124) instead of hanging it. The library-level readers are covered in tests/io/test_file.cpp.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "sala/io/safetensors.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using sala::test::TempDir;

bool have_cli() { return fs::exists(std::string(SALA_BINARY_DIR) + "/sala"); }

sala::test::ShellRun sala_cli(const std::string& args) {
  return sala::test::shell("timeout 10 " + std::string(SALA_BINARY_DIR) + "/sala " + args + " < /dev/null");
}

std::string make_fifo(const std::string& path) {
  EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path << ": " << std::strerror(errno);
  return path;
}

std::string tiny_model() { return std::string(SALA_SOURCE_DIR) + "/models/sala-tiny"; }

// Exit 1 (not 124, the timeout's), and the error line names the path and what is there.
void expect_refused(const sala::test::ShellRun& r, const std::string& path, const std::string& found) {
  EXPECT_EQ(r.code, 1) << (r.code == 124 ? "timed out: blocked on a FIFO?\n" : "") << r.out;
  EXPECT_NE(r.out.find("sala: error: " + path + ": not a regular file"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("found " + found), std::string::npos) << r.out;
}

TEST(CliFiles, CompareRefusesFifo) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  TempDir dir("cli-files");
  std::vector<float> v = {1, 2};
  const std::string good = dir.file("good.safetensors");
  const std::vector<sala::io::TensorToWrite> ts = {{"t", sala::DType::F32, {2}, sala::test::byte_view(v)}};
  sala::io::write_safetensors(good, ts);
  const std::string fifo = make_fifo(dir.file("dump.safetensors"));
  expect_refused(sala_cli("compare " + fifo + " " + good), fifo, "a FIFO");
  expect_refused(sala_cli("compare " + good + " " + fifo), fifo, "a FIFO");
}

TEST(CliFiles, TokenizeFileRefusesFifoAndFolder) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  TempDir dir("cli-files");
  const std::string fifo = make_fifo(dir.file("text.txt"));
  expect_refused(sala_cli("tokenize " + tiny_model() + " -f " + fifo), fifo, "a FIFO");
  // A folder used to read as empty text (printing just BOS); now it is an error naming it.
  expect_refused(sala_cli("tokenize " + tiny_model() + " -f " + dir.str()), dir.str(), "a directory");
  // A regular file still works.
  sala::test::shell("printf 'Once upon a time' > " + dir.file("ok.txt"));
  auto r = sala_cli("tokenize " + tiny_model() + " -f " + dir.file("ok.txt"));
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, sala_cli("tokenize " + tiny_model() + " \"Once upon a time\"").out);
}

TEST(CliFiles, GenerateInfoInitRefuseFifoConfigOrWeights) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  TempDir dir("cli-files");
  fs::create_directories(dir.path() / "cfg");
  const std::string cfg = make_fifo(dir.file("cfg/config.json"));
  fs::copy_file(tiny_model() + "/model.safetensors", dir.file("cfg/model.safetensors"));
  expect_refused(sala_cli("generate " + dir.file("cfg") + " --ids 1,2 -n 2"), cfg, "a FIFO");
  expect_refused(sala_cli("init --config " + cfg + " --out " + dir.file("new")), cfg, "a FIFO");
  EXPECT_FALSE(fs::exists(dir.file("new")));

  fs::create_directories(dir.path() / "w");
  fs::copy_file(tiny_model() + "/config.json", dir.file("w/config.json"));
  const std::string weights = make_fifo(dir.file("w/model.safetensors"));
  expect_refused(sala_cli("generate " + dir.file("w") + " --ids 1,2 -n 2"), weights, "a FIFO");
  expect_refused(sala_cli("info " + dir.file("w")), weights, "a FIFO");
}

TEST(CliFiles, TokenizerTrainAndImportRefuseFifo) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  TempDir dir("cli-files");
  const std::string corpus = make_fifo(dir.file("corpus.txt"));
  expect_refused(sala_cli("tokenizer train -i " + corpus + " -o " + dir.file("tok") + " --vocab-size 300"), corpus,
                 "a FIFO");
  const std::string bin = make_fifo(dir.file("model.bin")), vocab = make_fifo(dir.file("tok.bin"));
  auto r = sala_cli("import llama2c " + bin + " --vocab " + vocab + " --out " + dir.file("out"));
  EXPECT_EQ(r.code, 1) << (r.code == 124 ? "timed out: blocked on a FIFO?\n" : "") << r.out;
  EXPECT_NE(r.out.find("not a regular file"), std::string::npos) << r.out;
}

}  // namespace
