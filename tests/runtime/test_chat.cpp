// ChatSession on the bundled tiny model (models/sala-tiny: ChatML tokenizer, random weights): input lines parsed into
// commands; the ids held are the rendered messages + the replies as sampled + the closings, and each turn prefills only
// what is new; the cache holds exactly those ids; the Hugging Face rendering agrees when a reply round-trips; reset,
// system changes, dropping the oldest turns when the context is full, skipping a message that cannot fit; a model with
// non-finite logits fails the turn and leaves the conversation as it was.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <limits>
#include <numeric>

#include "sala/model/model.h"
#include "sala/runtime/chat.h"
#include "sala/text/tokenizer.h"
#include "test_util.h"

namespace sala {
namespace {

const std::string kDir = std::string(SALA_SOURCE_DIR) + "/models/sala-tiny";

const Model& bundled_model() {
  static const Model m = Model::load(kDir);
  return m;
}
const text::Tokenizer& tok() {
  static const auto t = text::Tokenizer::load(kDir);
  return *t;
}

// The ChatML pieces, written out here (not taken from the session or the template code).
std::vector<int32_t> enc(const std::string& s) { return tok().encode(s, false); }
std::vector<int32_t> sys_ids(const std::string& s) { return enc("<|im_start|>system\n" + s + "<|im_end|>\n"); }
std::vector<int32_t> user_seg(const std::string& s) {
  return enc("<|im_start|>user\n" + s + "<|im_end|>\n<|im_start|>assistant\n");
}
const int32_t kImEnd = 4, kEosS = 2;  // <|im_end|>, </s> in the bundled tokenizer
// What the session appends after a reply's sampled ids.
std::vector<int32_t> closing_of(const GenerateResult& g) {
  if (g.stop_reason == StopReason::kEos && g.stop_token == kImEnd) {
    std::vector<int32_t> c = {kImEnd};
    for (int32_t x : enc("\n")) c.push_back(x);
    return c;
  }
  return enc("<|im_end|>\n");
}
void append(std::vector<int32_t>& a, const std::vector<int32_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

// A model whose greedy choice is always token `t`: every layer adds nothing (o_proj and down are zero), the embedding's
// column 0 is 1 for every token, so the final norm's output has a positive component 0, and lm_head reads only that
// component, only into row t (every other logit is exactly 0).
Model forced_model(int32_t t) {
  const ModelConfig& c = bundled_model().config();
  Weights w = bundled_model().weights();
  for (auto& L : w.layers) {
    std::fill(L.o.begin(), L.o.end(), 0.0f);
    std::fill(L.down.begin(), L.down.end(), 0.0f);
  }
  for (int64_t v = 0; v < c.vocab_size; ++v) w.embed[size_t(v * c.hidden_size)] = 1.0f;
  std::fill(w.final_norm.begin(), w.final_norm.end(), 1.0f);
  std::fill(w.lm_head.begin(), w.lm_head.end(), 0.0f);
  w.lm_head[size_t(int64_t(t) * c.hidden_size)] = 1.0f;
  return Model(c, std::move(w));
}

ChatOptions greedy(int64_t n, int64_t context = 0) {
  ChatOptions o;
  o.max_new_tokens = n;
  o.context = context;
  return o;
}

TEST(ChatLine, CommandsAreParsedAndNotMessages) {
  EXPECT_EQ(parse_chat_line("hello there").kind, ChatLineKind::kMessage);
  EXPECT_EQ(parse_chat_line("hello there").text, "hello there");
  EXPECT_EQ(parse_chat_line("hello\r").text, "hello");  // CRLF input
  EXPECT_EQ(parse_chat_line("").kind, ChatLineKind::kEmpty);
  EXPECT_EQ(parse_chat_line("  \t").kind, ChatLineKind::kEmpty);
  EXPECT_EQ(parse_chat_line("/reset").kind, ChatLineKind::kReset);
  EXPECT_EQ(parse_chat_line(" /reset \r").kind, ChatLineKind::kReset);
  EXPECT_EQ(parse_chat_line("/help").kind, ChatLineKind::kHelp);
  EXPECT_EQ(parse_chat_line("/quit").kind, ChatLineKind::kQuit);
  EXPECT_EQ(parse_chat_line("/exit").kind, ChatLineKind::kQuit);
  ChatLine s = parse_chat_line("/system  Be brief. ");
  EXPECT_EQ(s.kind, ChatLineKind::kSystem);
  EXPECT_EQ(s.text, "Be brief.");
  EXPECT_EQ(parse_chat_line("/system").kind, ChatLineKind::kSystem);
  EXPECT_EQ(parse_chat_line("/system").text, "");
  ChatLine u = parse_chat_line("/frobnicate now");
  EXPECT_EQ(u.kind, ChatLineKind::kUnknown);
  EXPECT_EQ(u.text, "/frobnicate");
  ChatLine esc = parse_chat_line("//etc/hosts is a file");
  EXPECT_EQ(esc.kind, ChatLineKind::kMessage);
  EXPECT_EQ(esc.text, "/etc/hosts is a file");
  const std::string help = chat_commands_help();
  for (const char* c : {"/reset", "/system TEXT", "/help", "/quit", "//TEXT"})
    EXPECT_NE(help.find(c), std::string::npos) << c;
}

TEST(ChatSession, KeepsTheSampledIdsAndPrefillsOnlyWhatIsNew) {
  const Model& m = bundled_model();
  ChatSession s(m, tok(), greedy(6), "Be brief.");
  std::vector<int32_t> want = sys_ids("Be brief.");
  EXPECT_EQ(s.ids(), want);
  EXPECT_EQ(s.state().pos, 0);
  int64_t prefilled = 0;
  const std::vector<std::string> msgs = {"hello there", "how are you?", "tell me more"};
  for (size_t k = 0; k < msgs.size(); ++k) {
    const std::vector<int32_t> seg = user_seg(msgs[k]);
    // not yet in the cache: the system message (turn 1), else the previous turn's last sampled token and closing
    const int64_t pending = int64_t(want.size()) - s.state().pos;
    if (k == 0) {
      EXPECT_EQ(pending, int64_t(want.size()));
    }
    const size_t before = want.size();
    ChatReply r = s.send(msgs[k]);
    ASSERT_FALSE(r.skipped);
    EXPECT_EQ(r.dropped_turns, 0);
    EXPECT_EQ(r.gen.prompt_tokens, pending + int64_t(seg.size())) << "turn " << k + 1;
    prefilled += r.gen.prompt_tokens;
    append(want, seg);
    append(want, r.gen.tokens);
    append(want, closing_of(r.gen));
    EXPECT_EQ(s.ids(), want) << "turn " << k + 1;
    EXPECT_EQ(s.state().pos, int64_t(before + seg.size()) + r.gen.decode_steps);
    if (r.gen.stop_reason == StopReason::kLength) {
      // the last sampled token + "<|im_end|>\n" wait for the next turn
      EXPECT_EQ(int64_t(s.ids().size()) - s.state().pos, 1 + int64_t(enc("<|im_end|>\n").size()));
    }
    EXPECT_EQ(s.turns().size(), k + 1);
    EXPECT_EQ(s.turns().back().reply, r.reply);
  }
  EXPECT_EQ(s.prefilled_total(), prefilled);
  EXPECT_LT(prefilled, int64_t(s.ids().size()));  // re-prefilling each turn would have cost far more
  EXPECT_EQ(s.messages().size(), 1 + 2 * msgs.size());

  // The cache is exactly cached_ids(): one more token on it gives the logits of a fresh prefill of those ids.
  SequenceState a = m.clone_state(s.state());
  const std::vector<float> la = m.decode(7, a);
  SequenceState b = m.new_state();
  const auto ids = s.cached_ids();
  m.prefill(std::vector<int32_t>(ids.begin(), ids.end()), b);
  const std::vector<float> lb = m.decode(7, b);
  EXPECT_LT(test::rel_max_err(la, lb), 1e-4);
}

// A token whose repetition decodes to text that re-encodes to the same ids inside the ChatML rendering.
int32_t round_tripping_token(int64_t n) {
  const std::vector<int32_t> gen = enc("<|im_start|>assistant\n"), close = enc("<|im_end|>\n");
  for (int32_t t = 5; t < tok().vocab_size(); ++t) {
    if (tok().is_special(t)) continue;
    const std::vector<int32_t> reply(size_t(n), t);
    const std::string text = tok().decode(reply);
    if (text.empty() || text.find("<|im_end|>") != std::string::npos) continue;
    std::vector<int32_t> want = gen;
    append(want, reply);
    append(want, close);
    if (enc("<|im_start|>assistant\n" + text + "<|im_end|>\n") == want) return t;
  }
  return -1;
}

TEST(ChatSession, AgreesWithTheHuggingFaceRenderingWhenRepliesRoundTrip) {
  const int32_t t = round_tripping_token(3);
  ASSERT_GE(t, 0) << "no round-tripping token in the bundled vocabulary";
  {
    Model m = forced_model(t);
    ChatSession s(m, tok(), greedy(3), "Be brief.");
    for (const char* msg : {"hello there", "and again", "one more"}) {
      ChatReply r = s.send(msg);
      EXPECT_EQ(r.gen.tokens, std::vector<int32_t>(3, t));
      EXPECT_EQ(r.gen.stop_reason, StopReason::kLength);
    }
    // HF: replies fed back as text, the whole conversation rendered and tokenized
    EXPECT_EQ(s.ids(), tok().encode_chat(s.messages(), false));
  }
  {
    // the model ends each reply with <|im_end|> itself: kept as sampled, then "\n"
    Model m = forced_model(kImEnd);
    ChatSession s(m, tok(), greedy(3));
    for (const char* msg : {"hello there", "and again"}) {
      ChatReply r = s.send(msg);
      EXPECT_TRUE(r.gen.tokens.empty());
      EXPECT_EQ(r.gen.stop_token, kImEnd);
      EXPECT_EQ(r.reply, "");
    }
    EXPECT_EQ(s.ids(), tok().encode_chat(s.messages(), false));
  }
  {
    // another eos id (</s>) is not part of the rendering: the template's closing replaces it
    Model m = forced_model(kEosS);
    ChatSession s(m, tok(), greedy(3));
    ChatReply r = s.send("hello there");
    EXPECT_EQ(r.gen.stop_token, kEosS);
    EXPECT_EQ(s.ids(), tok().encode_chat(s.messages(), false));
  }
}

TEST(ChatSession, StopStringEndsTheReplyAndTheTurnIsClosed) {
  const int32_t t = round_tripping_token(1);
  ASSERT_GE(t, 0);
  Model m = forced_model(t);
  ChatOptions o = greedy(5);
  o.stop_strings = std::vector<std::string>{tok().decode(std::vector<int32_t>{t})};
  ChatSession s(m, tok(), o);
  ChatReply r = s.send("hello there");
  EXPECT_EQ(r.gen.stop_reason, StopReason::kStopString);
  EXPECT_EQ(stop_reason_words(r.gen), fmt::format("stop string \"{}\"", (*o.stop_strings)[0]));
  EXPECT_EQ(r.reply, "");  // the text before the stop string
  std::vector<int32_t> want = user_seg("hello there");
  want.push_back(t);  // as sampled
  append(want, enc("<|im_end|>\n"));
  EXPECT_EQ(s.ids(), want);
  EXPECT_EQ(s.state().pos, int64_t(user_seg("hello there").size()));  // t was never fed back
}

TEST(ChatSession, ResetKeepsTheSystemMessage) {
  ChatSession s(bundled_model(), tok(), greedy(4), "Be brief.");
  s.send("hello there");
  s.send("and again");
  s.reset();
  EXPECT_TRUE(s.turns().empty());
  ASSERT_EQ(s.messages().size(), 1u);
  EXPECT_EQ(s.messages()[0].role, "system");
  EXPECT_EQ(s.messages()[0].content, "Be brief.");
  EXPECT_EQ(s.ids(), sys_ids("Be brief."));
  EXPECT_EQ(s.state().pos, 0);
  ChatReply r = s.send("fresh start");
  EXPECT_EQ(r.gen.prompt_tokens, int64_t(sys_ids("Be brief.").size() + user_seg("fresh start").size()));
}

TEST(ChatSession, SystemChangeRestartsTheConversation) {
  ChatSession s(bundled_model(), tok(), greedy(4), "Be brief.");
  s.send("hello there");
  s.set_system("You are terse.");
  EXPECT_TRUE(s.turns().empty());
  EXPECT_EQ(s.system(), "You are terse.");
  EXPECT_EQ(s.ids(), sys_ids("You are terse."));
  EXPECT_EQ(s.state().pos, 0);
  s.set_system("");
  EXPECT_TRUE(s.messages().empty());
  EXPECT_TRUE(s.ids().empty());
  ChatReply r = s.send("hi");
  EXPECT_EQ(r.gen.prompt_tokens, int64_t(user_seg("hi").size()));
  // a system message that leaves no room is refused and changes nothing
  ChatSession small(bundled_model(), tok(), greedy(8, 64), "Be brief.");
  small.send("hi");
  const auto ids = small.ids();
  test::expect_error([&] { small.set_system(std::string(300, 'x')); }, {"context limit of 64", "-n 8"});
  EXPECT_EQ(small.ids(), ids);
  EXPECT_EQ(small.system(), "Be brief.");
  EXPECT_EQ(small.turns().size(), 1u);
}

TEST(ChatSession, FullContextDropsTheOldestTurnsAndKeepsTheSystemMessage) {
  const int64_t ctx = 160, n = 8;  // room for about three turns
  ChatSession s(bundled_model(), tok(), greedy(n, ctx), "Be brief.");
  const std::vector<int32_t> sys = sys_ids("Be brief.");
  int64_t drops = 0, drops_keeping_turns = 0;
  for (int i = 0; i < 10; ++i) {
    const std::string msg = fmt::format("message number {}", i);
    const std::vector<int32_t> seg = user_seg(msg);
    // the expected drop, from the turns' sizes
    int64_t total = int64_t(s.ids().size() + seg.size()) + n, expect_drop = 0;
    std::vector<std::string> kept_users;
    for (const ChatTurn& t : s.turns()) kept_users.push_back(t.user);
    while (total > ctx) total -= int64_t(s.turns()[size_t(expect_drop++)].ids.size());
    kept_users.erase(kept_users.begin(), kept_users.begin() + expect_drop);
    ChatReply r = s.send(msg);
    ASSERT_FALSE(r.skipped) << i;
    EXPECT_EQ(r.dropped_turns, expect_drop) << i;
    if (expect_drop) {
      ++drops;
      ASSERT_EQ(r.notices.size(), 1u);
      EXPECT_NE(r.notices[0].find("chat: context full"), std::string::npos) << r.notices[0];
      EXPECT_NE(r.notices[0].find(fmt::format("dropped the {} oldest turn", expect_drop)), std::string::npos)
          << r.notices[0];
      // everything kept is re-prefilled: the system message, the kept turns, the new message
      int64_t kept = int64_t(sys.size() + seg.size());
      for (size_t j = 0; j + 1 < s.turns().size(); ++j) kept += int64_t(s.turns()[j].ids.size());
      EXPECT_EQ(r.gen.prompt_tokens, kept);
      if (s.turns().size() > 1) ++drops_keeping_turns;
    } else {
      EXPECT_TRUE(r.notices.empty());
    }
    // system first, then exactly the kept users in order, then this one
    std::vector<text::ChatMessage> msgs = s.messages();
    ASSERT_EQ(msgs[0].role, "system");
    kept_users.push_back(msg);
    ASSERT_EQ(msgs.size(), 1 + 2 * kept_users.size());
    for (size_t j = 0; j < kept_users.size(); ++j) EXPECT_EQ(msgs[1 + 2 * j].content, kept_users[j]);
    std::vector<int32_t> want = sys;
    for (const ChatTurn& t : s.turns()) append(want, t.ids);
    EXPECT_EQ(s.ids(), want);
    EXPECT_LE(s.state().pos, ctx);
  }
  EXPECT_GE(drops, 2);  // the test really overflowed, more than once
  EXPECT_GE(drops_keeping_turns, 1);  // and re-read kept turns, not only the system message
}

TEST(ChatSession, AMessageThatCannotFitIsSkippedAndTheSessionGoesOn) {
  ChatSession s(bundled_model(), tok(), greedy(8, 96), "Be brief.");
  s.send("hello there");
  const auto ids = s.ids();
  const int64_t pos = s.state().pos;
  std::string big;
  for (int i = 0; i < 150; ++i) big += "word ";
  ChatReply r = s.send(big);
  EXPECT_TRUE(r.skipped);
  ASSERT_EQ(r.notices.size(), 1u);
  EXPECT_NE(r.notices[0].find("message not sent"), std::string::npos) << r.notices[0];
  EXPECT_NE(r.notices[0].find("context limit of 96"), std::string::npos) << r.notices[0];
  EXPECT_EQ(s.ids(), ids);  // nothing dropped, nothing sent
  EXPECT_EQ(s.state().pos, pos);
  EXPECT_EQ(s.turns().size(), 1u);
  ChatReply r2 = s.send("short again");
  EXPECT_FALSE(r2.skipped);
  EXPECT_EQ(s.turns().size(), 2u);
}

TEST(ChatSession, BadSettingsAreRefusedAtTheStart) {
  test::expect_error([] { ChatSession s(bundled_model(), tok(), greedy(0)); }, {"-n", "at least 1"});
  test::expect_error([] { ChatSession s(bundled_model(), tok(), greedy(60, 64), "Be brief."); },
                     {"room for a reply (-n 60)", "context limit of 64"});
}

TEST(ChatSession, NonFiniteLogitsFailTheTurnAndLeaveTheConversationAsItWas) {
  const ModelConfig& c = bundled_model().config();
  Weights w = bundled_model().weights();
  w.final_norm[0] = std::numeric_limits<float>::quiet_NaN();
  Model m(c, std::move(w));
  ChatSession s(m, tok(), greedy(4), "Be brief.");
  const size_t n = sys_ids("Be brief.").size() + user_seg("hello there").size();
  test::expect_error([&] { s.send("hello there"); },
                     {"non-finite logits (NaN)", fmt::format("at position {} (the prompt's last token)", n - 1)});
  EXPECT_TRUE(s.turns().empty());
  EXPECT_EQ(s.ids(), sys_ids("Be brief."));
  EXPECT_EQ(s.state().pos, 0);
}

}  // namespace
}  // namespace sala
