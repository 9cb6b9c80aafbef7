// UTF-8 helpers for the tokenizer: validated decoding, lossy repair and incomplete-tail detection.
// Invariant: to_valid_utf8 replaces each maximal ill-formed subpart (Unicode Table 3-7) by one U+FFFD, exactly as
// Rust's String::from_utf8_lossy, Python's errors="replace" and WHATWG TextDecoder do, so a byte string given to sala
// and the same bytes decoded lossily by a reference library denote the same text.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sala::text {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Length of a well-formed sequence starting at s[i], or 0 if s[i..] starts an ill-formed one. On 0, *bad_len is the
// length of the maximal ill-formed subpart (>= 1) that one U+FFFD replaces.
inline size_t utf8_valid_len(std::string_view s, size_t i, size_t* bad_len = nullptr) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  if (c < 0x80) return 1;
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
  else if (c == 0xED) need = 2, hi = 0x9F;
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) need = 3, hi = 0x8F;
  else {
    if (bad_len) *bad_len = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    const bool ok = i + k < s.size() && b(i + k) >= (k == 1 ? lo : 0x80) && b(i + k) <= (k == 1 ? hi : 0xBF);
    if (!ok) {
      if (bad_len) *bad_len = k;
      return 0;
    }
  }
  return need + 1;
}

// Decodes one code point of a known-valid UTF-8 string at s[i]; advances i.
inline char32_t utf8_next(std::string_view s, size_t& i) {
  const auto c = static_cast<uint8_t>(s[i]);
  if (c < 0x80) return s[i++] & 0x7F;
  const auto cont = [&](size_t k) { return static_cast<char32_t>(static_cast<uint8_t>(s[i + k]) & 0x3F); };
  char32_t cp;
  if (c < 0xE0) cp = (char32_t(c & 0x1F) << 6) | cont(1), i += 2;
  else if (c < 0xF0) cp = (char32_t(c & 0x0F) << 12) | (cont(1) << 6) | cont(2), i += 3;
  else cp = (char32_t(c & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3), i += 4;
  return cp;
}

// Byte length of the UTF-8 sequence whose lead byte is c (1 for ASCII and for stray bytes).
inline size_t utf8_seq_len(uint8_t c) { return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const size_t n = utf8_valid_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Lossy repair (see the file comment); returns s unchanged when it is valid.
inline std::string to_valid_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 0;
    const size_t n = utf8_valid_len(s, i, &bad);
    if (n) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out += kReplacementUtf8;
      i += bad;
    }
  }
  return out;
}

// Number of trailing bytes of s that form an incomplete (but so far well-formed) UTF-8 sequence: the bytes a
// streaming consumer must hold back until the next chunk completes them. 0 when s ends on a boundary.
inline size_t utf8_incomplete_tail(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<uint8_t>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    if (c < 0xC2 || c > 0xF4) return 0;  // not a lead byte of any well-formed sequence
    const size_t need = utf8_seq_len(c);
    if (need <= back) return 0;
    // Check the partial sequence is a well-formed prefix (else it will never complete: do not hold it).
    std::string probe(s.substr(n - back));
    size_t bad = 0;
    utf8_valid_len(probe, 0, &bad);
    return bad == back ? back : 0;
  }
  return 0;
}

// Replaces every occurrence of `from` (non-empty) in s by `to`, left to right, non-overlapping (HF Replace).
inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  size_t p = s.find(from);
  if (p == std::string::npos) return;
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t last = 0;
  for (; p != std::string::npos; p = s.find(from, last)) {
    out.append(s, last, p - last);
    out += to;
    last = p + from.size();
  }
  out.append(s, last);
  s.swap(out);
}

}  // namespace sala::text
