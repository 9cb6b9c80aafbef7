// sala::text::Tokenizer: the public tokenizer interface (encode/decode, special ids, chat formatting, streaming).
// Two implementations behind one loader: Hugging Face tokenizer.json (hf_tokenizer.cpp, exact to HF `tokenizers`)
// and SentencePiece tokenizer.model (spm_tokenizer.cpp, through libsentencepiece) when a folder has no tokenizer.json.
// Invariants: encode() accepts any bytes (invalid UTF-8 is first repaired to U+FFFD per maximal ill-formed subpart);
// ids are in [0, vocab_size()); encode/decode are const and thread-safe (no shared mutable state).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sala::text {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ... (copied verbatim into the prompt)
  std::string content;
};

// An added/special token declared by a tokenizer file or a side file (HF AddedToken fields).
struct AddedTokenSpec {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// Chat prompt formats sala renders natively (no Jinja engine): selected from tokenizer_config.json's chat_template.
enum class ChatFormat { kNone, kChatML };

// Side-file settings of a model folder (tokenizer_config.json, special_tokens_map.json, config.json, ...).
struct TokenizerConfig {
  std::optional<bool> add_bos_token;  // tokenizer_config.json; unset = keep the tokenizer's own post-processor
  std::optional<bool> add_eos_token;
  std::string bos_token, eos_token, unk_token, pad_token;
  std::string tokenizer_class;
  std::string chat_template;  // raw Jinja text (informative; sala renders `chat_format`)
  ChatFormat chat_format = ChatFormat::kNone;
  std::vector<int32_t> extra_eos_ids;  // config.json / generation_config.json eos_token_id
  std::vector<AddedTokenSpec> added_tokens;  // tokenizer_config.json added_tokens_decoder + added_tokens.json
};

class Tokenizer {
 public:
  // Loads `path`: a folder (tokenizer.json preferred, else tokenizer.model; side files read when present) or a
  // tokenizer.json / *.model file directly. Throws sala::Error naming the file and the unsupported component.
  static std::unique_ptr<Tokenizer> load(const std::string& model_dir_or_file);

  virtual ~Tokenizer() = default;

  // Text -> ids. add_special_tokens applies the post-processor (BOS etc.), as HF's add_special_tokens does.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const = 0;
  // Encodes several texts on `threads` threads (0 = OpenMP default). Same result as calling encode on each.
  std::vector<std::vector<int32_t>> encode_batch(std::span<const std::string_view> texts,
                                                 bool add_special_tokens = true, int threads = 0) const;
  // Ids -> text. Unknown ids are dropped (as HF does); skip_special drops special tokens.
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special = true) const = 0;

  virtual int32_t vocab_size() const = 0;  // 1 + the highest id (added tokens included)
  virtual std::optional<std::string> id_to_token(int32_t id) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  bool is_special(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[static_cast<size_t>(id)];
  }
  virtual std::string_view kind() const = 0;  // "tokenizer.json" or "sentencepiece"

  int32_t bos_id() const { return bos_id_; }  // -1 when the tokenizer has none
  int32_t unk_id() const { return unk_id_; }
  // Ids that end generation: the eos token, config.json/generation_config.json eos_token_id, the chat end token.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  const TokenizerConfig& config() const { return config_; }

  // Chat: renders messages in the model's format (ChatML for MiniCPM). Throws if the format is not recognised.
  std::string apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // Rendered chat prompt -> ids, without post-processor tokens (as transformers' apply_chat_template(tokenize=True)).
  std::vector<int32_t> encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // Strings that end generation in chat mode (e.g. "<|im_end|>"), for use with StopStrings.
  std::vector<std::string> stop_strings() const;

 protected:
  // Called by implementations once the vocabulary is known: resolves bos/eos/unk ids and the chat format.
  void finish_setup(TokenizerConfig cfg);
  TokenizerConfig config_;
  std::vector<bool> special_;  // by id: a special token (filled by the implementation)
  int32_t bos_id_ = -1, unk_id_ = -1;
  std::vector<int32_t> eos_ids_;
};

// Reads tokenizer_config.json, special_tokens_map.json, config.json and generation_config.json of `dir` (each
// optional). Used by both implementations.
TokenizerConfig read_tokenizer_config(const std::string& dir);

// Incremental detokenization for streaming generation: push ids one at a time, get the newly completed text.
// Text is emitted only when it ends in complete UTF-8 (byte-fallback and byte-level pieces are held back until their
// character is complete); the concatenation of all pushes plus finish() equals decode(all ids, skip_special).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true) : tok_(tok), skip_special_(skip_special) {}
  std::string push(int32_t id);
  std::string finish();  // flushes held-back text (an incomplete character becomes U+FFFD, as decode gives)
  void reset();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0, read_ = 0;  // ids_[prefix_, read_) were already emitted; decoding starts at prefix_
};

// Stop-string detection on streamed text: holds back a suffix that could be the start of a stop string, so the
// caller never prints text that a later piece turns into a stop. After a stop, `text` holds what precedes it.
class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);
  struct Result {
    std::string text;  // safe to emit now
    bool stopped = false;
    std::string stop;  // the stop string hit, if stopped
  };
  Result push(std::string_view piece);
  std::string flush();  // the held-back tail (call at end of generation when no stop was hit)
  // One-shot check on complete text: position of the earliest stop string, or npos.
  size_t find_in(std::string_view text) const;

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace sala::text
