// Chat formatting against the reference: each fixture's own Jinja chat_template rendered by @huggingface/jinja and
// encoded by HF tokenizers (build/oracle/chat_<fixture>.json, written by scripts/oracle.sh). Skips when absent.
#include <gtest/gtest.h>

#include "oracle_util.h"
#include "sala/text/tokenizer.h"

namespace sala::text {
namespace {

void check_chat(const std::string& name) {
  const auto path = testing::oracle_dir() / ("chat_" + name + ".json");
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found: run scripts/oracle.sh first";
  const auto exp = nlohmann::json::parse(testing::read_bytes(path));
  const auto tok = Tokenizer::load(exp.at("dir").get<std::string>());
  ASSERT_EQ(tok->config().chat_format, ChatFormat::kChatML);
  int n = 0;
  for (const auto& c : exp.at("cases")) {
    std::vector<ChatMessage> msgs;
    for (const auto& m : c.at("messages")) msgs.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    const bool gen = c.at("add_generation_prompt").get<bool>();
    EXPECT_EQ(tok->apply_chat_template(msgs, gen), c.at("text").get<std::string>());
    const auto want = c.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(testing::first_diff(*tok, want, tok->encode_chat(msgs, gen)), "") << name << " case " << n;
    ++n;
  }
  EXPECT_GE(n, 4);
  const auto stops = tok->stop_strings();
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops[0], "<|im_end|>");
  const auto im_end = tok->token_to_id("<|im_end|>");
  ASSERT_TRUE(im_end.has_value());
  EXPECT_NE(std::find(tok->eos_ids().begin(), tok->eos_ids().end(), *im_end), tok->eos_ids().end());
}

TEST(TokenizerChat, MiniCPM) { check_chat("minicpm"); }
TEST(TokenizerChat, Qwen3) { check_chat("qwen3"); }

TEST(TokenizerChat, MiniCPMSpecialIds) {
  const std::filesystem::path dir = std::filesystem::path(SALA_SOURCE_DIR) / ".." / "shared" / "fixtures" / "minicpm-tokenizer";
  if (!std::filesystem::exists(dir / "tokenizer.json")) GTEST_SKIP() << dir << " absent";
  const auto tok = Tokenizer::load(dir.string());
  // sala-model.md §9: vocab 73448, <unk> 0, <s> 1, </s> 2, <|im_end|> 73440 ... <|fim_suffix|> 73447.
  EXPECT_EQ(tok->vocab_size(), 73448);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_EQ(tok->token_to_id("</s>"), 2);
  EXPECT_EQ(tok->token_to_id("<|im_end|>"), 73440);
  EXPECT_EQ(tok->token_to_id("<|im_start|>"), 73441);
  EXPECT_EQ(tok->token_to_id("<|fim_suffix|>"), 73447);
  EXPECT_EQ(tok->eos_ids(), (std::vector<int32_t>{73440}));  // tokenizer_config eos; config.json adds 2 when present
  EXPECT_TRUE(tok->is_special(73441));
  // Public evidence (ecosystem.md §5): the official tokenizer gives 59320 23523 65 2925 67 for this text.
  EXPECT_EQ(tok->encode("你好，世界！", false), (std::vector<int32_t>{59320, 23523, 65, 2925, 67}));
}

}  // namespace
}  // namespace sala::text
