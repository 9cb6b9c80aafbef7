// HF tokenizer.json decoders: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace, BPEDecoder.
// A decoder maps the list of token strings to a list of strings that are concatenated (HF decode_chain semantics).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sala::text {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& what);

}  // namespace sala::text
