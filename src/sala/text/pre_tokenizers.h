// HF tokenizer.json pre-tokenizers: Sequence, Split (string or regex, all five delimiter behaviours, invert),
// ByteLevel (prefix space, GPT-2 regex, byte->unicode map), Metaspace, Digits, WhitespaceSplit.
// A pre-tokenizer turns a list of pieces into a finer list; empty pieces are dropped (as HF does).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sala::text {

struct Piece {
  std::string text;
  bool at_origin = false;  // starts at byte 0 of the original input (HF offsets_original().0 == 0)
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// Builds the pre-tokenizer of `j` (null -> nullptr). If the last step is ByteLevel, it leaves the pieces as raw bytes
// and sets *raw_bytes so the model maps bytes itself (saves a string transform per piece); else *raw_bytes = false.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& what, bool* raw_bytes);

// GPT-2 byte <-> unicode-character table used by ByteLevel (byte b -> code point byte_to_cp()[b]).
const char32_t* byte_to_cp();
// Code point -> byte, or -1 if the code point is not in the table.
int cp_to_byte(char32_t cp);

}  // namespace sala::text
