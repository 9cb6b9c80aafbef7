// HF decoders (see decoders.h). Exactness notes: ByteFallback turns a run of <0xXX> tokens into its UTF-8 text, or
// into one U+FFFD per byte when the run is not valid UTF-8; ByteLevel maps characters back to bytes (a token with a
// character outside the byte table contributes its own UTF-8 bytes) and repairs the whole result lossily; Strip
// removes up to `start`/`stop` copies of its character from each token's ends.
#include "sala/text/decoders.h"

#include <nlohmann/json.hpp>

#include "sala/core/error.h"
#include "sala/text/pre_tokenizers.h"
#include "sala/text/regex.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

using json = nlohmann::json;

class Sequence : public Decoder {
 public:
  std::vector<std::unique_ptr<Decoder>> items;
  void decode_chain(std::vector<std::string>& t) const override {
    for (const auto& d : items) d->decode_chain(t);
  }
};

class ReplaceString : public Decoder {
 public:
  std::string from, to;
  void decode_chain(std::vector<std::string>& t) const override {
    for (auto& s : t) replace_all(s, from, to);
  }
};

class ReplaceRegex : public Decoder {
 public:
  std::unique_ptr<Regex> re;
  std::string to;
  void decode_chain(std::vector<std::string>& t) const override {
    for (auto& s : t) re->replace_all(s, to);
  }
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xAB>" -> 0xAB, else -1 (HF: length 6, "<0x" prefix, ">" suffix, two hex digits of either case).
int byte_token(const std::string& s) {
  if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
  const int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class ByteFallback : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& t) const override {
    std::vector<std::string> out;
    out.reserve(t.size());
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (is_valid_utf8(bytes)) {
        out.push_back(bytes);
      } else {
        for (size_t k = 0; k < bytes.size(); ++k) out.emplace_back(kReplacementUtf8);
      }
      bytes.clear();
    };
    for (auto& s : t) {
      const int b = byte_token(s);
      if (b >= 0) {
        bytes += static_cast<char>(b);
        continue;
      }
      flush();
      out.push_back(std::move(s));
    }
    flush();
    t.swap(out);
  }
};

class Fuse : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& t) const override {
    std::string all;
    for (const auto& s : t) all += s;
    t.assign(1, std::move(all));
  }
};

class Strip : public Decoder {
 public:
  std::string content;  // one character
  size_t start = 0, stop = 0;
  void decode_chain(std::vector<std::string>& t) const override {
    for (auto& s : t) {
      size_t b = 0, e = s.size();
      for (size_t k = 0; k < start && e - b >= content.size() && s.compare(b, content.size(), content) == 0; ++k)
        b += content.size();
      for (size_t k = 0; k < stop && e - b >= content.size() && s.compare(e - content.size(), content.size(), content) == 0; ++k)
        e -= content.size();
      s = s.substr(b, e - b);
    }
  }
};

class ByteLevel : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& t) const override {
    std::string bytes;
    for (const auto& s : t) {
      const size_t mark = bytes.size();
      bool ok = true;
      for (size_t i = 0; i < s.size();) {
        const int b = cp_to_byte(utf8_next(s, i));
        if (b < 0) {
          ok = false;
          break;
        }
        bytes += static_cast<char>(b);
      }
      if (!ok) {
        bytes.resize(mark);
        bytes += s;
      }
    }
    t.assign(1, to_valid_utf8(bytes));
  }
};

class Metaspace : public Decoder {
 public:
  std::string rep = "\xE2\x96\x81";
  bool strip_first = true;  // prepend_scheme != never
  void decode_chain(std::vector<std::string>& t) const override {
    // HF drops every replacement character of the first token (not just a leading one) unless prepend_scheme is
    // "never"; later tokens get spaces.
    for (size_t i = 0; i < t.size(); ++i) replace_all(t[i], rep, i == 0 && strip_first ? "" : " ");
  }
};

class BpeSuffix : public Decoder {
 public:
  std::string suffix;
  void decode_chain(std::vector<std::string>& t) const override {
    for (size_t i = 0; i < t.size(); ++i) {
      replace_all(t[i], suffix, i + 1 == t.size() ? "" : " ");
    }
  }
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& what) {
  if (j.is_null()) return nullptr;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    auto seq = std::make_unique<Sequence>();
    for (const auto& d : j.at("decoders"))
      if (auto p = make_decoder(d, what)) seq->items.push_back(std::move(p));
    return seq;
  }
  if (type == "Replace") {
    const auto& pat = j.at("pattern");
    if (pat.contains("Regex")) {
      auto r = std::make_unique<ReplaceRegex>();
      r->re = std::make_unique<Regex>(pat.at("Regex").get<std::string>(), what + " decoder Replace");
      r->to = j.at("content").get<std::string>();
      return r;
    }
    auto r = std::make_unique<ReplaceString>();
    r->from = pat.at("String").get<std::string>();
    r->to = j.at("content").get<std::string>();
    return r;
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip") {
    auto s = std::make_unique<Strip>();
    s->content = j.at("content").get<std::string>();
    s->start = j.value("start", size_t{0});
    s->stop = j.value("stop", size_t{0});
    return s;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Metaspace") {
    auto m = std::make_unique<Metaspace>();
    m->rep = j.value("replacement", std::string("\xE2\x96\x81"));
    const std::string scheme = j.value("prepend_scheme", std::string());
    m->strip_first = scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
    return m;
  }
  if (type == "BPEDecoder") {
    auto b = std::make_unique<BpeSuffix>();
    b->suffix = j.value("suffix", std::string("</w>"));
    return b;
  }
  fail("{}: decoder type \"{}\" is not supported by sala (supported: Sequence, Replace, ByteFallback, Fuse, Strip, "
       "ByteLevel, Metaspace, BPEDecoder)", what, type);
}

}  // namespace sala::text
