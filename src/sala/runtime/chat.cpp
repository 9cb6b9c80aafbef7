// ChatSession and chat input parsing. The chat format is rendered by the tokenizer (apply_chat_template); the pieces
// a session appends (one message, the generation prompt, the closing of a reply) are taken from that same rendering,
// so a conversation built piece by piece is the one the template renders whole.
#include "sala/runtime/chat.h"

#include <algorithm>
#include <fmt/format.h>

#include "sala/core/error.h"

namespace sala {

namespace {

std::string_view trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

std::string plural(int64_t n, const char* word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

}  // namespace

ChatLine parse_chat_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::string_view t = trim(line);
  if (t.empty()) return {ChatLineKind::kEmpty, ""};
  if (t.front() != '/') return {ChatLineKind::kMessage, std::string(line)};
  if (t.size() > 1 && t[1] == '/') return {ChatLineKind::kMessage, std::string(t.substr(1))};
  const size_t sp = t.find_first_of(" \t");
  const std::string_view word = t.substr(0, sp);
  const std::string_view rest = sp == std::string_view::npos ? std::string_view() : trim(t.substr(sp));
  if (word == "/reset") return {ChatLineKind::kReset, ""};
  if (word == "/system") return {ChatLineKind::kSystem, std::string(rest)};
  if (word == "/help") return {ChatLineKind::kHelp, ""};
  if (word == "/quit" || word == "/exit") return {ChatLineKind::kQuit, ""};
  return {ChatLineKind::kUnknown, std::string(word)};
}

std::string chat_commands_help() {
  return "  /reset         forget the conversation (the system message stays)\n"
         "  /system TEXT   set the system message and restart the conversation (/system alone: no system message)\n"
         "  /help          list these commands\n"
         "  /quit          end the chat (so does the end of input; /exit works too)\n"
         "  //TEXT         send a message that starts with '/'\n";
}

ChatSession::ChatSession(const Model& m, const text::Tokenizer& tok, ChatOptions o, std::string system)
    : m_(m), tok_(tok), o_(std::move(o)), st_(m.new_state(o_.context)) {
  if (tok_.vocab_size() > m_.config().vocab_size)
    fail("chat: the tokenizer has {} ids but the model's vocab_size is {}", tok_.vocab_size(), m_.config().vocab_size);
  if (o_.max_new_tokens < 1) fail("chat: max new tokens per reply (-n) = {} must be at least 1", o_.max_new_tokens);
  if (o_.stop_ids.empty()) {
    o_.stop_ids = m_.config().eos_token_ids;
    for (int32_t e : tok_.eos_ids())
      if (std::find(o_.stop_ids.begin(), o_.stop_ids.end(), int64_t(e)) == o_.stop_ids.end()) o_.stop_ids.push_back(e);
  }
  stop_strings_ = o_.stop_strings ? *o_.stop_strings : tok_.stop_strings();
  // The generation prompt, and the closing of an assistant message: what the template adds after the reply text.
  const std::string gen_prompt = tok_.apply_chat_template({}, true);  // throws when the format is not rendered
  const std::string empty_reply = tok_.apply_chat_template({{"assistant", ""}}, false);
  if (empty_reply.compare(0, gen_prompt.size(), gen_prompt) != 0)
    fail("chat: the chat format's generation prompt \"{}\" does not open its assistant messages \"{}\"", gen_prompt,
         empty_reply);
  gen_prompt_ids_ = tok_.encode(gen_prompt, false);
  closing_ids_ = tok_.encode(empty_reply.substr(gen_prompt.size()), false);
  set_system(std::move(system));
}

std::vector<int32_t> ChatSession::encode_message(const std::string& role, const std::string& content) const {
  return tok_.encode(tok_.apply_chat_template({{role, content}}, false), false);
}

void ChatSession::set_system(std::string system) {
  std::vector<int32_t> ids = system.empty() ? std::vector<int32_t>{} : encode_message("system", system);
  const int64_t least = int64_t(encode_message("user", "").size() + gen_prompt_ids_.size());
  const int64_t need = int64_t(ids.size()) + least + o_.max_new_tokens;
  if (need > context_limit())
    fail("chat: {}an empty message ({} tokens) + room for a reply (-n {}) need {} tokens, over the context limit of {} "
         "(lower -n, raise --context{})",
         ids.empty() ? "" : fmt::format("the system message ({} tokens) + ", ids.size()), least, o_.max_new_tokens, need,
         context_limit(), ids.empty() ? "" : " or shorten the system message");
  system_ = std::move(system);
  system_ids_ = std::move(ids);
  turns_.clear();
  rebuild_ids();
}

void ChatSession::reset() {
  turns_.clear();
  rebuild_ids();
}

void ChatSession::rebuild_ids() {
  ids_ = system_ids_;
  for (const ChatTurn& t : turns_) ids_.insert(ids_.end(), t.ids.begin(), t.ids.end());
  st_.reset();
}

std::vector<text::ChatMessage> ChatSession::messages() const {
  std::vector<text::ChatMessage> msgs;
  if (!system_.empty()) msgs.push_back({"system", system_});
  for (const ChatTurn& t : turns_) {
    msgs.push_back({"user", t.user});
    msgs.push_back({"assistant", t.reply});
  }
  return msgs;
}

ChatReply ChatSession::send(const std::string& user, const std::function<void(std::string_view)>& on_text,
                            const std::function<void(const std::string&)>& on_notice) {
  ChatReply out;
  auto notice = [&](std::string s) {
    if (on_notice) on_notice(s);
    out.notices.push_back(std::move(s));
  };
  std::vector<int32_t> seg = encode_message("user", user);
  seg.insert(seg.end(), gen_prompt_ids_.begin(), gen_prompt_ids_.end());
  const int64_t limit = context_limit(), room = o_.max_new_tokens, n_seg = int64_t(seg.size());

  // Room: the whole conversation + this message + a full reply must fit, else drop the oldest turns.
  if (int64_t(ids_.size()) + n_seg + room > limit) {
    const int64_t base = int64_t(system_ids_.size()) + n_seg + room;
    if (base > limit) {
      out.skipped = true;
      notice(fmt::format(
          "chat: message not sent: {}this message ({} tokens) + room for a reply (-n {}) need {} tokens, over the "
          "context limit of {} (shorten the message, lower -n or raise --context); the conversation is unchanged",
          system_ids_.empty() ? "" : fmt::format("the system message ({} tokens) + ", system_ids_.size()), n_seg,
          room, base, limit));
      return out;
    }
    const int64_t before = int64_t(ids_.size());
    int64_t total = before + n_seg + room;
    size_t drop = 0;
    while (total > limit) total -= int64_t(turns_[drop++].ids.size());
    turns_.erase(turns_.begin(), turns_.begin() + std::ptrdiff_t(drop));
    rebuild_ids();
    out.dropped_turns = int64_t(drop);
    notice(fmt::format(
        "chat: context full (conversation {} + this message {} + room for a reply {} > {} tokens): dropped the {} "
        "oldest {} ({} kept, {} tokens to re-read)",
        before, n_seg, room, limit, drop, drop == 1 ? "turn" : "turns", plural(int64_t(turns_.size()), "turn"),
        ids_.size()));
  }

  const size_t cached = size_t(st_.pos);
  std::vector<int32_t> prompt(ids_.begin() + std::ptrdiff_t(cached), ids_.end());
  prompt.insert(prompt.end(), seg.begin(), seg.end());

  text::StreamDecoder dec(tok_);
  text::StopStrings stops(stop_strings_);
  bool stopped = false;
  auto emit = [&](const std::string& s) {
    out.reply += s;
    if (on_text && !s.empty()) on_text(s);
  };
  GenerateOptions g;
  g.max_new_tokens = o_.max_new_tokens;
  g.prefill_chunk = o_.prefill_chunk;
  g.sampling = o_.sampling;
  g.stop_ids = o_.stop_ids;
  g.history.assign(ids_.begin(), ids_.begin() + std::ptrdiff_t(cached));  // HF's input_ids: the whole conversation
  g.on_token = [&](int32_t id) -> TokenVerdict {
    auto r = stops.push(dec.push(id));
    emit(r.text);
    if (!r.stopped) return true;
    stopped = true;
    return TokenVerdict::stop_at(r.stop);
  };
  try {
    out.gen = generate(m_, st_, prompt, g);
  } catch (...) {
    st_.reset();  // the cache holds part of this turn: start it over with the next message
    throw;
  }
  if (!stopped) {
    auto r = stops.push(dec.finish());
    emit(r.text);
    if (!r.stopped) emit(stops.flush());
  }
  prefilled_total_ += out.gen.prompt_tokens;

  ChatTurn t;
  t.user = user;
  t.reply = out.reply;
  t.ids = std::move(seg);
  t.ids.insert(t.ids.end(), out.gen.tokens.begin(), out.gen.tokens.end());
  // The closing the template puts after a reply ("<|im_end|>\n"). When the model ended by sampling <|im_end|>, that
  // sampled token is the closing's first id (a stop id is not in gen.tokens), so the ids are the same either way; any
  // other stop (length, stop string, another eos id such as </s>) gets the closing as the rendered text would have it.
  t.ids.insert(t.ids.end(), closing_ids_.begin(), closing_ids_.end());
  ids_.insert(ids_.end(), t.ids.begin(), t.ids.end());
  turns_.push_back(std::move(t));
  return out;
}

}  // namespace sala
