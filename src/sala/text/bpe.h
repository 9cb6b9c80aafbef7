// BPE model of HF tokenizer.json: vocab, merge ranks (merges as "a b" strings or [a, b] pairs), byte_fallback,
// fuse_unk, unk_token, ignore_merges, continuing_subword_prefix, end_of_word_suffix.
// Merging is HF's: repeatedly apply the lowest-rank merge, leftmost first (binary heap over a linked symbol list).
// Speed: a long word is cut where no vocabulary token spans the cut (no merge can cross it, so the result is
// unchanged), and the pieces are memoised in a per-call cache.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sala::text {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// Per-encode memo of word -> ids (not shared between threads).
struct BpeCache {
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> words;
};

class Bpe {
 public:
  Bpe(const nlohmann::json& model, const std::string& what);

  // Tokenizes one pre-tokenized word (UTF-8 text) and appends its ids. cache may be null.
  void tokenize(std::string_view word, std::vector<int32_t>& out, BpeCache* cache) const;
  // Same for a raw-byte word of a byte-level tokenizer: each byte stands for its ByteLevel character.
  void tokenize_bytes(std::string_view raw, std::vector<int32_t>& out, BpeCache* cache) const;

  std::optional<int32_t> token_to_id(std::string_view s) const;
  const std::string* id_to_token(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  const std::string& unk_token() const { return unk_token_; }

 private:
  struct MergeVal {
    int32_t rank, new_id;
  };
  // Open-addressing hash map (id_l, id_r) -> (rank, new id); the merge lookup is the hot loop.
  struct MergeMap {
    std::vector<uint64_t> keys;
    std::vector<MergeVal> vals;
    uint64_t mask = 0;
    void build(const std::vector<std::pair<uint64_t, MergeVal>>& items);
    const MergeVal* find(uint64_t key) const {
      if (keys.empty()) return nullptr;
      for (uint64_t h = (key * 0x9E3779B97F4A7C15ULL) >> 20 & mask;; h = (h + 1) & mask) {
        if (keys[h] == key) return &vals[h];
        if (keys[h] == kEmpty) return nullptr;
      }
    }
    static constexpr uint64_t kEmpty = ~0ULL;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  void merge_word(std::string_view w, std::vector<int32_t>& out) const;  // HF merge_word on one word
  void merge_ids(std::vector<int32_t>& syms, std::vector<uint32_t>* lens) const;  // merge_all on initial symbols
  int32_t char_id(std::string_view ch) const;  // id of a one-character token, -1 if absent

  Vocab vocab_;
  std::vector<std::string> id_to_token_;
  MergeMap merges_;
  std::string unk_token_;
  int32_t unk_id_ = -1;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::string prefix_, suffix_;
  int32_t ascii_ids_[128];
  int32_t byte_fallback_ids_[256];  // "<0xXX>" ids, -1 if absent
  int32_t byte_level_ids_[256];     // id of the ByteLevel character of each byte, -1 if absent
  bool can_cut_ = false;            // long words may be cut at safe points (see file comment)
  std::unordered_set<uint64_t> bigrams_;  // adjacent code-point pairs occurring inside some vocabulary token
};

}  // namespace sala::text
