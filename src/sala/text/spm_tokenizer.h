// SentencePiece tokenizer.model support through libsentencepiece (used when a folder has no tokenizer.json).
#pragma once
#include <memory>
#include <string>

#include "sala/text/tokenizer.h"

namespace sala::text {

std::unique_ptr<Tokenizer> load_spm_tokenizer(const std::string& model_path, TokenizerConfig cfg);

}  // namespace sala::text
