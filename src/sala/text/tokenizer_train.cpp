// Tokenizer training through libsentencepiece (see tokenizer_train.h). Trainer settings are chosen so that the HF
// pipeline written next to the model reproduces SentencePiece's segmentation: identity normalization (no NFKC, which
// HF's Prepend/Replace pipeline would not apply), whitespace kept as is (remove_extra_whitespaces=false), dummy
// prefix "▁", byte fallback for characters outside the vocabulary.
#include "sala/text/tokenizer_train.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "sala/core/error.h"
#include "sala/io/file.h"

namespace sala::text {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kChatMLTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

json added_token_json(int id, const std::string& content) {
  return json{{"id", id},           {"content", content}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false},    {"normalized", false}, {"special", true}};
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  if (!f) fail("cannot write {}", p.string());
  f << s;
  if (!f) fail("write failed: {}", p.string());
}

}  // namespace

void write_tokenizer_json_from_spm(const std::string& model_path, const std::string& json_path) {
  sentencepiece::SentencePieceProcessor sp;
  if (const auto st = sp.LoadFromSerializedProto(io::read_file(model_path, "SentencePiece model", uint64_t(1) << 30));
      !st.ok())
    fail("{}: cannot load SentencePiece model: {}", model_path, st.ToString());
  const int n = sp.GetPieceSize();
  json vocab = json::object();
  json added = json::array();
  std::unordered_map<std::string, int> normal;  // merge candidates: normal pieces only
  for (int id = 0; id < n; ++id) {
    const std::string piece = sp.IdToPiece(id);
    vocab[piece] = id;
    if (sp.IsControl(id) || sp.IsUnknown(id)) added.push_back(added_token_json(id, piece));
    else if (!sp.IsByte(id) && !sp.IsUnused(id)) normal[piece] = id;
  }
  if (sp.unk_id() < 0) fail("{}: model has no <unk> piece", model_path);
  struct Merge {
    float score;
    int merged, left, right;
  };
  std::vector<Merge> merges;
  for (const auto& [piece, id] : normal) {
    for (size_t k = 1; k < piece.size(); ++k) {
      if ((static_cast<uint8_t>(piece[k]) & 0xC0) == 0x80) continue;  // split on character boundaries only
      auto l = normal.find(piece.substr(0, k));
      auto r = normal.find(piece.substr(k));
      if (l != normal.end() && r != normal.end()) merges.push_back({sp.GetScore(id), id, l->second, r->second});
    }
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.merged != b.merged) return a.merged < b.merged;
    if (a.left != b.left) return a.left < b.left;
    return a.right < b.right;
  });
  json jm = json::array();
  for (const auto& m : merges) jm.push_back(json::array({sp.IdToPiece(m.left), sp.IdToPiece(m.right)}));

  const std::string ws = "\xE2\x96\x81";
  const std::string bos = sp.bos_id() >= 0 ? sp.IdToPiece(sp.bos_id()) : std::string();
  json post = nullptr;
  if (!bos.empty()) {
    post = json{{"type", "TemplateProcessing"},
                {"single", json::array({json{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                        json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                {"pair", json::array({json{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                      json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                      json{{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                                      json{{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
                {"special_tokens", {{bos, {{"id", bos}, {"ids", json::array({sp.bos_id()})}, {"tokens", json::array({bos})}}}}}};
  }
  json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "Sequence"},
                      {"normalizers", json::array({json{{"type", "Prepend"}, {"prepend", ws}},
                                                   json{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", ws}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", post},
      {"decoder", {{"type", "Sequence"},
                   {"decoders", json::array({json{{"type", "Replace"}, {"pattern", {{"String", ws}}}, {"content", " "}},
                                             json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}},
                                             json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model", {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", sp.IdToPiece(sp.unk_id())},
                 {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr},
                 {"fuse_unk", true},
                 {"byte_fallback", true},
                 {"ignore_merges", false},
                 {"vocab", vocab},
                 {"merges", jm}}},
  };
  write_file(json_path, j.dump());
}

void train_tokenizer(const TokenizerTrainOptions& opt) {
  if (opt.inputs.empty()) fail("tokenizer train: no input files");
  for (const auto& f : opt.inputs)
    io::check_regular_file(f, "tokenizer training input");  // SentencePiece opens it: a FIFO would block it
  if (opt.vocab_size < 260 + static_cast<int>(opt.control_tokens.size()))
    fail("tokenizer train: vocab_size {} is too small (byte fallback alone needs 259 + control tokens)", opt.vocab_size);
  fs::create_directories(opt.out_dir);
  std::string inputs, controls;
  for (const auto& f : opt.inputs) inputs += (inputs.empty() ? "" : ",") + f;
  for (const auto& c : opt.control_tokens) {
    if (c.find(',') != std::string::npos) fail("tokenizer train: control token \"{}\" contains a comma", c);
    controls += (controls.empty() ? "" : ",") + c;
  }
  const std::string prefix = (fs::path(opt.out_dir) / "tokenizer").string();
  const std::unordered_map<std::string, std::string> kw = {
      {"input", inputs},
      {"model_prefix", prefix},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"character_coverage", std::to_string(opt.character_coverage)},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"add_dummy_prefix", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "false"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"control_symbols", controls},
      {"num_threads", std::to_string(opt.threads)},
      {"input_sentence_size", std::to_string(opt.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", std::to_string(opt.max_sentence_length)},
      {"hard_vocab_limit", opt.hard_vocab_limit ? "true" : "false"},
      {"minloglevel", "2"},
  };
  if (const auto st = sentencepiece::SentencePieceTrainer::Train(kw); !st.ok())
    fail("tokenizer train: SentencePiece trainer failed: {}", st.ToString());
  write_tokenizer_json_from_spm(prefix + ".model", (fs::path(opt.out_dir) / "tokenizer.json").string());
  fs::remove(prefix + ".vocab");

  json added_dec = json::object();
  sentencepiece::SentencePieceProcessor sp;
  if (const auto st = sp.Load(prefix + ".model"); !st.ok()) fail("{}.model: {}", prefix, st.ToString());
  for (int id = 0; id < sp.GetPieceSize(); ++id) {
    if (!sp.IsControl(id) && !sp.IsUnknown(id)) continue;
    json t = added_token_json(id, sp.IdToPiece(id));
    t.erase("id");
    added_dec[std::to_string(id)] = t;
  }
  const json cfg = {
      {"add_bos_token", true},        {"add_eos_token", false},      {"bos_token", "<s>"},
      {"eos_token", "</s>"},          {"unk_token", "<unk>"},        {"pad_token", nullptr},
      {"tokenizer_class", "LlamaTokenizer"}, {"legacy", true},        {"chat_template", kChatMLTemplate},
      {"added_tokens_decoder", added_dec},   {"model_max_length", 1 << 20},
  };
  write_file(fs::path(opt.out_dir) / "tokenizer_config.json", cfg.dump(2));
}

}  // namespace sala::text
