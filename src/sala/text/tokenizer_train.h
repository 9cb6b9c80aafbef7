// Training a tokenizer for sala's own models: libsentencepiece's BPE trainer (byte fallback, identity
// normalization, spaces kept) writes tokenizer.model; sala then writes an equivalent HF tokenizer.json
// (SentencePiece-style pipeline, merges derived from the piece scores) and a tokenizer_config.json (ChatML).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sala::text {

struct TokenizerTrainOptions {
  std::vector<std::string> inputs;  // text files, one sentence/paragraph per line
  std::string out_dir;              // receives tokenizer.model, tokenizer.json, tokenizer_config.json
  int vocab_size = 8000;
  double character_coverage = 0.9995;
  int threads = 2;
  int64_t max_sentences = 0;        // 0 = use all lines (SentencePiece input_sentence_size)
  int max_sentence_length = 16384;  // bytes; longer lines are skipped by the trainer
  bool hard_vocab_limit = false;    // true fails unless the corpus yields exactly vocab_size pieces
  std::vector<std::string> control_tokens = {"<|im_start|>", "<|im_end|>"};  // ids 3.. (after <unk> <s> </s>)
};

void train_tokenizer(const TokenizerTrainOptions& opt);

// Writes the HF tokenizer.json equivalent of a SentencePiece BPE model (byte_fallback, identity normalizer,
// add_dummy_prefix): same vocabulary and ids; merges = every split of a piece into two pieces, ranked by the piece's
// score (SentencePiece merges the highest-scoring pair first), then by the ids of the halves.
void write_tokenizer_json_from_spm(const std::string& model_path, const std::string& json_path);

}  // namespace sala::text
