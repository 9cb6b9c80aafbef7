// sala eval through the CLI: the whole suite end to end on the bundled tiny model (CPU, short lengths), its files, the
// same results whatever the batch, perplexity, and the error convention (one `sala: error:` line naming the option).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"

namespace {

using sala::test::TempDir;

std::string sala_bin() { return std::string(SALA_BINARY_DIR) + "/sala"; }
std::string tiny() { return std::string(SALA_SOURCE_DIR) + "/models/sala-tiny"; }
std::string haystack() { return std::string(SALA_SOURCE_DIR) + "/tests/text/corpus/english.txt"; }
bool have_cli() { return std::filesystem::exists(sala_bin()); }

// Under AddressSanitizer (the debug preset, -O0) the model runs ~30x slower: the whole suite runs at one length and
// depth there, and each command gets more time; the release run covers the full grid.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

struct Split {
  int code = -1;
  std::string out, err;
};
std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
Split run(const std::string& args, const TempDir& tmp) {
  const std::string o = tmp.file("stdout.txt"), e = tmp.file("stderr.txt");
  const std::string limit = kSanitized ? "600" : "120";
  auto r = sala::test::shell("{ timeout " + limit + " " + sala_bin() + " " + args + " > " + o + " 2> " + e + "; }");
  return {r.code, slurp(o), slurp(e)};
}

}  // namespace

TEST(CliEval, WholeSuiteEndToEndOnTheTinyModel) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const TempDir tmp("cli_eval");
  const std::string out = tmp.file("r");
  const std::string len = kSanitized ? "520" : "700", depths = kSanitized ? "50" : "0,100";
  const int n_depths = kSanitized ? 1 : 2;
  const std::string common = "eval " + tiny() + " --tasks all --haystack " + haystack() + " --lengths " + len +
                             " --depths " + depths + " --samples 1 -n 6 --no-plot -q";
  Split r = run(common + " --out " + out, tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  // stdout: the summary table, every task and length
  EXPECT_NE(r.out.find("| task | " + len + " | mean | samples |"), std::string::npos) << r.out;
  for (const char* t : {"niah_single_1", "niah_single_3", "niah_multikey_2", "niah_multiquery", "vt", "cwe", "fwe",
                        "passkey", "**mean**"})
    EXPECT_NE(r.out.find(std::string("| ") + t + " |"), std::string::npos) << t << "\n" << r.out;
  EXPECT_EQ(slurp(out + "/summary.md"), r.out);
  // results.jsonl: one line per sample (7 depth tasks x the depths + 5 others), each within 1% of its length
  std::istringstream jl(slurp(out + "/results.jsonl"));
  std::string line;
  int n = 0;
  while (std::getline(jl, line)) {
    const auto j = nlohmann::json::parse(line);
    const int64_t L = j.at("length"), tokens = j.at("tokens");
    EXPECT_LE(tokens, L);
    EXPECT_GE(double(tokens), 0.99 * double(L)) << line.substr(0, 200);
    EXPECT_LE(j.at("output_tokens").get<int64_t>(), 6);
    EXPECT_GE(j.at("score").get<double>(), 0.0);
    ++n;
  }
  EXPECT_EQ(n, 7 * n_depths + 5);
  const std::string tsv = slurp(out + "/heatmap.tsv");
  EXPECT_EQ(tsv.rfind("task\tlength\tdepth\tscore\tsamples\n", 0), 0u);
  EXPECT_NE(tsv.find("passkey\t" + len + (kSanitized ? "\t50\t" : "\t100\t")), std::string::npos) << tsv;
  EXPECT_NE(tsv.find("cwe\t" + len + "\t-\t"), std::string::npos) << tsv;
  // another batch and step size: the same samples, the same answers (CPU logits are bitwise those of a run alone)
  const std::string few = "eval " + tiny() + " --tasks niah_single_1,vt,passkey --lengths " + len + " --depths " +
                          depths + " --samples 1 -n 6 --no-plot -q";
  ASSERT_EQ(run(few + " --batch 4 --out " + tmp.file("r1"), tmp).code, 0);
  Split r2 = run(few + " --batch 1 --chunk 300 --out " + tmp.file("r2"), tmp);
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_EQ(slurp(tmp.file("r2") + "/results.jsonl"), slurp(tmp.file("r1") + "/results.jsonl"));
  EXPECT_NE(slurp(out + "/results.jsonl").find(slurp(tmp.file("r1") + "/results.jsonl").substr(0, 100)), std::string::npos);
}

TEST(CliEval, PerplexityOfFilesAndFoldersAndHeatmapPng) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const TempDir tmp("cli_eval_ppl");
  const std::string corpus = std::string(SALA_SOURCE_DIR) + "/tests/text/corpus";
  Split r = run("eval " + tiny() + " --ppl " + corpus + " --ppl " + haystack() + " --window 256 --stride 128 -q --out " +
                    tmp.file("p"),
                tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| text | tokens | scored | windows | mean NLL (nats) | perplexity | bits/byte |"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("english.txt"), std::string::npos);
  EXPECT_NE(r.out.find("| (all) |"), std::string::npos);
  const std::string jl = slurp(tmp.file("p") + "/results.jsonl");
  EXPECT_NE(jl.find("\"task\":\"ppl\""), std::string::npos);
  // the heatmap PNG when matplotlib is installed, else a note
  r = run("eval " + tiny() + " --tasks passkey --lengths 300,400 --depths 0,50 --samples 1 -n 2 --out " + tmp.file("h"), tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  if (sala::test::shell("/usr/bin/python3 -c 'import matplotlib'").code == 0)
    EXPECT_TRUE(std::filesystem::exists(tmp.file("h") + "/heatmap_passkey.png")) << r.err;
  else
    EXPECT_NE(r.err.find("heatmap PNGs skipped"), std::string::npos) << r.err;
}

TEST(CliEval, ErrorsNameTheOption) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const TempDir tmp("cli_eval_err");
  struct Case {
    std::string args;
    int code;
    std::vector<std::string> say;
  };
  const std::string m = tiny();
  const std::vector<Case> cases = {
      {"eval " + m + " --tasks niah_singel", 2, {"--tasks", "unknown task 'niah_singel'", "niah_single_1"}},
      {"eval " + m + " --tasks passkey --lengths 4q", 2, {"--lengths", "'4q' is not a token count"}},
      {"eval " + m + " --tasks passkey --lengths 0", 2, {"--lengths", "out of range"}},
      {"eval " + m + " --tasks passkey --lengths 4k", 1, {"--lengths", "over the context limit of 4096"}},
      {"eval " + m + " --tasks passkey --lengths 8k --context 2048", 1, {"--lengths", "context limit of 2048"}},
      {"eval " + m + " --tasks passkey --depths 120", 2, {"--depths", "'120'"}},
      {"eval " + m + " --tasks niah_single_2", 2, {"--haystack", "niah_single_2"}},
      {"eval " + m + " --tasks niah_single_2 --haystack /nonexistent/x.txt", 1, {"--haystack", "/nonexistent/x.txt"}},
      {"eval " + m + " --ppl /nonexistent/y.txt", 1, {"--ppl", "/nonexistent/y.txt", "no such file"}},
      {"eval " + m + " --ppl README.md --window 64 --stride 100", 2, {"--stride", "--window"}},
      {"eval " + m + " --ppl README.md --window 9000", 1, {"--window", "context limit"}},
      {"eval " + m, 2, {"--tasks", "--ppl"}},
      {"eval " + m + " --tasks passkey --samples 0", 2, {"--samples"}},
      {"eval " + m + " --tasks passkey --template jinja", 2, {"--template"}},
      {"eval --preset sala-tiny --tasks passkey", 2, {"--preset", "--tokenizer"}},
      {"eval /nonexistent/model --tasks passkey", 1, {"/nonexistent/model"}},
      {"eval " + m + " --tasks passkey --lengths 20", 1, {"passkey", "over the target length 20"}},
  };
  for (const Case& c : cases) {
    const Split r = run(c.args, tmp);
    EXPECT_EQ(r.code, c.code) << c.args << "\n" << r.err;
    EXPECT_EQ(r.out, "") << c.args;
    EXPECT_EQ(r.err.rfind("sala: error: ", 0), 0u) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n') <= 2, true) << r.err;  // the line (+ the help hint)
    for (const std::string& s : c.say) EXPECT_NE(r.err.find(s), std::string::npos) << c.args << "\n" << r.err << "\nmissing: " << s;
  }
}

TEST(CliEval, RandomWeightPresetWithATokenizer) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const TempDir tmp("cli_eval_preset");
  const Split r = run("eval --preset sala-tiny --tokenizer " + tiny() +
                          " --tasks passkey --lengths 600 --depths 50 --samples 2 -n 3 --no-plot -q --out " + tmp.file("o"),
                      tmp);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("sala-tiny (random weights)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| passkey |"), std::string::npos) << r.out;
}
