// HF normalizers (see normalizers.h). Semantics follow the HF `tokenizers` crate: Prepend only touches non-empty
// strings; Replace replaces every non-overlapping occurrence left to right; Lowercase maps each character with the
// full (context-free) Unicode lowercase mapping; Strip trims Unicode whitespace.
#include "sala/text/normalizers.h"

#include <utf8proc.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "sala/core/error.h"
#include "sala/text/regex.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

using json = nlohmann::json;

// Code points that the normalization form leaves unchanged and that never take part in a canonical composition, for
// the fast path (conservative ranges; everything else goes through utf8proc):
//   NFC  : U+0000..U+02FF (no singleton decomposition, ccc 0, never a second element), CJK symbols U+3000..U+3029 and U+3030..U+303F,
//          Hiragana U+3041..U+3096, Katakana U+30A1..U+30FA, CJK ideographs U+3400..U+4DBF, U+4E00..U+9FFF.
//   NFKC : ASCII, kana and CJK ideographs (Latin-1 and U+3000 have compatibility mappings).
//   NFD/NFKD : ASCII and CJK ideographs only (precomposed Latin and voiced kana decompose).
bool stable_cp(char32_t c, UnicodeForm form) {
  if (c < 0x80) return true;
  if ((c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF)) return true;
  if (form == UnicodeForm::kNFD || form == UnicodeForm::kNFKD) return false;
  if ((c >= 0x3041 && c <= 0x3096) || (c >= 0x30A1 && c <= 0x30FA)) return true;
  if (form == UnicodeForm::kNFKC) return false;
  // (U+302A..U+302F are combining tone marks: excluded.)
  return c < 0x300 || (c >= 0x3000 && c <= 0x3029) || (c >= 0x3030 && c <= 0x303F);
}

class Sequence : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> items;
  void normalize(std::string& s) const override {
    for (const auto& n : items) n->normalize(s);
  }
};

class Prepend : public Normalizer {
 public:
  std::string text;
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, text);
  }
};

class Append : public Normalizer {
 public:
  std::string text;
  void normalize(std::string& s) const override {
    if (!s.empty()) s += text;
  }
};

class ReplaceString : public Normalizer {
 public:
  std::string from, to;
  void normalize(std::string& s) const override { replace_all(s, from, to); }
};

class ReplaceRegex : public Normalizer {
 public:
  std::unique_ptr<Regex> re;
  std::string to;
  void normalize(std::string& s) const override { re->replace_all(s, to); }
};

class Unicode : public Normalizer {
 public:
  UnicodeForm form;
  void normalize(std::string& s) const override { s = unicode_normalize(s, form); }
};

class Lowercase : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (static_cast<uint8_t>(c) < 0x80) {
        out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
        ++i;
        continue;
      }
      const char32_t cp = utf8_next(s, i);
      if (cp == 0x130) {  // the one unconditional multi-char lowercase mapping (SpecialCasing.txt)
        out += "i\xCC\x87";
        continue;
      }
      append_utf8(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    }
    s.swap(out);
  }
};

bool is_ws(char32_t c) {
  // Rust char::is_whitespace (Unicode White_Space).
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

class Strip : public Normalizer {
 public:
  bool left = true, right = true;
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left) {
      while (b < e) {
        size_t j = b;
        if (!is_ws(utf8_next(s, j))) break;
        b = j;
      }
    }
    if (right) {
      while (e > b) {
        size_t k = e - 1;
        while (k > b && (static_cast<uint8_t>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_ws(utf8_next(s, j))) break;
        e = k;
      }
    }
    s = s.substr(b, e - b);
  }
};

std::string pattern_of(const json& p, bool* is_regex, const std::string& what) {
  if (p.contains("String")) {
    *is_regex = false;
    return p.at("String").get<std::string>();
  }
  if (p.contains("Regex")) {
    *is_regex = true;
    return p.at("Regex").get<std::string>();
  }
  fail("{}: pattern {} has neither \"String\" nor \"Regex\"", what, p.dump());
}

}  // namespace

std::string unicode_normalize(const std::string& s, UnicodeForm form) {
  bool stable = true;
  for (size_t i = 0; i < s.size() && stable;) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    stable = stable_cp(utf8_next(s, i), form);
  }
  if (stable) return s;
  int opts = UTF8PROC_STABLE;
  switch (form) {
    case UnicodeForm::kNFC: opts |= UTF8PROC_COMPOSE; break;
    case UnicodeForm::kNFD: opts |= UTF8PROC_DECOMPOSE; break;
    case UnicodeForm::kNFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case UnicodeForm::kNFKD: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                              static_cast<utf8proc_ssize_t>(s.size()), &out, static_cast<utf8proc_option_t>(opts));
  if (n < 0) fail("unicode normalization failed: {}", utf8proc_errmsg(n));
  std::string r(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& what) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    auto seq = std::make_unique<Sequence>();
    for (const auto& n : j.at("normalizers"))
      if (auto p = make_normalizer(n, what)) seq->items.push_back(std::move(p));
    return seq;
  }
  if (type == "Prepend") {
    auto p = std::make_unique<Prepend>();
    p->text = j.at("prepend").get<std::string>();
    return p;
  }
  if (type == "Append") {
    auto p = std::make_unique<Append>();
    p->text = j.at("append").get<std::string>();
    return p;
  }
  if (type == "Replace") {
    bool is_regex = false;
    std::string pat = pattern_of(j.at("pattern"), &is_regex, what);
    if (is_regex) {
      auto r = std::make_unique<ReplaceRegex>();
      r->re = std::make_unique<Regex>(pat, what + " normalizer Replace");
      r->to = j.at("content").get<std::string>();
      return r;
    }
    auto r = std::make_unique<ReplaceString>();
    r->from = std::move(pat);
    r->to = j.at("content").get<std::string>();
    return r;
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    auto u = std::make_unique<Unicode>();
    u->form = type == "NFC" ? UnicodeForm::kNFC : type == "NFD" ? UnicodeForm::kNFD
            : type == "NFKC" ? UnicodeForm::kNFKC : UnicodeForm::kNFKD;
    return u;
  }
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip") {
    auto s = std::make_unique<Strip>();
    s->left = j.value("strip_left", true);
    s->right = j.value("strip_right", true);
    return s;
  }
  fail("{}: normalizer type \"{}\" is not supported by sala (supported: Sequence, Prepend, Append, Replace, NFC, NFD, "
       "NFKC, NFKD, Lowercase, Strip)", what, type);
}

}  // namespace sala::text
