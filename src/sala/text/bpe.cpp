// BPE model (see bpe.h). The merge loop mirrors HF tokenizers' Word::merge_all: a min-heap of (rank, position) over
// a doubly linked list of symbols; stale heap entries are detected by re-checking the pair's merge result.
#include "sala/text/bpe.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "sala/core/error.h"
#include "sala/text/pre_tokenizers.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

using json = nlohmann::json;

struct Sym {
  int32_t id, prev, next;
  uint32_t len;  // bytes of the original word; 0 = merged away
};
struct HeapItem {
  int32_t rank, pos, new_id;
};
struct HeapCmp {  // makes std::push_heap a min-heap on (rank, pos)
  bool operator()(const HeapItem& a, const HeapItem& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

constexpr size_t kCutMinBytes = 24;     // words shorter than this are merged whole
constexpr size_t kCacheMaxBytes = 128;  // longer words are not memoised

}  // namespace

void Bpe::MergeMap::build(const std::vector<std::pair<uint64_t, MergeVal>>& items) {
  size_t cap = 16;
  while (cap < items.size() * 2) cap <<= 1;
  keys.assign(cap, kEmpty);
  vals.assign(cap, MergeVal{0, 0});
  mask = cap - 1;
  for (const auto& [k, v] : items) {
    for (uint64_t h = (k * 0x9E3779B97F4A7C15ULL) >> 20 & mask;; h = (h + 1) & mask) {
      if (keys[h] == kEmpty || keys[h] == k) {  // a repeated merge keeps the later rank, as HF's HashMap does
        keys[h] = k;
        vals[h] = v;
        break;
      }
    }
  }
}

Bpe::Bpe(const json& m, const std::string& what) {
  const std::string type = m.value("type", "BPE");
  if (type != "BPE")
    fail("{}: model type \"{}\" is not supported by sala (supported: BPE)", what, type);
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() > 0.0)
    fail("{}: BPE dropout {} is not supported (sala encodes deterministically)", what, m["dropout"].get<double>());
  const auto str_or_empty = [&](const char* key) {
    return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() : std::string();
  };
  unk_token_ = str_or_empty("unk_token");
  prefix_ = str_or_empty("continuing_subword_prefix");
  suffix_ = str_or_empty("end_of_word_suffix");
  byte_fallback_ = m.value("byte_fallback", false);
  fuse_unk_ = m.value("fuse_unk", false);
  ignore_merges_ = m.value("ignore_merges", false);

  const auto& vocab = m.at("vocab");
  if (!vocab.is_object()) fail("{}: model.vocab must be an object of token -> id", what);
  vocab_.reserve(vocab.size() * 2);
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = it.value().get<int64_t>();
    if (id < 0 || id > 100'000'000) fail("{}: model.vocab[\"{}\"] = {} is not a valid id", what, it.key(), id);
    vocab_[it.key()] = static_cast<int32_t>(id);
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [tok, id] : vocab_) id_to_token_[static_cast<size_t>(id)] = tok;
  if (!unk_token_.empty()) {
    if (auto u = token_to_id(unk_token_)) unk_id_ = *u;
  }

  // Merges: "a b" strings or [a, b] pairs; rank = position in the list.
  std::vector<std::pair<uint64_t, MergeVal>> items;
  const auto& merges = m.at("merges");
  items.reserve(merges.size());
  std::string a, b;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& e = merges[r];
    if (e.is_string()) {
      const auto& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        fail("{}: merge #{} \"{}\" is not two tokens separated by one space", what, r, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail("{}: merge #{} {} is neither \"a b\" nor [a, b]", what, r, e.dump());
    }
    const auto ia = token_to_id(a), ib = token_to_id(b);
    if (!ia || !ib) fail("{}: merge #{} uses token \"{}\" that is not in the vocab", what, r, !ia ? a : b);
    std::string merged = a + (b.size() >= prefix_.size() ? b.substr(prefix_.size()) : b);
    const auto im = token_to_id(merged);
    if (!im) fail("{}: merge #{} result \"{}\" is not in the vocab", what, r, merged);
    items.push_back({pair_key(*ia, *ib), MergeVal{static_cast<int32_t>(r), *im}});
  }
  merges_.build(items);

  const bool plain = prefix_.empty() && suffix_.empty();
  for (int c = 0; c < 128; ++c) {
    const char ch = static_cast<char>(c);
    ascii_ids_[c] = plain ? char_id(std::string_view(&ch, 1)) : -1;
  }
  for (int v = 0; v < 256; ++v) {
    const std::string hex = fmt::format("<0x{:02X}>", v);
    const auto id = token_to_id(hex);
    byte_fallback_ids_[v] = id ? *id : -1;
    std::string ch;
    append_utf8(ch, byte_to_cp()[v]);
    const auto bl = token_to_id(ch);
    byte_level_ids_[v] = plain && bl ? *bl : -1;
  }
  // Safe cutting needs position-independent symbols and no whole-word lookup.
  can_cut_ = plain && !ignore_merges_;
  if (can_cut_) {
    for (const auto& [tok, id] : vocab_) {
      if (tok.size() < 2 || !is_valid_utf8(tok)) continue;
      size_t i = 0;
      char32_t prev = utf8_next(tok, i);
      while (i < tok.size()) {
        const char32_t c = utf8_next(tok, i);
        bigrams_.insert((static_cast<uint64_t>(prev) << 32) | c);
        prev = c;
      }
    }
  }
}

std::optional<int32_t> Bpe::token_to_id(std::string_view s) const {
  auto it = vocab_.find(s);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* Bpe::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
  const std::string& s = id_to_token_[static_cast<size_t>(id)];
  if (s.empty()) return nullptr;
  return &s;
}

int32_t Bpe::char_id(std::string_view ch) const {
  auto it = vocab_.find(ch);
  return it == vocab_.end() ? -1 : it->second;
}

void Bpe::merge_ids(std::vector<int32_t>& ids, std::vector<uint32_t>* lens) const {
  const size_t n = ids.size();
  if (n < 2) return;
  thread_local std::vector<Sym> syms;
  thread_local std::vector<HeapItem> heap;
  syms.resize(n);
  heap.clear();
  for (size_t k = 0; k < n; ++k)
    syms[k] = Sym{ids[k], static_cast<int32_t>(k) - 1, k + 1 < n ? static_cast<int32_t>(k + 1) : -1,
                  lens ? (*lens)[k] : 1u};
  for (size_t k = 0; k + 1 < n; ++k)
    if (const MergeVal* mv = merges_.find(pair_key(ids[k], ids[k + 1])))
      heap.push_back(HeapItem{mv->rank, static_cast<int32_t>(k), mv->new_id});
  std::make_heap(heap.begin(), heap.end(), HeapCmp{});
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), HeapCmp{});
    const HeapItem top = heap.back();
    heap.pop_back();
    Sym& cur = syms[static_cast<size_t>(top.pos)];
    if (cur.len == 0 || cur.next < 0) continue;
    const size_t next_pos = static_cast<size_t>(cur.next);
    const Sym right = syms[next_pos];
    const MergeVal* mv = merges_.find(pair_key(cur.id, right.id));
    if (!mv || mv->new_id != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    syms[next_pos].len = 0;
    if (right.next >= 0) syms[static_cast<size_t>(right.next)].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeVal* p = merges_.find(pair_key(syms[static_cast<size_t>(cur.prev)].id, cur.id))) {
        heap.push_back(HeapItem{p->rank, cur.prev, p->new_id});
        std::push_heap(heap.begin(), heap.end(), HeapCmp{});
      }
    }
    if (cur.next >= 0) {
      if (const MergeVal* p = merges_.find(pair_key(cur.id, syms[static_cast<size_t>(cur.next)].id))) {
        heap.push_back(HeapItem{p->rank, top.pos, p->new_id});
        std::push_heap(heap.begin(), heap.end(), HeapCmp{});
      }
    }
  }
  size_t w = 0;
  for (int32_t k = 0; k >= 0; k = syms[static_cast<size_t>(k)].next) ids[w++] = syms[static_cast<size_t>(k)].id;
  ids.resize(w);
}

void Bpe::merge_word(std::string_view w, std::vector<int32_t>& out) const {
  if (w.empty()) return;
  if (ignore_merges_) {
    if (auto id = token_to_id(w)) {
      out.push_back(*id);
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  thread_local std::vector<uint32_t> lens;
  thread_local std::string tmp;
  ids.clear();
  lens.clear();
  int32_t unk_pending = -1;  // bytes of a pending (possibly fused) unk; -1 = none
  const auto add = [&](int32_t id, uint32_t len) {
    ids.push_back(id);
    lens.push_back(len);
  };
  size_t i = 0;
  while (i < w.size()) {
    const size_t b = i;
    const auto c0 = static_cast<uint8_t>(w[i]);
    i += c0 < 0x80 ? 1 : utf8_seq_len(c0);
    const std::string_view ch = w.substr(b, i - b);
    int32_t id;
    std::string_view piece = ch;
    if (c0 < 0x80 && ascii_ids_[c0] >= 0) {
      id = ascii_ids_[c0];
    } else {
      if (!prefix_.empty() || !suffix_.empty()) {
        tmp.clear();
        if (b != 0) tmp += prefix_;
        tmp += ch;
        if (i == w.size()) tmp += suffix_;
        piece = tmp;
      }
      id = char_id(piece);
    }
    const auto len = static_cast<uint32_t>(ch.size());
    if (id >= 0) {
      if (unk_pending >= 0) add(unk_id_, static_cast<uint32_t>(unk_pending)), unk_pending = -1;
      add(id, len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : piece) all = all && byte_fallback_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : piece) add(byte_fallback_ids_[static_cast<uint8_t>(c)], 1);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (unk_pending >= 0 && fuse_unk_) {
        unk_pending += static_cast<int32_t>(len);
      } else {
        if (unk_pending >= 0) add(unk_id_, static_cast<uint32_t>(unk_pending));
        unk_pending = static_cast<int32_t>(len);
      }
    } else if (!unk_token_.empty()) {
      fail("BPE: unk_token \"{}\" is not in the vocab", unk_token_);
    }
  }
  if (unk_pending >= 0) add(unk_id_, static_cast<uint32_t>(unk_pending));
  merge_ids(ids, &lens);
  out.insert(out.end(), ids.begin(), ids.end());
}

void Bpe::tokenize(std::string_view word, std::vector<int32_t>& out, BpeCache* cache) const {
  const auto run = [&](std::string_view w) {
    if (cache && w.size() <= kCacheMaxBytes) {
      auto it = cache->words.find(w);
      if (it != cache->words.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
      const size_t mark = out.size();
      merge_word(w, out);
      cache->words.emplace(std::string(w), std::vector<int32_t>(out.begin() + static_cast<ptrdiff_t>(mark), out.end()));
      return;
    }
    merge_word(w, out);
  };
  if (!can_cut_ || word.size() < kCutMinBytes) {
    run(word);
    return;
  }
  // Cut between characters a|b when both are vocabulary characters and no token contains "ab": no merge can
  // produce a symbol spanning the cut, so merging the parts separately gives HF's result.
  size_t start = 0, i = 0;
  char32_t prev = 0;
  bool prev_known = false;
  while (i < word.size()) {
    const size_t b = i;
    const auto c0 = static_cast<uint8_t>(word[i]);
    char32_t c;
    bool known;
    if (c0 < 0x80) {
      c = c0;
      ++i;
      known = ascii_ids_[c0] >= 0;
    } else {
      c = utf8_next(word, i);
      known = char_id(word.substr(b, i - b)) >= 0;
    }
    if (prev_known && known && b > start && !bigrams_.count((static_cast<uint64_t>(prev) << 32) | c)) {
      run(word.substr(start, b - start));
      start = b;
    }
    prev = c;
    prev_known = known;
  }
  run(word.substr(start));
}

void Bpe::tokenize_bytes(std::string_view raw, std::vector<int32_t>& out, BpeCache* cache) const {
  if (raw.empty()) return;
  if (cache && raw.size() <= kCacheMaxBytes) {
    auto it = cache->words.find(raw);
    if (it != cache->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t mark = out.size();
  bool direct = !ignore_merges_;
  for (char c : raw) direct = direct && byte_level_ids_[static_cast<uint8_t>(c)] >= 0;
  if (direct) {
    thread_local std::vector<int32_t> ids;
    ids.clear();
    for (char c : raw) ids.push_back(byte_level_ids_[static_cast<uint8_t>(c)]);
    merge_ids(ids, nullptr);
    out.insert(out.end(), ids.begin(), ids.end());
  } else {
    std::string mapped;
    for (char c : raw) append_utf8(mapped, byte_to_cp()[static_cast<uint8_t>(c)]);
    merge_word(mapped, out);
  }
  if (cache && raw.size() <= kCacheMaxBytes)
    cache->words.emplace(std::string(raw), std::vector<int32_t>(out.begin() + static_cast<ptrdiff_t>(mark), out.end()));
}

}  // namespace sala::text
