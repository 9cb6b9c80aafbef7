// HF tokenizer.json normalizers: Sequence, Prepend, Append, Replace (string or regex), NFC/NFD/NFKC/NFKD, Lowercase,
// Strip. Each maps a valid UTF-8 string to a valid UTF-8 string (sala needs ids, not offsets, so no alignment map).
// An unknown or unsupported type is an error naming it.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace sala::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

// Builds the normalizer of `j` (tokenizer.json "normalizer"); null JSON gives nullptr. `what` names the file.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& what);

// Unicode normalization forms through utf8proc, with an ASCII/CJK fast path (exposed for tests).
enum class UnicodeForm { kNFC, kNFD, kNFKC, kNFKD };
std::string unicode_normalize(const std::string& s, UnicodeForm form);

}  // namespace sala::text
