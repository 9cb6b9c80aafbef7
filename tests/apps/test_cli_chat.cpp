// `sala chat` end to end on the bundled tiny model, input piped in: one JSON object per turn with --json and nothing
// else on stdout; commands are not sent to the model; /quit stops; a full context drops turns with a notice on stderr;
// a message that cannot fit is skipped; a model with non-finite logits ends the chat with exit 1.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sala/model/model.h"
#include "sala/model/weights.h"
#include "sala/text/tokenizer.h"
#include "test_util.h"

namespace {

using nlohmann::json;

const std::string kModel = std::string(SALA_SOURCE_DIR) + "/models/sala-tiny";

bool have_cli() { return std::filesystem::exists(std::string(SALA_BINARY_DIR) + "/sala"); }

struct ChatRun {
  int code = -1;
  std::string out, err;  // stdout, stderr apart
  std::vector<json> turns;  // stdout parsed line by line (with --json)
  bool all_json = true;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ChatRun chat(const std::string& args, const std::string& input, const std::string& model = kModel) {
  sala::test::TempDir dir("cli_chat");
  std::ofstream(dir.file("in.txt")) << input;
  ChatRun r;
  sala::test::ShellRun s = sala::test::shell("( " + std::string(SALA_BINARY_DIR) + "/sala chat " + model + " " + args +
                                             " < " + dir.file("in.txt") + " 2> " + dir.file("err.txt") + " )");
  r.code = s.code;
  r.out = s.out;
  r.err = slurp(dir.file("err.txt"));
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) r.all_json = false;
    else r.turns.push_back(j);
  }
  return r;
}

const sala::text::Tokenizer& tok() {
  static const auto t = sala::text::Tokenizer::load(kModel);
  return *t;
}
int64_t n_ids(const std::string& s) { return int64_t(tok().encode(s, false).size()); }
int64_t sys_len(const std::string& s) { return n_ids("<|im_start|>system\n" + s + "<|im_end|>\n"); }
int64_t seg_len(const std::string& s) { return n_ids("<|im_start|>user\n" + s + "<|im_end|>\n<|im_start|>assistant\n"); }

TEST(CliChat, JsonTurnsCommandsNotSentAndQuitStops) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  ChatRun r = chat("--json -n 4 --seed 1 --system \"Be brief.\"",
                   "hello there\n/reset\n/help\n/frob now\nhow are you\n/quit\nnever sent\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.all_json) << r.out;
  ASSERT_EQ(r.turns.size(), 2u) << r.out;
  EXPECT_EQ(r.turns[0]["turn"], 1);
  EXPECT_EQ(r.turns[0]["user"], "hello there");
  EXPECT_EQ(r.turns[1]["turn"], 2);
  EXPECT_EQ(r.turns[1]["user"], "how are you");
  // turn 1 prefills the system message + the message; after /reset, turn 2 does the same (turn 1 is forgotten)
  EXPECT_EQ(r.turns[0]["prompt_tokens"], sys_len("Be brief.") + seg_len("hello there"));
  EXPECT_EQ(r.turns[1]["prompt_tokens"], sys_len("Be brief.") + seg_len("how are you"));
  for (const json& t : r.turns) {
    EXPECT_LE(t["tokens"].size(), 4u);
    EXPECT_TRUE(t["reply"].is_string());
    EXPECT_TRUE(t["stop"].is_string());
    EXPECT_FALSE(t["stop"].get<std::string>().empty());
    EXPECT_TRUE(t["prefill_s"].is_number());
    EXPECT_TRUE(t["decode_tok_s"].is_number() || t["decode_tok_s"].is_null());
    if (t["stop_reason"] == "length") {
      EXPECT_EQ(t["stop"], "reached -n 4 tokens");
    }
  }
  EXPECT_NE(r.err.find("chat: conversation reset"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/system TEXT"), std::string::npos) << r.err;  // /help
  EXPECT_NE(r.err.find("chat: unknown command /frob (not sent"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("never sent"), std::string::npos);
  EXPECT_EQ(r.err.find("[prefill"), std::string::npos) << r.err;  // no stats off a terminal, except in the JSON
}

TEST(CliChat, TheCacheIsKeptAcrossTurns) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  const std::vector<std::string> msgs = {"hello there", "and again", "one more time"};
  ChatRun r = chat("--json -n 4 --seed 1 --temperature 0", msgs[0] + "\n" + msgs[1] + "\n" + msgs[2] + "\n");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.turns.size(), 3u) << r.out;
  const int64_t closing = n_ids("<|im_end|>\n");
  EXPECT_EQ(r.turns[0]["prompt_tokens"], seg_len(msgs[0]));
  for (size_t k = 1; k < 3; ++k) {
    const json& prev = r.turns[k - 1];
    // not in the cache after a turn: its last sampled token (unless a stop id ended it) and "<|im_end|>\n"
    const int64_t pending = (prev["stop_reason"] == "eos" ? 0 : 1) + closing;
    EXPECT_EQ(r.turns[k]["prompt_tokens"], pending + seg_len(msgs[k])) << "turn " << k + 1;
    EXPECT_EQ(r.turns[k]["context_tokens"].get<int64_t>() - prev["context_tokens"].get<int64_t>(),
              seg_len(msgs[k]) + int64_t(r.turns[k]["tokens"].size()) + closing);
  }
}

TEST(CliChat, FullContextDropsOldTurnsWithANotice) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  std::string in;
  for (int i = 0; i < 6; ++i) in += "message number " + std::to_string(i) + "\n";
  ChatRun r = chat("--json -n 8 --seed 1 --context 96 --system \"Be brief.\"", in);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.turns.size(), 6u) << r.out;  // every message answered: the session never ends on a full context
  int64_t dropped = 0;
  for (const json& t : r.turns) {
    EXPECT_FALSE(t.contains("skipped"));
    EXPECT_NE(t["stop_reason"], "context");  // every turn kept room for its reply
    EXPECT_LE(t["cached_tokens"].get<int64_t>(), 96);
    dropped += t["dropped_turns"].get<int64_t>();
  }
  EXPECT_GE(dropped, 2);
  EXPECT_NE(r.err.find("chat: context full"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dropped the 1 oldest turn"), std::string::npos) << r.err;
}

TEST(CliChat, AMessageThatCannotFitIsSkipped) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  std::string big;
  for (int i = 0; i < 150; ++i) big += "word ";
  ChatRun r = chat("--json -n 8 --seed 1 --context 96", "hi\n" + big + "\nstill here\n");
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.turns.size(), 3u) << r.out;
  EXPECT_EQ(r.turns[1]["skipped"], true);
  EXPECT_NE(r.turns[1]["error"].get<std::string>().find("message not sent"), std::string::npos);
  EXPECT_FALSE(r.turns[1].contains("reply"));
  EXPECT_EQ(r.turns[2]["user"], "still here");
  EXPECT_TRUE(r.turns[2]["reply"].is_string());
  EXPECT_NE(r.err.find("chat: message not sent"), std::string::npos) << r.err;
}

TEST(CliChat, PlainPipeOutputHasOnlyReplies) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  ChatRun r = chat("-n 4 --seed 1", "hello\n/help\n/system Be terse.\nagain\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("commands:"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("> "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("[prefill"), std::string::npos) << r.out;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_NE(r.err.find("commands:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("system message set; conversation restarted"), std::string::npos) << r.err;
}

TEST(CliChat, HelpListsTheCommands) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  sala::test::ShellRun r = sala::test::shell(std::string(SALA_BINARY_DIR) + "/sala chat --help");
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* s : {"/reset", "/system TEXT", "/help", "/quit", "--json", "--context"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST(CliChat, BadSettingsFailAtTheStart) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  ChatRun r = chat("-n 0", "hi\n");
  EXPECT_EQ(r.code, 2);  // an option value out of its range
  EXPECT_NE(r.err.find("sala: error: -n/--max-new-tokens = 0 must be >= 1"), std::string::npos) << r.err;
  r = chat("-n 8 --context 16", "hi\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("over the context limit of 16"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(CliChat, NonFiniteLogitsEndTheChatWithExit1) {
  if (!have_cli()) GTEST_SKIP() << "sala binary not built";
  sala::test::TempDir dir("cli_chat_nan");
  sala::Model m = sala::Model::load(kModel);
  sala::Weights w = m.weights();
  w.final_norm[0] = std::numeric_limits<float>::quiet_NaN();
  sala::save_model(m.config(), w, dir.str(), sala::DType::F32);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    std::filesystem::copy_file(kModel + "/" + f, dir.file(f));
  ChatRun r = chat("--json -n 4", "hello there\nagain\n", dir.str());
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("sala: error: chat turn 1: non-finite logits (NaN) at position"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(the prompt's last token)"), std::string::npos) << r.err;
}

}  // namespace
