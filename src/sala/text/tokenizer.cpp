// Tokenizer::load dispatch, side-file reading (tokenizer_config.json & co) and the shared parts of the interface.
// Rule: tokenizer.json wins over tokenizer.model when a folder has both (it is what transformers' fast tokenizer,
// the reference, uses); side files only add information (special token names, add_bos/add_eos, chat template,
// extra eos ids), never change the vocabulary of the main file.
#include "sala/text/tokenizer.h"

#include <omp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sala/core/error.h"
#include "sala/io/file.h"
#include "sala/text/hf_tokenizer.h"
#include "sala/text/spm_tokenizer.h"

namespace sala::text {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Side files are small (a long chat template is ~10 kB); the bound stops a runaway read. A side file that exists but
// is not a regular file (a FIFO would block the open) is an error from io::read_file, not silently skipped.
constexpr uint64_t kMaxSideFileBytes = uint64_t(1) << 28;

std::optional<json> read_json_if_exists(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(fs::status(p, ec))) return std::nullopt;
  const std::string text = io::read_file(p.string(), "tokenizer side file", kMaxSideFileBytes);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", p.string(), e.what());
  }
}

// A special token field: "text", {"content": "text", ...} or null.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

void read_eos_ids(const json& j, std::vector<int32_t>& out) {
  if (!j.contains("eos_token_id")) return;
  const auto& v = j["eos_token_id"];
  if (v.is_number_integer()) out.push_back(v.get<int32_t>());
  else if (v.is_array())
    for (const auto& e : v)
      if (e.is_number_integer()) out.push_back(e.get<int32_t>());
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& dir_str) {
  TokenizerConfig cfg;
  const fs::path dir(dir_str);
  std::vector<std::string> additional;
  if (auto j = read_json_if_exists(dir / "tokenizer_config.json")) {
    const std::string what = (dir / "tokenizer_config.json").string();
    try {
      if (j->contains("add_bos_token") && (*j)["add_bos_token"].is_boolean()) cfg.add_bos_token = (*j)["add_bos_token"].get<bool>();
      if (j->contains("add_eos_token") && (*j)["add_eos_token"].is_boolean()) cfg.add_eos_token = (*j)["add_eos_token"].get<bool>();
      if (j->contains("bos_token")) cfg.bos_token = token_text((*j)["bos_token"]);
      if (j->contains("eos_token")) cfg.eos_token = token_text((*j)["eos_token"]);
      if (j->contains("unk_token")) cfg.unk_token = token_text((*j)["unk_token"]);
      if (j->contains("pad_token")) cfg.pad_token = token_text((*j)["pad_token"]);
      if (j->contains("tokenizer_class") && (*j)["tokenizer_class"].is_string())
        cfg.tokenizer_class = (*j)["tokenizer_class"].get<std::string>();
      if (j->contains("chat_template")) {
        const auto& ct = (*j)["chat_template"];
        if (ct.is_string()) {
          cfg.chat_template = ct.get<std::string>();
        } else if (ct.is_array()) {  // [{"name": "default", "template": "..."}, ...]
          for (const auto& e : ct)
            if (e.value("name", "") == "default") cfg.chat_template = e.value("template", "");
        }
      }
      if (j->contains("added_tokens_decoder") && (*j)["added_tokens_decoder"].is_object()) {
        for (auto it = (*j)["added_tokens_decoder"].begin(); it != (*j)["added_tokens_decoder"].end(); ++it) {
          AddedTokenSpec t;
          t.id = std::stoi(it.key());
          const auto& v = it.value();
          t.content = v.at("content").get<std::string>();
          t.special = v.value("special", false);
          t.lstrip = v.value("lstrip", false);
          t.rstrip = v.value("rstrip", false);
          t.single_word = v.value("single_word", false);
          t.normalized = v.value("normalized", !t.special);
          cfg.added_tokens.push_back(std::move(t));
        }
      }
      if (j->contains("additional_special_tokens") && (*j)["additional_special_tokens"].is_array())
        for (const auto& e : (*j)["additional_special_tokens"]) additional.push_back(token_text(e));
    } catch (const std::exception& e) {
      fail("{}: malformed field: {}", what, e.what());
    }
  }
  if (auto j = read_json_if_exists(dir / "special_tokens_map.json")) {
    if (cfg.bos_token.empty() && j->contains("bos_token")) cfg.bos_token = token_text((*j)["bos_token"]);
    if (cfg.eos_token.empty() && j->contains("eos_token")) cfg.eos_token = token_text((*j)["eos_token"]);
    if (cfg.unk_token.empty() && j->contains("unk_token")) cfg.unk_token = token_text((*j)["unk_token"]);
    if (cfg.pad_token.empty() && j->contains("pad_token")) cfg.pad_token = token_text((*j)["pad_token"]);
    if (j->contains("additional_special_tokens") && (*j)["additional_special_tokens"].is_array())
      for (const auto& e : (*j)["additional_special_tokens"]) additional.push_back(token_text(e));
  }
  if (auto j = read_json_if_exists(dir / "added_tokens.json")) {
    for (auto it = j->begin(); it != j->end(); ++it) {
      if (!it.value().is_number_integer()) continue;
      AddedTokenSpec t;
      t.content = it.key();
      t.id = it.value().get<int32_t>();
      t.special = std::find(additional.begin(), additional.end(), t.content) != additional.end() ||
                  t.content == cfg.bos_token || t.content == cfg.eos_token || t.content == cfg.unk_token;
      t.normalized = !t.special;
      cfg.added_tokens.push_back(std::move(t));
    }
  }
  {
    std::error_code ec;
    const fs::path jinja = dir / "chat_template.jinja";
    if (cfg.chat_template.empty() && fs::exists(fs::status(jinja, ec)))
      cfg.chat_template = io::read_file(jinja.string(), "chat template", kMaxSideFileBytes);
  }
  if (auto j = read_json_if_exists(dir / "config.json")) read_eos_ids(*j, cfg.extra_eos_ids);
  if (auto j = read_json_if_exists(dir / "generation_config.json")) read_eos_ids(*j, cfg.extra_eos_ids);
  if (cfg.chat_template.find("<|im_start|>") != std::string::npos) cfg.chat_format = ChatFormat::kChatML;
  return cfg;
}

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path_str) {
  const fs::path p(path_str);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    TokenizerConfig cfg = read_tokenizer_config(p.string());
    // exists, not is_regular_file: a FIFO or folder in their place gets the loader's clear error, not "no tokenizer"
    if (fs::exists(fs::status(p / "tokenizer.json", ec))) return load_hf_tokenizer((p / "tokenizer.json").string(), std::move(cfg));
    if (fs::exists(fs::status(p / "tokenizer.model", ec))) return load_spm_tokenizer((p / "tokenizer.model").string(), std::move(cfg));
    fail("{}: no tokenizer.json or tokenizer.model in this folder", path_str);
  }
  if (!fs::exists(fs::status(p, ec))) fail("{}: no such tokenizer file or folder", path_str);
  TokenizerConfig cfg = read_tokenizer_config(p.parent_path().empty() ? "." : p.parent_path().string());
  if (p.extension() == ".json") return load_hf_tokenizer(p.string(), std::move(cfg));
  if (p.extension() == ".model") return load_spm_tokenizer(p.string(), std::move(cfg));
  fail("{}: unknown tokenizer file type (expected tokenizer.json or a SentencePiece .model)", path_str);
}

void Tokenizer::finish_setup(TokenizerConfig cfg) {
  config_ = std::move(cfg);
  const auto first_of = [&](const std::string& configured, std::initializer_list<const char*> fallbacks) -> int32_t {
    if (!configured.empty()) {
      if (auto id = token_to_id(configured)) return *id;
      return -1;
    }
    for (const char* f : fallbacks)
      if (auto id = token_to_id(f)) return *id;
    return -1;
  };
  bos_id_ = first_of(config_.bos_token, {"<s>", "<|begin_of_text|>", "<bos>"});
  unk_id_ = first_of(config_.unk_token, {"<unk>"});
  eos_ids_.clear();
  const int32_t eos = first_of(config_.eos_token, {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"});
  if (eos >= 0) eos_ids_.push_back(eos);
  for (int32_t id : config_.extra_eos_ids)
    if (id >= 0 && id < vocab_size()) eos_ids_.push_back(id);
  if (config_.chat_format == ChatFormat::kNone && config_.chat_template.empty() && token_to_id("<|im_start|>") &&
      token_to_id("<|im_end|>"))
    config_.chat_format = ChatFormat::kChatML;  // no template given, ChatML tokens present (sala-trained models)
  if (config_.chat_format == ChatFormat::kChatML)
    if (auto id = token_to_id("<|im_end|>")) eos_ids_.push_back(*id);
  std::vector<int32_t> uniq;
  for (int32_t id : eos_ids_)
    if (std::find(uniq.begin(), uniq.end(), id) == uniq.end()) uniq.push_back(id);
  eos_ids_ = std::move(uniq);
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(std::span<const std::string_view> texts,
                                                          bool add_special_tokens, int threads) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  const int n = static_cast<int>(texts.size());
  const int nt = threads > 0 ? threads : omp_get_max_threads();
  std::string error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int k = 0; k < n; ++k) {
    try {
      out[static_cast<size_t>(k)] = encode(texts[static_cast<size_t>(k)], add_special_tokens);
    } catch (const std::exception& e) {
#pragma omp critical
      error = e.what();
    }
  }
  if (!error.empty()) fail("{}", error);
  return out;
}

}  // namespace sala::text
