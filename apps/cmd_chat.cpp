// sala chat: a conversation in the model's chat format, one user line per turn from stdin, the cache kept across turns.
#include <unistd.h>

#include <algorithm>
#include <fmt/format.h>
#include <iostream>

#include "commands.h"
#include "gen_common.h"
#include "sala/core/error.h"

namespace sala::app {

void add_chat_commands(CLI::App& app) {
  {
    static GenArgs a;
    a.max_new = 512;
    a.s.temperature = 0.9f;  // MiniCPM-SALA's recommended sampling temperature
    auto* cmd = app.add_subcommand("chat", "Chat in the model's chat format (ChatML for MiniCPM), one line per turn "
                                           "from stdin; the cache is kept across turns");
    cmd->add_option("model", a.model, "Model folder (with its tokenizer)")->required();
    cmd->add_option("--tokenizer", a.tokenizer, "Tokenizer folder or file (default: the model folder)");
    cmd->add_option("--system", a.system, "System message");
    cmd->add_option("-n,--max-new-tokens", a.max_new, "Tokens per reply at most")->capture_default_str();
    cmd->add_option("--context", a.context, "Context limit (default: max_position_embeddings)");
    add_sampling(cmd, a);
    cmd->callback([] {
      Model m = Model::load(a.model);
      auto tok = text::Tokenizer::load(a.tokenizer.empty() ? a.model : a.tokenizer);
      std::vector<text::ChatMessage> msgs;
      if (!a.system.empty()) msgs.push_back({"system", a.system});
      SequenceState st = m.new_state(a.context);
      std::vector<int32_t> cached;  // the ids in st, to append only what is new each turn
      std::string line;
      const bool tty = isatty(0);
      while (true) {
        if (tty) fmt::print(stderr, "> ");
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        msgs.push_back({"user", line});
        std::vector<int32_t> all = tok->encode_chat(msgs, true);
        const bool extends = all.size() > cached.size() && std::equal(cached.begin(), cached.end(), all.begin());
        if (!extends) {  // tokenization differs at the boundary: start the cache over
          st.reset();
          cached.clear();
        }
        std::vector<int32_t> fresh(all.begin() + std::ptrdiff_t(cached.size()), all.end());
        GenerateOptions o;
        o.max_new_tokens = a.max_new;
        o.sampling = a.s;
        o.stop_ids = stop_ids_for(m, tok.get());
        o.history = cached;  // the repetition penalty sees the whole conversation, as HF's input_ids
        TextStream ts(*tok, tok->stop_strings());
        o.on_token = [&](int32_t id) { return ts.push(id); };
        GenerateResult r = generate(m, st, fresh, o);
        ts.finish();
        fmt::print("\n");
        cached = all;
        cached.insert(cached.end(), r.tokens.begin(), r.tokens.end());
        cached.resize(size_t(st.pos));  // the last sampled token was never fed back: it is not in the cache
        msgs.push_back({"assistant", ts.text});
        if (tty) print_stats(r, 0);
      }
    });
  }
}

}  // namespace sala::app
