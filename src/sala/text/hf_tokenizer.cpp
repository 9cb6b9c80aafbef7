// HfTokenizer (see hf_tokenizer.h). Encode order, as in HF: (1) split the raw text on non-normalized added tokens,
// (2) normalize each remaining segment, (3) split it on normalized added tokens, (4) pre-tokenize, (5) BPE each
// piece, (6) post-process. Because the normalizer runs per segment, Prepend("▁") applies after every special token
// (HF's "legacy" behaviour); sala reproduces it rather than "fixing" it.
#include "sala/text/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sala/core/error.h"
#include "sala/io/file.h"
#include "sala/text/added_tokens.h"
#include "sala/text/bpe.h"
#include "sala/text/decoders.h"
#include "sala/text/normalizers.h"
#include "sala/text/pre_tokenizers.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

using json = nlohmann::json;

constexpr size_t kCacheMinBytes = 512;  // inputs shorter than this skip the word cache

class HfTokenizer : public Tokenizer {
 public:
  HfTokenizer(const std::string& path, TokenizerConfig cfg);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<std::string> id_to_token(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string_view kind() const override { return "tokenizer.json"; }

 private:
  void encode_text(std::string_view seg, bool at_origin, std::vector<int32_t>& out, BpeCache* cache) const;
  void parse_post_processor(const json& j, const std::string& what);

  std::string path_;
  std::unique_ptr<Bpe> bpe_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  bool raw_bytes_ = false;
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  Vocab added_by_content_;
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
  int32_t vocab_size_ = 0;
  std::vector<int32_t> prefix_ids_, suffix_ids_;  // post-processor (single sequence)
};

// io::read_file refuses a FIFO (whose open would block), a directory or a device. Real tokenizer.json files are
// under 50 MB; the bound stops a runaway read.
std::string read_file(const std::string& path) { return io::read_file(path, "tokenizer file", uint64_t(1) << 30); }

AddedToken parse_added(const json& a, const std::string& what) {
  AddedToken t;
  t.content = a.at("content").get<std::string>();
  t.id = a.contains("id") ? a.at("id").get<int32_t>() : -1;
  t.special = a.value("special", false);
  t.lstrip = a.value("lstrip", false);
  t.rstrip = a.value("rstrip", false);
  t.single_word = a.value("single_word", false);
  t.normalized = a.value("normalized", !t.special);
  if (t.content.empty()) fail("{}: added token with id {} has empty content", what, t.id);
  return t;
}

HfTokenizer::HfTokenizer(const std::string& path, TokenizerConfig cfg) : path_(path) {
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  try {
    if (!j.contains("model")) fail("{}: no \"model\" field (not a tokenizer.json?)", path);
    bpe_ = std::make_unique<Bpe>(j.at("model"), path);
    normalizer_ = make_normalizer(j.value("normalizer", json()), path);
    pre_tokenizer_ = make_pre_tokenizer(j.value("pre_tokenizer", json()), path, &raw_bytes_);
    decoder_ = make_decoder(j.value("decoder", json()), path);
    if (j.contains("truncation") && !j["truncation"].is_null())
      fail("{}: truncation is set; sala does not truncate inside the tokenizer (remove it)", path);

    // Added tokens: tokenizer.json, then tokenizer_config.json's added_tokens_decoder for any it lacks.
    int32_t next_id = bpe_->max_id() + 1;
    const auto add = [&](AddedToken t) {
      if (added_by_content_.count(t.content)) return;
      if (auto mid = bpe_->token_to_id(t.content)) t.id = *mid;  // HF keeps the model's id for known tokens
      if (t.id < 0) t.id = next_id;
      next_id = std::max(next_id, t.id + 1);
      added_by_content_[t.content] = t.id;
      added_by_id_[t.id] = added_.size();
      added_.push_back(std::move(t));
    };
    if (j.contains("added_tokens"))
      for (const auto& a : j["added_tokens"]) add(parse_added(a, path));
    for (const auto& t : cfg.added_tokens) add(t);
  } catch (const json::exception& e) {
    fail("{}: malformed field: {}", path, e.what());
  }

  std::vector<AddedToken> raw, norm;
  for (const auto& t : added_) {
    if (!t.normalized) {
      raw.push_back(t);
    } else {
      AddedToken n = t;
      if (normalizer_) normalizer_->normalize(n.content);  // normalized tokens are matched in normalized text
      norm.push_back(std::move(n));
    }
  }
  raw_matcher_.build(raw);
  normalized_matcher_.build(norm);

  vocab_size_ = bpe_->max_id() + 1;
  for (const auto& t : added_) vocab_size_ = std::max(vocab_size_, t.id + 1);
  special_.assign(static_cast<size_t>(vocab_size_), false);
  for (const auto& t : added_)
    if (t.special) special_[static_cast<size_t>(t.id)] = true;

  try {
    parse_post_processor(j.value("post_processor", json()), path);
  } catch (const json::exception& e) {
    fail("{}: malformed post_processor: {}", path, e.what());
  }
  // transformers' Llama-family tokenizers rebuild the post-processor from add_bos_token/add_eos_token.
  if (cfg.tokenizer_class.find("Llama") != std::string::npos &&
      (cfg.add_bos_token.has_value() || cfg.add_eos_token.has_value())) {
    prefix_ids_.clear();
    suffix_ids_.clear();
    const auto id_of = [&](const std::string& tok, const char* field) {
      auto id = token_to_id(tok);
      if (!id) fail("{}: tokenizer_config.json {} \"{}\" is not a token", path, field, tok);
      return *id;
    };
    if (cfg.add_bos_token.value_or(true) && !cfg.bos_token.empty()) prefix_ids_.push_back(id_of(cfg.bos_token, "bos_token"));
    if (cfg.add_eos_token.value_or(false) && !cfg.eos_token.empty()) suffix_ids_.push_back(id_of(cfg.eos_token, "eos_token"));
  }
  finish_setup(std::move(cfg));
}

void HfTokenizer::parse_post_processor(const json& j, const std::string& what) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) parse_post_processor(p, what);
    return;
  }
  if (type == "ByteLevel") return;  // only trims offsets
  if (type == "TemplateProcessing") {
    bool seen_a = false;
    for (const auto& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_a = true;
        continue;
      }
      if (!item.contains("SpecialToken")) fail("{}: TemplateProcessing item {} not understood", what, item.dump());
      const std::string name = item["SpecialToken"].at("id").get<std::string>();
      const auto& sp = j.at("special_tokens");
      if (!sp.contains(name)) fail("{}: TemplateProcessing special token \"{}\" missing from special_tokens", what, name);
      for (const auto& id : sp[name].at("ids")) (seen_a ? suffix_ids_ : prefix_ids_).push_back(id.get<int32_t>());
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix_ids_.push_back(j.at("cls").at(1).get<int32_t>());
    suffix_ids_.push_back(j.at("sep").at(1).get<int32_t>());
    return;
  }
  fail("{}: post_processor type \"{}\" is not supported by sala (supported: TemplateProcessing, ByteLevel, "
       "RobertaProcessing, BertProcessing, Sequence)", what, type);
}

void HfTokenizer::encode_text(std::string_view seg, bool at_origin, std::vector<int32_t>& out, BpeCache* cache) const {
  std::string norm(seg);
  if (normalizer_) normalizer_->normalize(norm);
  thread_local std::vector<Segment> segs2;
  std::vector<Segment> local;
  std::vector<Segment>& segs = normalized_matcher_.empty() ? local : segs2;
  segs.clear();
  if (normalized_matcher_.empty()) segs.push_back(Segment{0, norm.size(), -1});
  else normalized_matcher_.split(norm, segs);
  for (const auto& s : segs) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    if (s.end == s.begin) continue;
    const bool origin = at_origin && s.begin == 0;
    if (!pre_tokenizer_) {
      bpe_->tokenize(std::string_view(norm).substr(s.begin, s.end - s.begin), out, cache);
      continue;
    }
    std::vector<Piece> pieces;
    pieces.push_back(Piece{norm.substr(s.begin, s.end - s.begin), origin});
    pre_tokenizer_->pre_tokenize(pieces);
    for (const auto& p : pieces) {
      if (raw_bytes_) bpe_->tokenize_bytes(p.text, out, cache);
      else bpe_->tokenize(p.text, out, cache);
    }
  }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const std::string valid = to_valid_utf8(text);
  std::vector<int32_t> out;
  out.reserve(valid.size() / 3 + 8);
  if (add_special_tokens) out.insert(out.end(), prefix_ids_.begin(), prefix_ids_.end());
  BpeCache cache;
  BpeCache* cp = valid.size() >= kCacheMinBytes ? &cache : nullptr;
  std::vector<Segment> segs;
  raw_matcher_.split(valid, segs);
  for (const auto& s : segs) {
    if (s.id >= 0) out.push_back(s.id);
    else encode_text(std::string_view(valid).substr(s.begin, s.end - s.begin), s.begin == 0, out, cp);
  }
  if (add_special_tokens) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) {
      toks.push_back(added_[it->second].content);
      continue;
    }
    if (const std::string* s = bpe_->id_to_token(id)) toks.push_back(*s);
  }
  if (!decoder_) {
    std::string r;
    for (size_t k = 0; k < toks.size(); ++k) r += (k ? " " : "") + toks[k];
    return r;
  }
  decoder_->decode_chain(toks);
  std::string r;
  for (const auto& t : toks) r += t;
  return r;
}

std::optional<std::string> HfTokenizer::id_to_token(int32_t id) const {
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) return added_[it->second].content;
  if (const std::string* s = bpe_->id_to_token(id)) return *s;
  return std::nullopt;
}

std::optional<int32_t> HfTokenizer::token_to_id(std::string_view token) const {
  auto it = added_by_content_.find(token);
  if (it != added_by_content_.end()) return it->second;
  return bpe_->token_to_id(token);
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_path, TokenizerConfig cfg) {
  return std::make_unique<HfTokenizer>(json_path, std::move(cfg));
}

}  // namespace sala::text
