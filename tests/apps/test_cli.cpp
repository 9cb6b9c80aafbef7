// The sala CLI end to end: init -> info -> generate -> dump, and clear errors (exit code 1, message naming the thing).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>

#include "sala/io/safetensors.h"
#include "test_util.h"

namespace {

using CliRun = sala::test::ShellRun;

CliRun sala_cli(const std::string& args) { return sala::test::shell(std::string(SALA_BINARY_DIR) + "/sala " + args); }

bool have_cli() { return std::filesystem::exists(std::string(SALA_BINARY_DIR) + "/sala"); }

}  // namespace

TEST(Cli, InitInfoGenerateDump) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const sala::test::TempDir tmp_dir("cli");
  const std::string dir = tmp_dir.str();
  CliRun r = sala_cli("init --preset sala-tiny --out " + dir + "/m --seed 3");
  ASSERT_EQ(r.code, 0) << r.out;
  r = sala_cli("info " + dir + "/m --context 1000");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("SLLS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("all present"), std::string::npos) << r.out;
  r = sala_cli("generate " + dir + "/m --ids 1,5,9 -n 5 --ignore-eos -q");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ','), 4) << r.out;
  // same seed, same tokens; chunked prefill gives the same greedy tokens
  CliRun r2 = sala_cli("generate " + dir + "/m --ids 1,5,9 -n 5 --ignore-eos -q --chunk 2");
  EXPECT_EQ(r.out, r2.out);
  r = sala_cli("dump " + dir + "/m --ids 1,5,9 --decode-ids 4,4 --out " + dir + "/d.safetensors");
  ASSERT_EQ(r.code, 0) << r.out;
  auto f = sala::io::SafetensorsFile::open(dir + "/d.safetensors");
  ASSERT_NE(f.find("prefill.logits"), nullptr);
  EXPECT_EQ(f.find("prefill.logits")->shape, (std::vector<int64_t>{3, 512}));
  EXPECT_NE(f.find("prefill.L1.lightning.state"), nullptr);
  EXPECT_NE(f.find("step1.logits"), nullptr);
  // compare: a dump against itself passes; against a chunked run of the same prompt it passes within fp32 noise;
  // against another model it names the first diverging tensor
  r = sala_cli("dump " + dir + "/m --ids 1,5,9 --decode-ids 4,4 --chunk 1 --out " + dir + "/d2.safetensors");
  ASSERT_EQ(r.code, 0) << r.out;
  r = sala_cli("compare " + dir + "/d.safetensors " + dir + "/d2.safetensors --rtol 1e-4");
  EXPECT_EQ(r.code, 0) << r.out;
  ASSERT_EQ(sala_cli("init --preset sala-tiny --out " + dir + "/m2 --seed 4").code, 0);
  r = sala_cli("dump " + dir + "/m2 --ids 1,5,9 --out " + dir + "/d3.safetensors");
  ASSERT_EQ(r.code, 0) << r.out;
  r = sala_cli("compare " + dir + "/d.safetensors " + dir + "/d3.safetensors");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("first tensor over rtol"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("prefill.embed"), std::string::npos) << r.out;  // embeddings differ first
}

TEST(Cli, TextPromptAndChatOnTheBundledModel) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const std::string model = std::string(SALA_SOURCE_DIR) + "/models/sala-tiny";
  CliRun r = sala_cli("generate " + model + " --prompt \"Once upon a time\" -n 8 --temperature 0.7 --seed 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u) << r.out;  // the prompt, then the continuation
  EXPECT_NE(r.out.find("decode 8 tok"), std::string::npos) << r.out;
  r = sala_cli("tokenize " + model + " \"Once upon a time\"");
  ASSERT_EQ(r.code, 0) << r.out;
  r = sala_cli("chat " + model + " -n 4 --seed 1 < /dev/null");
  EXPECT_EQ(r.code, 0) << r.out;
  const sala::test::TempDir tmp_dir("cli_chat");
  const std::string dir = tmp_dir.str();
  std::ofstream(dir + "/in.txt") << "hello there\nand again\n";
  r = sala_cli("chat " + model + " -n 4 --seed 1 --system \"Be brief.\" < " + dir + "/in.txt");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_GE(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;  // a reply line per user line (random weights)
}

TEST(Cli, ErrorsAreClear) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const sala::test::TempDir tmp_dir("cli_err");
  const std::string dir = tmp_dir.str();
  CliRun r = sala_cli("generate " + dir + "/nope --ids 1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("nope"), std::string::npos) << r.out;
  ASSERT_EQ(sala_cli("init --preset sala-tiny --out " + dir + "/m").code, 0);
  r = sala_cli("generate " + dir + "/m --ids 1,x,3");
  EXPECT_EQ(r.code, 2);  // a malformed option value is a usage error
  EXPECT_NE(r.out.find("--ids"), std::string::npos) << r.out;
  r = sala_cli("generate " + dir + "/m --ids 1,99999");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("99999"), std::string::npos) << r.out;
  r = sala_cli("generate " + dir + "/m --ids 1,2,3,4 --context 3");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("context limit"), std::string::npos) << r.out;
  r = sala_cli("init --preset nosuch --out " + dir + "/x");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("sala-tiny"), std::string::npos) << r.out;  // lists the known presets
  // a checkpoint with one tensor of the wrong shape
  std::filesystem::remove(dir + "/m/model.safetensors");
  r = sala_cli("init --config " + dir + "/m/config.json --out " + dir + "/m2");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ofstream(dir + "/m/model.safetensors") << "garbage";
  r = sala_cli("generate " + dir + "/m --ids 1");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("model.safetensors"), std::string::npos) << r.out;
}

TEST(Cli, ImportStories260K) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  SALA_REQUIRE_SHARED("fixtures/stories260K/stories260K.bin");
  const sala::test::TempDir tmp_dir("cli_l2c");
  const std::string dir = tmp_dir.str();
  CliRun r = sala_cli("import llama2c " + sala::test::shared_path("fixtures/stories260K/stories260K.bin") + " --vocab " +
                   sala::test::shared_path("fixtures/stories260K/tok512.bin") + " --out " + dir + "/s");
  ASSERT_EQ(r.code, 0) << r.out;
  r = sala_cli("generate " + dir + "/s -n 30");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("Once upon a time, there was a little girl named Lily."), std::string::npos) << r.out;
}
