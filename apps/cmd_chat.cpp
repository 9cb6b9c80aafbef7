// sala chat: a conversation in the model's chat format, one user line per turn from stdin, the cache kept across turns.
// The conversation logic is sala::ChatSession (src/sala/runtime/chat.h); this file reads lines, runs the commands and
// prints. Output: replies on stdout (one per line; with --json one JSON object per turn and nothing else), everything
// else (the "> " prompt on a tty, command answers, notices, stats on a tty) on stderr.
#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "gen_common.h"
#include "sala/core/error.h"
#include "sala/runtime/chat.h"

namespace sala::app {

namespace {

using Json = nlohmann::ordered_json;  // keys in the order written: "turn" first

void print_json_line(const Json& j) {
  // replace: text that is not UTF-8 (it should not happen: replies are decoded to complete UTF-8) never aborts a chat
  const std::string s = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  fmt::print("{}\n", s);
  std::fflush(stdout);
}

Json turn_json(int64_t turn, const std::string& user, const ChatReply& r, const ChatSession& chat) {
  Json j;
  j["turn"] = turn;
  j["user"] = user;
  if (r.skipped) {
    j["skipped"] = true;
    j["error"] = r.notices.empty() ? "" : r.notices.back();
    return j;
  }
  const GenerateResult& g = r.gen;
  j["reply"] = r.reply;
  j["tokens"] = g.tokens;
  j["prompt_tokens"] = g.prompt_tokens;
  j["prefill_s"] = g.prefill_seconds;
  j["decode_s"] = g.decode_seconds;
  const double rate = decode_rate(g);
  j["decode_tok_s"] = rate < 0 ? Json(nullptr) : Json(rate);
  j["stop"] = stop_reason_words(g);
  j["stop_reason"] = stop_reason_name(g.stop_reason);
  j["stop_token"] = g.stop_token < 0 ? Json(nullptr) : Json(g.stop_token);
  j["context_tokens"] = chat.ids().size();  // the conversation's ids, of which the cache holds cached_tokens
  j["cached_tokens"] = chat.state().pos;
  j["dropped_turns"] = r.dropped_turns;
  return j;
}

}  // namespace

void add_chat_commands(CLI::App& app) {
  static GenArgs a;
  static bool json = false;
  a.max_new = 512;
  a.s.temperature = 0.9f;  // MiniCPM-SALA's recommended sampling temperature
  auto* cmd = app.add_subcommand("chat", "Chat in the model's chat format (ChatML for MiniCPM), one line per turn "
                                         "from stdin; the cache is kept across turns");
  cmd->add_option("model", a.model, "Model folder (with its tokenizer)")->required();
  cmd->add_option("--tokenizer", a.tokenizer, "Tokenizer folder or file (default: the model folder)");
  cmd->add_option("--system", a.system, "System message");
  cmd->add_option("-n,--max-new-tokens", a.max_new, "Tokens per reply at most; every turn keeps this much room free")
      ->capture_default_str();
  cmd->add_option("--context", a.context, "Context limit (default: max_position_embeddings); when the conversation "
                                          "outgrows it, its oldest turns are dropped");
  cmd->add_flag("--json", json, "One JSON object per turn on stdout (reply, tokens, timings, stop reason), nothing else");
  add_check_weights_flag(cmd, a.check_weights);
  add_device_option(cmd, a.device);
  add_sampling(cmd, a);
  cmd->footer("Lines starting with '/' are commands, not sent to the model:\n" + chat_commands_help() +
              "Replies go to stdout, one per line; the prompt, notices and (on a terminal) stats go to stderr.\n"
              "A model that produces non-finite logits ends the chat with an error (exit 1).");
  cmd->callback([] {
    check_lengths(a.max_new, 0, a.context);
    if (a.max_new < 1) fail_usage("-n/--max-new-tokens = {} must be >= 1 for a chat reply", a.max_new);
    a.s.validate();
    Model m = load_for_run(a.model, a.device, a.check_weights, a.context);
    auto tok = text::Tokenizer::load(a.tokenizer.empty() ? a.model : a.tokenizer);
    ChatOptions o;
    o.max_new_tokens = a.max_new;
    o.context = context_limit(m.config(), a.context);
    o.sampling = a.s;
    ChatSession chat(m, *tok, o, a.system);
    const bool tty = isatty(0);
    int64_t turn = 0;
    std::string line;
    while (true) {
      if (tty) fmt::print(stderr, "> ");
      if (!std::getline(std::cin, line)) {
        if (tty) fmt::print(stderr, "\n");
        break;
      }
      const ChatLine c = parse_chat_line(line);
      switch (c.kind) {
        case ChatLineKind::kEmpty: continue;
        case ChatLineKind::kQuit: return;
        case ChatLineKind::kHelp: fmt::print(stderr, "commands:\n{}", chat_commands_help()); continue;
        case ChatLineKind::kReset:
          chat.reset();
          fmt::print(stderr, "chat: conversation reset{}\n", chat.system().empty() ? "" : " (the system message stays)");
          continue;
        case ChatLineKind::kSystem:
          try {
            chat.set_system(c.text);
            fmt::print(stderr, "chat: {}; conversation restarted\n",
                       c.text.empty() ? "no system message" : "system message set");
          } catch (const Error& e) {
            fmt::print(stderr, "{} (system message not changed)\n", e.what());
          }
          continue;
        case ChatLineKind::kUnknown:
          fmt::print(stderr, "chat: unknown command {} (not sent; /help lists the commands, //text sends a line "
                             "starting with /)\n", c.text);
          continue;
        case ChatLineKind::kMessage: break;
      }
      ++turn;
      bool streamed = false;
      auto on_text = [&](std::string_view s) {
        streamed = true;
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
      };
      ChatReply r;
      try {
        r = chat.send(c.text, json ? std::function<void(std::string_view)>() : on_text,
                      [](const std::string& n) { fmt::print(stderr, "{}\n", n); });
      } catch (const Error& e) {
        if (streamed) fmt::print("\n");
        std::fflush(stdout);
        fail("chat turn {}: {}", turn, e.what());  // a broken model does not recover: end the chat, exit 1
      }
      if (json) {
        print_json_line(turn_json(turn, c.text, r, chat));
        continue;
      }
      fmt::print("\n");  // ends the reply's line (an empty line for a skipped message: line k answers message k)
      std::fflush(stdout);
      if (tty && !r.skipped) print_stats(r.gen, -1);
    }
  });
}

}  // namespace sala::app
