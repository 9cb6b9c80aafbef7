// HfTokenizer: the Hugging Face tokenizer.json pipeline (added tokens -> normalizer -> pre-tokenizer -> BPE ->
// post-processor; decoder for decode). Matches HF `tokenizers` id for id on the supported components.
#pragma once
#include <memory>
#include <string>

#include "sala/text/tokenizer.h"

namespace sala::text {

// Loads `json_path`; `cfg` comes from the side files of its folder (may be empty).
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& json_path, TokenizerConfig cfg);

}  // namespace sala::text
