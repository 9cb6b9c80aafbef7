// Tokenizers for the eval tests: the MiniCPM fixture (../shared), a byte-level BPE (GPT-2 layout) built here by a
// small BPE trainer of the test's own, and a SentencePiece BPE trained by sala (text::train_tokenizer). Each is built
// once per test binary run.
#pragma once
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sala/eval/haystack.h"
#include "sala/eval/words.h"
#include "sala/text/tokenizer.h"
#include "sala/text/tokenizer_train.h"
#include "test_util.h"

namespace sala::eval_test {

// Training text: the noise, the words keys and lists are made of, digits and a paragraph of prose.
inline std::string training_text() {
  std::string t;
  for (int i = 0; i < 20; ++i) t += std::string(eval::kNoiseText) + "\n";
  for (auto list : {eval::adjectives(), eval::nouns(), eval::verbs()})
    for (std::string_view w : list) t += std::string(w) + " " + std::string(w) + "s " + std::string(w) + "-key\n";
  for (int i = 0; i < 200; ++i) t += fmt::format("{} {}. VAR ABCDE = {}.\n", i * 7919 % 10000, i, i * 31 % 100000);
  std::ifstream f(std::string(SALA_SOURCE_DIR) + "/tests/text/corpus/english.txt");
  std::string line;
  while (std::getline(f, line)) t += line + "\n";
  t += "One of the special magic numbers for the key is: 1234567. What are all the special magic numbers?\n";
  return t;
}

// GPT-2's byte-to-unicode table (printable bytes map to themselves, the rest to U+0100..).
inline std::vector<std::string> byte_chars() {
  std::vector<std::string> out(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const int cp = keep ? b : 256 + extra++;
    std::string s;
    if (cp < 0x80) s += char(cp);
    else s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
    out[size_t(b)] = s;
  }
  return out;
}

// A byte-level BPE tokenizer.json with `merges` merges learned (greedy pair counts) from training_text().
inline void write_byte_level_bpe(const std::string& dir, int merges) {
  const std::vector<std::string> bc = byte_chars();
  // words as GPT-2 pre-tokenizes them, roughly: a leading space belongs to the word after it
  std::map<std::vector<std::string>, int64_t> words;
  const std::string text = training_text();
  std::string cur;
  const auto flush = [&] {
    if (cur.empty()) return;
    std::vector<std::string> w;
    for (unsigned char c : cur) w.push_back(bc[c]);
    ++words[w];
    cur.clear();
  };
  for (char c : text) {
    if (c == ' ' || c == '\n') flush();
    cur += c;
    if (c == '\n') flush();
  }
  flush();
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[bc[size_t(b)]] = b;
  nlohmann::json ml = nlohmann::json::array();
  int next_id = 256;
  for (int m = 0; m < merges; ++m) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [w, n] : words)
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs[{w[i], w[i + 1]}] += n;
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;
    const auto [a, b] = best->first;
    ml.push_back(a + " " + b);
    vocab[a + b] = next_id++;
    std::map<std::vector<std::string>, int64_t> merged;
    for (const auto& [w, n] : words) {
      std::vector<std::string> o;
      for (size_t i = 0; i < w.size(); ++i)
        if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) o.push_back(a + b), ++i;
        else o.push_back(w[i]);
      merged[o] += n;
    }
    words = std::move(merged);
  }
  const nlohmann::json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  const nlohmann::json j = {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
      {"added_tokens", {{{"id", next_id}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", true}, {"special", true}}}},
      {"normalizer", nullptr}, {"pre_tokenizer", bl}, {"post_processor", bl}, {"decoder", bl},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
                 {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab},
                 {"merges", ml}}}};
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.json") << j.dump();
}

// The three tokenizers, loaded once; the MiniCPM one is null when ../shared is absent.
struct Tokenizers {
  std::unique_ptr<text::Tokenizer> minicpm, byte_bpe, trained;
  std::unique_ptr<sala::test::TempDir> dir;
};
inline const Tokenizers& tokenizers() {
  static const Tokenizers t = [] {
    Tokenizers r;
    r.dir = std::make_unique<sala::test::TempDir>("eval_tok");
    const std::string mc = sala::test::shared_path("fixtures/minicpm-tokenizer");
    if (std::filesystem::exists(mc + "/tokenizer.json")) r.minicpm = text::Tokenizer::load(mc);
    write_byte_level_bpe(r.dir->file("bpe"), 300);
    r.byte_bpe = text::Tokenizer::load(r.dir->file("bpe"));
    std::ofstream(r.dir->file("train.txt")) << training_text();
    text::TokenizerTrainOptions o;
    o.inputs = {r.dir->file("train.txt")};
    o.out_dir = r.dir->file("spm");
    o.vocab_size = 600;
    o.threads = 1;
    text::train_tokenizer(o);
    r.trained = text::Tokenizer::load(o.out_dir);
    return r;
  }();
  return t;
}

}  // namespace sala::eval_test
