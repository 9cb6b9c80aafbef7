// ChatSession: a conversation in the model's chat format (ChatML), held both as messages and as the exact token ids
// the model has seen, so that each turn prefills only what is new.
//
// Invariants (checked by tests/runtime/test_chat.cpp):
//  - ids() == system ids + the ids of every kept turn, in order; a turn's ids are its user message and generation
//    prompt as the tokenizer renders them, then the reply's ids *as sampled* (never re-encoded from the reply text),
//    then the template's closing "<|im_end|>\n" (when the model ended by sampling <|im_end|>, that first id is the one
//    it sampled: a stop id is not fed back, so it goes into the cache with the next message, like the rest of the
//    closing). When the reply text re-encodes to the sampled ids, ids() equals tokenizer.encode_chat(messages(), false),
//    the Hugging Face way of feeding replies back as text.
//  - the model's cache holds ids()[0, state().pos); the rest (the last sampled token, the closing) is prefilled with
//    the next message.
//  - a turn runs only if the conversation + the new message + max_new_tokens fit in the context: otherwise the oldest
//    turns (user + assistant pairs) are dropped and the kept ones re-prefilled; when even the system message + the new
//    message + max_new_tokens do not fit, the message is skipped and the conversation is left as it was. So a reply
//    never hits the context limit.
//  - a failed turn (an error from the model, e.g. non-finite logits) leaves the conversation as before that turn and
//    the cache empty (the next turn re-prefills it); the error propagates.
// Prints nothing: notices (turns dropped, message skipped) come back in ChatReply for the caller to show.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sala/model/model.h"
#include "sala/runtime/generate.h"
#include "sala/text/tokenizer.h"

namespace sala {

// One input line of a chat: a message for the model, or a command that is not sent to it.
enum class ChatLineKind { kEmpty, kMessage, kReset, kSystem, kHelp, kQuit, kUnknown };
struct ChatLine {
  ChatLineKind kind = ChatLineKind::kEmpty;
  std::string text;  // kMessage: the message; kSystem: the new system message (may be empty); kUnknown: the /word
};
// "/reset", "/system TEXT", "/help", "/quit" (or "/exit") are commands; any other "/word" is kUnknown; "//text" is the
// message "/text"; a blank line is kEmpty. A trailing "\r" is dropped (CRLF input).
ChatLine parse_chat_line(std::string_view line);
// The command list, one line per command (for `sala chat --help` and /help).
std::string chat_commands_help();

struct ChatOptions {
  int64_t max_new_tokens = 512;  // per reply; also the room every turn keeps free for its reply
  int64_t context = 0;           // context limit in tokens (0 = max_position_embeddings)
  int64_t prefill_chunk = 0;     // 0 = each turn's new tokens in one call
  SamplingParams sampling;
  std::vector<int64_t> stop_ids;                         // empty = the config's and the tokenizer's eos ids
  std::optional<std::vector<std::string>> stop_strings;  // unset = the tokenizer's (e.g. "<|im_end|>")
};

struct ChatTurn {
  std::string user, reply;   // reply: the streamed text, without a stop string
  std::vector<int32_t> ids;  // user message + generation prompt + reply ids as sampled + closing
};

struct ChatReply {
  bool skipped = false;        // the message did not fit: nothing was sent, the conversation is unchanged
  std::string reply;           // the reply text (empty when skipped)
  GenerateResult gen;          // tokens as sampled, stop reason, timings; gen.prompt_tokens = tokens prefilled
  int64_t dropped_turns = 0;   // oldest turns dropped to make room for this one
  std::vector<std::string> notices;  // one line each, for stderr ("chat: context full ...", "chat: message not sent ...")
};

class ChatSession {
 public:
  // Throws sala::Error when the tokenizer has no chat format sala renders, its vocabulary is larger than the model's,
  // max_new_tokens < 1, or the system message + max_new_tokens leave no room in the context.
  ChatSession(const Model& m, const text::Tokenizer& tok, ChatOptions o, std::string system = "");

  // One user message: prefills what is new, generates the reply. on_text receives the reply's text as it is produced;
  // on_notice each notice as it arises (before the reply), besides ChatReply::notices.
  ChatReply send(const std::string& user, const std::function<void(std::string_view)>& on_text = {},
                 const std::function<void(const std::string&)>& on_notice = {});
  // Forgets the conversation; the system message stays.
  void reset();
  // Sets the system message (empty = none) and restarts the conversation. Throws sala::Error, changing nothing, when
  // the new system message leaves no room for a message and a reply.
  void set_system(std::string system);

  const std::string& system() const { return system_; }
  std::vector<text::ChatMessage> messages() const;  // the system message (if any), then user/assistant pairs
  const std::vector<ChatTurn>& turns() const { return turns_; }
  const std::vector<int32_t>& ids() const { return ids_; }  // every id of the conversation, in order
  std::span<const int32_t> cached_ids() const { return std::span<const int32_t>(ids_).first(size_t(st_.pos)); }
  const SequenceState& state() const { return st_; }
  int64_t context_limit() const { return st_.max_len; }
  int64_t prefilled_total() const { return prefilled_total_; }  // tokens prefilled over the session's life

 private:
  std::vector<int32_t> encode_message(const std::string& role, const std::string& content) const;
  void rebuild_ids();  // ids_ = system ids + every turn's ids; the cache no longer matches: st_ is reset

  const Model& m_;
  const text::Tokenizer& tok_;
  ChatOptions o_;
  std::vector<std::string> stop_strings_;
  std::string system_;
  std::vector<int32_t> system_ids_, gen_prompt_ids_, closing_ids_;
  std::vector<ChatTurn> turns_;
  std::vector<int32_t> ids_;
  SequenceState st_;
  int64_t prefilled_total_ = 0;
};

}  // namespace sala
