// SpmTokenizer: a SentencePiece model through libsentencepiece, with the transformers (slow LlamaTokenizer, legacy)
// conventions on top: the text is first split on added tokens (tokenizer_config.json / added_tokens.json) and on the
// model's control/unknown pieces, and each remaining segment is encoded by SentencePiece on its own (so each gets
// the dummy-prefix "▁"); BOS/EOS follow add_bos_token (default true when the model has a BOS) / add_eos_token.
#include "sala/text/spm_tokenizer.h"

#include <sentencepiece_processor.h>

#include <unordered_map>

#include "sala/core/error.h"
#include "sala/io/file.h"
#include "sala/text/added_tokens.h"
#include "sala/text/bpe.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

class SpmTokenizer : public Tokenizer {
 public:
  SpmTokenizer(const std::string& path, TokenizerConfig cfg);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<std::string> id_to_token(int32_t id) const override;
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string_view kind() const override { return "sentencepiece"; }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  int32_t n_pieces_ = 0, vocab_size_ = 0;
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  Vocab added_by_content_;
  AddedTokenMatcher matcher_;
  bool add_bos_ = true, add_eos_ = false;
};

SpmTokenizer::SpmTokenizer(const std::string& path, TokenizerConfig cfg) : path_(path) {
  // Read here, not by sp_.Load(path): io::read_file refuses a FIFO (whose open would block), a directory or a device.
  const auto st = sp_.LoadFromSerializedProto(io::read_file(path, "SentencePiece model", uint64_t(1) << 30));
  if (!st.ok()) fail("{}: cannot load SentencePiece model: {}", path, st.ToString());
  n_pieces_ = sp_.GetPieceSize();
  vocab_size_ = n_pieces_;
  const auto add = [&](AddedToken t) {
    if (added_by_content_.count(t.content)) return;
    added_by_content_[t.content] = t.id;
    added_by_id_[t.id] = added_.size();
    vocab_size_ = std::max(vocab_size_, t.id + 1);
    added_.push_back(std::move(t));
  };
  for (const auto& t : cfg.added_tokens) {
    if (t.id < 0) fail("{}: added token \"{}\" has no id", path, t.content);
    add(t);
  }
  for (int32_t id = 0; id < n_pieces_; ++id) {
    if (sp_.IsControl(id) || sp_.IsUnknown(id)) {
      AddedToken t;
      t.content = sp_.IdToPiece(id);
      t.id = id;
      t.special = true;
      add(std::move(t));
    }
  }
  matcher_.build(added_);
  special_.assign(static_cast<size_t>(vocab_size_), false);
  for (const auto& t : added_)
    if (t.special) special_[static_cast<size_t>(t.id)] = true;
  add_bos_ = cfg.add_bos_token.value_or(sp_.bos_id() >= 0);
  add_eos_ = cfg.add_eos_token.value_or(false);
  finish_setup(std::move(cfg));
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const std::string valid = to_valid_utf8(text);
  std::vector<int32_t> out;
  if (add_special_tokens && add_bos_ && bos_id_ >= 0) out.push_back(bos_id_);
  std::vector<Segment> segs;
  matcher_.split(valid, segs);
  std::vector<int> ids;
  for (const auto& s : segs) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    if (s.end == s.begin) continue;
    ids.clear();
    const auto st = sp_.Encode(std::string_view(valid).substr(s.begin, s.end - s.begin), &ids);
    if (!st.ok()) fail("{}: SentencePiece encode failed: {}", path_, st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }
  if (add_special_tokens && add_eos_ && !eos_ids_.empty()) out.push_back(eos_ids_[0]);
  return out;
}

std::string SpmTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string out;
  std::vector<int> run;
  const auto flush = [&] {
    if (run.empty()) return;
    std::string s;
    const auto st = sp_.Decode(run, &s);
    if (!st.ok()) fail("{}: SentencePiece decode failed: {}", path_, st.ToString());
    out += s;
    run.clear();
  };
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) continue;
    if (is_special(id) || id >= n_pieces_) {
      auto it = added_by_id_.find(id);
      if (it == added_by_id_.end()) continue;
      flush();
      if (!(skip_special && added_[it->second].special)) out += added_[it->second].content;
      continue;
    }
    run.push_back(id);
  }
  flush();
  return out;
}

std::optional<std::string> SpmTokenizer::id_to_token(int32_t id) const {
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) return added_[it->second].content;
  if (id >= 0 && id < n_pieces_) return sp_.IdToPiece(id);
  return std::nullopt;
}

std::optional<int32_t> SpmTokenizer::token_to_id(std::string_view token) const {
  auto it = added_by_content_.find(token);
  if (it != added_by_content_.end()) return it->second;
  const int id = sp_.PieceToId(token);
  if (id == sp_.unk_id() && token != sp_.IdToPiece(id)) return std::nullopt;
  return id;
}

}  // namespace

std::unique_ptr<Tokenizer> load_spm_tokenizer(const std::string& model_path, TokenizerConfig cfg) {
  return std::make_unique<SpmTokenizer>(model_path, std::move(cfg));
}

}  // namespace sala::text
