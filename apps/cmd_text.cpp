// sala tokenize | detokenize | tokenizer train: the text side of the CLI (sala::text).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "common.h"
#include "sala/core/error.h"
#include "sala/io/file.h"
#include "sala/text/tokenizer.h"
#include "sala/text/tokenizer_train.h"

namespace {

std::string read_input(const std::string& text, const std::string& file, bool have_text) {
  if (have_text) return text;
  // io::read_file refuses a FIFO (whose open would block), a directory (which would read as nothing) or a device.
  if (!file.empty() && file != "-") return sala::io::read_file(file, "text input", uint64_t(1) << 32);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

std::string escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else if (c < 0x20) o += fmt::format("\\x{:02x}", c);
    else o += static_cast<char>(c);
  }
  return o;
}

}  // namespace

void add_text_commands(CLI::App& app) {
  {
    struct Args {
      std::string model, text, file;
      bool no_special = false, tokens = false;
    };
    auto a = std::make_shared<Args>();
    auto* cmd = app.add_subcommand("tokenize", "Text -> token ids (tokenizer.json or tokenizer.model of a model folder)");
    cmd->add_option("model", a->model, "Model folder, tokenizer.json or *.model")->required();
    auto* text_opt = cmd->add_option("text", a->text, "Text to encode (default: --file, else stdin)");
    cmd->add_option("-f,--file", a->file, "Read the text from this file ('-' = stdin)");
    cmd->add_flag("--no-special", a->no_special, "Do not add BOS/EOS (the post-processor's special tokens)");
    cmd->add_flag("--tokens", a->tokens, "Print one 'id<TAB>token' line per token");
    cmd->callback([a, text_opt] {
      const auto tok = sala::text::Tokenizer::load(a->model);
      const std::string text = read_input(a->text, a->file, text_opt->count() > 0);
      const auto ids = tok->encode(text, !a->no_special);
      if (a->tokens) {
        for (int32_t id : ids) fmt::print("{}\t{}\n", id, escape(tok->id_to_token(id).value_or("?")));
        return;
      }
      std::string line;
      for (size_t k = 0; k < ids.size(); ++k) line += (k ? "," : "") + std::to_string(ids[k]);
      fmt::print("{}\n", line);
    });
  }
  {
    struct Args {
      std::string model, ids;
      bool keep_special = false, stream = false;
    };
    auto a = std::make_shared<Args>();
    auto* cmd = app.add_subcommand("detokenize", "Token ids -> text");
    cmd->add_option("model", a->model, "Model folder, tokenizer.json or *.model")->required();
    cmd->add_option("ids", a->ids, "Ids, e.g. 1,15043,3186 (default: stdin)");
    cmd->add_flag("--keep-special", a->keep_special, "Show special tokens (<s>, <|im_end|>, ...)");
    cmd->add_flag("--stream", a->stream, "Decode id by id as a generator would (one line per emitted piece)");
    cmd->callback([a] {
      const auto tok = sala::text::Tokenizer::load(a->model);
      const std::string src =
          a->ids.empty() ? std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()) : a->ids;
      const auto ids = sala::app::parse_ids(src, a->ids.empty() ? "token ids on stdin" : "ids");
      for (int32_t id : ids)
        if (id >= tok->vocab_size()) sala::fail("token id {} is outside the vocabulary (size {})", id, tok->vocab_size());
      if (a->stream) {
        sala::text::StreamDecoder sd(*tok, !a->keep_special);
        for (int32_t id : ids) fmt::print("{}\t\"{}\"\n", id, escape(sd.push(id)));
        fmt::print("end\t\"{}\"\n", escape(sd.finish()));
        return;
      }
      const std::string text = tok->decode(ids, !a->keep_special);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fputc('\n', stdout);
    });
  }
  {
    auto* grp = app.add_subcommand("tokenizer", "Tokenizer utilities");
    grp->require_subcommand(1);
    auto o = std::make_shared<sala::text::TokenizerTrainOptions>();
    auto* cmd = grp->add_subcommand(
        "train", "Train a byte-fallback BPE tokenizer (libsentencepiece); writes tokenizer.model, tokenizer.json "
                 "and tokenizer_config.json (ChatML) to --out");
    cmd->add_option("-i,--input", o->inputs, "Training text files (one paragraph per line)")->required()->check(CLI::ExistingFile);
    cmd->add_option("-o,--out", o->out_dir, "Output folder")->required();
    cmd->add_option("--vocab-size", o->vocab_size, "Vocabulary size (incl. 3 specials, control tokens, 256 bytes)")->capture_default_str();
    cmd->add_option("--coverage", o->character_coverage, "Character coverage (rarer characters use byte fallback)")->capture_default_str();
    cmd->add_option("--threads", o->threads, "Trainer threads")->capture_default_str();
    cmd->add_option("--max-sentences", o->max_sentences, "Sample at most this many lines (0 = all)")->capture_default_str();
    cmd->add_option("--control-tokens", o->control_tokens, "Special tokens reserved after <unk> <s> </s>")->capture_default_str();
    cmd->add_flag("--hard-vocab-limit,!--soft-vocab-limit", o->hard_vocab_limit,
                  "Fail unless the corpus yields exactly --vocab-size pieces (default: soft, a small corpus may end "
                  "with fewer, as the output line reports)");
    cmd->callback([o] {
      sala::text::train_tokenizer(*o);
      const auto tok = sala::text::Tokenizer::load(o->out_dir);
      fmt::print("wrote {}/tokenizer.model, tokenizer.json, tokenizer_config.json (vocab {}{})\n", o->out_dir,
                 tok->vocab_size(),
                 tok->vocab_size() < o->vocab_size
                     ? fmt::format(", fewer than --vocab-size {}: the corpus has too few distinct pieces", o->vocab_size)
                     : "");
    });
  }
}
