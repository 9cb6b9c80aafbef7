// Import of llama2.c checkpoints (legacy and version-1 exports) into sala's Hugging Face layout, and llama2.c's
// tokenizer.bin vocabulary for decoding their ids. Format: shared/fixtures/stories260K/SOURCE.md.
// llama2.c's RoPE rotates adjacent pairs (2i, 2i+1); Hugging Face rotates halves (i, i+D/2). The import permutes the
// rows of wq and wk within each head (adjacent pair -> half split) so the HF-convention forward computes the same.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "sala/model/config.h"
#include "sala/model/weights.h"

namespace sala {

struct Llama2cModel {
  ModelConfig config;
  Weights weights;
};

Llama2cModel read_llama2c(const std::string& path);

// Row permutation that turns llama2.c's interleaved RoPE pairs into HF's halves: out row (h, j) <- in row
// (h, 2j) for j < D/2 and (h, 2(j - D/2) + 1) for j >= D/2. w: (heads * D, cols).
std::vector<float> permute_rope_rows(const std::vector<float>& w, int64_t heads, int64_t D, int64_t cols);

class Llama2cVocab {
 public:
  static Llama2cVocab load(const std::string& path);
  int64_t size() const { return int64_t(pieces_.size()); }
  const std::string& piece(int64_t id) const;
  // llama2.c's decode: after BOS (1) a leading space of the piece is dropped; "<0xXX>" pieces are raw bytes.
  std::string decode_piece(int32_t prev, int32_t id) const;
  std::string decode(const std::vector<int32_t>& ids, int32_t first_prev = 1) const;

 private:
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
};

}  // namespace sala
