// Chat formatting. sala has no Jinja engine: it recognises the model's template family from tokenizer_config.json
// and renders it natively. ChatML (MiniCPM, Qwen): "<|im_start|>{role}\n{content}<|im_end|>\n" per message, then
// "<|im_start|>assistant\n" as the generation prompt. Message text (including <think>...</think>) is copied verbatim.
#include <string>
#include <vector>

#include "sala/core/error.h"
#include "sala/text/tokenizer.h"

namespace sala::text {

std::string Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  if (config_.chat_format != ChatFormat::kChatML)
    fail("{} tokenizer: chat template not recognised (sala renders ChatML only: tokenizer_config.json chat_template "
         "must use <|im_start|>/<|im_end|>, or the vocabulary must contain both tokens)", kind());
  std::string out;
  for (const auto& m : messages) {
    if (m.role.empty()) fail("chat message with empty role");
    out += "<|im_start|>";
    out += m.role;
    out += '\n';
    out += m.content;
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::vector<int32_t> Tokenizer::encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return encode(apply_chat_template(messages, add_generation_prompt), /*add_special_tokens=*/false);
}

std::vector<std::string> Tokenizer::stop_strings() const {
  if (config_.chat_format == ChatFormat::kChatML) return {"<|im_end|>"};
  return {};
}

}  // namespace sala::text
