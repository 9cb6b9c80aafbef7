// HF pre-tokenizers (see pre_tokenizers.h). Split behaviours follow tokenizers' SplitDelimiterBehavior:
// Removed drops matches, Isolated keeps them as pieces, MergedWithPrevious/Next glue each match to the neighbour,
// Contiguous merges runs of matches. ByteLevel's regex is GPT-2's; its prefix space is added per piece.
#include "sala/text/pre_tokenizers.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <utility>

#include "sala/core/error.h"
#include "sala/text/regex.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

using json = nlohmann::json;
using Ranges = std::vector<std::pair<size_t, size_t>>;

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& b, const std::string& what) {
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  fail("{}: Split behavior \"{}\" is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous",
       what, b);
}

// Splits `p` given the match ranges (sorted, non-overlapping) under `beh`; appends non-empty pieces to `out`.
void split_piece(Piece&& p, const Ranges& matches, Behavior beh, bool invert, std::vector<Piece>& out) {
  const std::string& s = p.text;
  if (s.empty()) return;
  // (begin, end, is_match) covering s.
  struct Seg { size_t b, e; bool m; };
  std::vector<Seg> segs;
  segs.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (auto [b, e] : matches) {
    if (prev != b) segs.push_back({prev, b, invert});
    segs.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != s.size()) segs.push_back({prev, s.size(), invert});
  if (segs.size() == 1 && (beh != Behavior::kRemoved || !segs[0].m)) {
    out.push_back(std::move(p));
    return;
  }
  std::vector<std::pair<size_t, size_t>> keep;
  keep.reserve(segs.size());
  switch (beh) {
    case Behavior::kRemoved:
      for (const auto& g : segs)
        if (!g.m) keep.emplace_back(g.b, g.e);
      break;
    case Behavior::kIsolated:
      for (const auto& g : segs) keep.emplace_back(g.b, g.e);
      break;
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const auto& g : segs) {
        if (g.m && !prev_match && !keep.empty()) keep.back().second = g.e;
        else keep.emplace_back(g.b, g.e);
        prev_match = g.m;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t k = segs.size(); k-- > 0;) {
        const auto& g = segs[k];
        if (g.m && !prev_match && !keep.empty()) keep.back().first = g.b;
        else keep.emplace_back(g.b, g.e);
        prev_match = g.m;
      }
      std::reverse(keep.begin(), keep.end());
      break;
    }
    case Behavior::kContiguous: {
      bool prev_match = false;
      bool first = true;
      for (const auto& g : segs) {
        if (!first && g.m == prev_match) keep.back().second = g.e;
        else keep.emplace_back(g.b, g.e);
        prev_match = g.m;
        first = false;
      }
      break;
    }
  }
  for (auto [b, e] : keep) {
    if (b == e) continue;
    out.push_back(Piece{s.substr(b, e - b), p.at_origin && b == 0});
  }
}

template <class FindFn>
void split_all(std::vector<Piece>& pieces, Behavior beh, bool invert, FindFn&& find) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 4);
  Ranges m;
  for (auto& p : pieces) {
    m.clear();
    find(p.text, m);
    split_piece(std::move(p), m, beh, invert, out);
  }
  pieces.swap(out);
}

// Ranges of code points satisfying pred, one range per code point (HF char-predicate patterns).
template <class Pred>
void char_matches(const std::string& s, Ranges& out, Pred&& pred) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t b = i;
    const char32_t c = utf8_next(s, i);
    if (pred(c)) out.emplace_back(b, i);
  }
}

bool is_ws(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_numeric(char32_t c) {  // Rust char::is_numeric: general categories Nd, Nl, No
  if (c < 0x80) return c >= '0' && c <= '9';
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

class Sequence : public PreTokenizer {
 public:
  std::vector<std::unique_ptr<PreTokenizer>> items;
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : items) p->pre_tokenize(pieces);
  }
};

class SplitRegex : public PreTokenizer {
 public:
  std::unique_ptr<Regex> re;
  Behavior beh;
  bool invert;
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, beh, invert, [&](const std::string& s, Ranges& m) { re->find_all(s, m); });
  }
};

class SplitString : public PreTokenizer {
 public:
  std::string pat;
  Behavior beh;
  bool invert;
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, beh, invert, [&](const std::string& s, Ranges& m) {
      if (pat.empty()) return;
      for (size_t p = s.find(pat); p != std::string::npos; p = s.find(pat, p + pat.size()))
        m.emplace_back(p, p + pat.size());
    });
  }
};

class Digits : public PreTokenizer {
 public:
  bool individual = false;
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, individual ? Behavior::kIsolated : Behavior::kContiguous, false,
              [](const std::string& s, Ranges& m) { char_matches(s, m, is_numeric); });
  }
};

class WhitespaceSplit : public PreTokenizer {
 public:
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    split_all(pieces, Behavior::kRemoved, false,
              [](const std::string& s, Ranges& m) { char_matches(s, m, is_ws); });
  }
};

class Metaspace : public PreTokenizer {
 public:
  std::string rep = "\xE2\x96\x81";
  enum class Scheme { kAlways, kFirst, kNever } scheme = Scheme::kAlways;
  bool split = true;
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (auto& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ') t += rep;
        else t += c;
      }
      const bool starts = t.compare(0, rep.size(), rep) == 0;
      if (!starts && (scheme == Scheme::kAlways || (scheme == Scheme::kFirst && p.at_origin))) t.insert(0, rep);
      if (!split) {
        if (!t.empty()) out.push_back(Piece{std::move(t), p.at_origin});
        continue;
      }
      Ranges m;
      for (size_t k = t.find(rep); k != std::string::npos; k = t.find(rep, k + rep.size()))
        m.emplace_back(k, k + rep.size());
      split_piece(Piece{std::move(t), p.at_origin}, m, Behavior::kMergedWithNext, false, out);
    }
    pieces.swap(out);
  }
};

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel : public PreTokenizer {
 public:
  bool add_prefix_space = true;
  std::unique_ptr<Regex> re;  // null when use_regex is false
  bool map_bytes = true;      // false when the model maps raw bytes itself (ByteLevel is the last step)
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space)
      for (auto& p : pieces)
        if (!p.text.empty() && p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (re) split_all(pieces, Behavior::kIsolated, false, [&](const std::string& s, Ranges& m) { re->find_all(s, m); });
    if (!map_bytes) return;
    const char32_t* table = byte_to_cp();
    for (auto& p : pieces) {
      std::string t;
      t.reserve(p.text.size() * 2);
      for (char c : p.text) append_utf8(t, table[static_cast<uint8_t>(c)]);
      p.text.swap(t);
    }
  }
};

std::unique_ptr<PreTokenizer> build(const json& j, const std::string& what, bool last, bool* raw_bytes) {
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    auto seq = std::make_unique<Sequence>();
    const auto& items = j.at("pretokenizers");
    for (size_t k = 0; k < items.size(); ++k)
      seq->items.push_back(build(items[k], what, last && k + 1 == items.size(), raw_bytes));
    return seq;
  }
  if (type == "Split") {
    const Behavior beh = parse_behavior(j.at("behavior").get<std::string>(), what);
    const bool invert = j.value("invert", false);
    const auto& pat = j.at("pattern");
    if (pat.contains("Regex")) {
      auto s = std::make_unique<SplitRegex>();
      s->re = std::make_unique<Regex>(pat.at("Regex").get<std::string>(), what + " pre_tokenizer Split");
      s->beh = beh;
      s->invert = invert;
      return s;
    }
    if (pat.contains("String")) {
      auto s = std::make_unique<SplitString>();
      s->pat = pat.at("String").get<std::string>();
      s->beh = beh;
      s->invert = invert;
      return s;
    }
    fail("{}: Split pattern {} has neither \"String\" nor \"Regex\"", what, pat.dump());
  }
  if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevel>();
    b->add_prefix_space = j.value("add_prefix_space", true);
    if (j.value("use_regex", true)) b->re = std::make_unique<Regex>(kGpt2Pattern, what + " pre_tokenizer ByteLevel");
    b->map_bytes = !last;
    if (last) *raw_bytes = true;
    return b;
  }
  if (type == "Metaspace") {
    auto m = std::make_unique<Metaspace>();
    m->rep = j.value("replacement", std::string("\xE2\x96\x81"));
    const std::string scheme = j.value("prepend_scheme", std::string());
    if (scheme.empty()) m->scheme = j.value("add_prefix_space", true) ? Metaspace::Scheme::kAlways : Metaspace::Scheme::kNever;
    else if (scheme == "always") m->scheme = Metaspace::Scheme::kAlways;
    else if (scheme == "first") m->scheme = Metaspace::Scheme::kFirst;
    else if (scheme == "never") m->scheme = Metaspace::Scheme::kNever;
    else fail("{}: Metaspace prepend_scheme \"{}\" is not one of always, first, never", what, scheme);
    m->split = j.value("split", true);
    return m;
  }
  if (type == "Digits") {
    auto d = std::make_unique<Digits>();
    d->individual = j.value("individual_digits", false);
    return d;
  }
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplit>();
  fail("{}: pre_tokenizer type \"{}\" is not supported by sala (supported: Sequence, Split, ByteLevel, Metaspace, "
       "Digits, WhitespaceSplit)", what, type);
}

}  // namespace

const char32_t* byte_to_cp() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    }
    return t;
  }();
  return table.data();
}

int cp_to_byte(char32_t cp) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> inv{};
    inv.fill(-1);
    const char32_t* t = byte_to_cp();
    for (int b = 0; b < 256; ++b) inv[t[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& what, bool* raw_bytes) {
  *raw_bytes = false;
  if (j.is_null()) return nullptr;
  return build(j, what, true, raw_bytes);
}

}  // namespace sala::text
