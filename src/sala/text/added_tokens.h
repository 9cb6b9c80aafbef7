// Added/special tokens: matched in the text before the model runs (leftmost-longest, like HF's Aho-Corasick split),
// never merged by BPE. Honours lstrip/rstrip (absorb neighbouring whitespace) and single_word (only between
// non-word characters).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sala/text/tokenizer.h"

namespace sala::text {

using AddedToken = AddedTokenSpec;

struct Segment {
  size_t begin, end;  // byte range in the scanned string
  int32_t id;         // token id, or -1 for plain text
};

class AddedTokenMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens);  // tokens must outlive nothing: contents are copied
  bool empty() const { return tokens_.empty(); }
  // Splits s into text and token segments covering it (text segments may be empty only if s is empty).
  void split(std::string_view s, std::vector<Segment>& out) const;

 private:
  struct Tok {
    int32_t id;
    bool lstrip, rstrip, single_word;
  };
  std::vector<Tok> tokens_;
  // Byte trie: (node << 8 | byte) -> child node; terminal[node] = index into tokens_ or -1.
  std::unordered_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> terminal_;
  bool first_byte_[256] = {};
};

}  // namespace sala::text
