// StreamDecoder: incremental detokenization. Decodes the window ids[prefix, end) and the already-emitted window
// ids[prefix, read); the difference is new text. It is emitted only when the window's text does not end in U+FFFD
// (an incomplete byte sequence from byte-fallback or byte-level tokens decodes to U+FFFD until completed).
// Decoding a window rather than single tokens keeps decoder context (e.g. Strip of the leading space, Fuse).
// Known limit: HF's ByteFallback replaces a whole invalid byte run by one U+FFFD per byte, so if a model emits an
// invalid byte right after a completed multi-byte character, the stream (character already shown, then U+FFFD)
// differs from decode() of all ids (every byte of the run replaced). Valid output streams exactly.
#include "sala/text/tokenizer.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

bool ends_with_replacement(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacementUtf8) == 0;
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::span<const int32_t> all(ids_);
  const std::string before = tok_.decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string now = tok_.decode(all.subspan(prefix_), skip_special_);
  if (ends_with_replacement(now)) return {};
  std::string out;
  if (now.size() > before.size() && now.compare(0, before.size(), before) == 0) {
    out = now.substr(before.size());
  } else {
    // A byte token that makes an already-emitted byte run invalid (decode() would then replace the whole run):
    // emitted text cannot be recalled, so the new tokens are decoded on their own.
    out = tok_.decode(all.subspan(read_), skip_special_);
    if (out.empty()) return {};
  }
  prefix_ = read_;
  read_ = ids_.size();
  // Keep the window short: once text is emitted, older ids are no longer needed as context.
  return out;
}

std::string StreamDecoder::finish() {
  const std::span<const int32_t> all(ids_);
  const std::string before = tok_.decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string now = tok_.decode(all.subspan(prefix_), skip_special_);
  std::string out;
  if (now.size() > before.size() && now.compare(0, before.size(), before) == 0) out = now.substr(before.size());
  else if (read_ < ids_.size()) out = tok_.decode(all.subspan(read_), skip_special_);
  prefix_ = read_ = ids_.size();
  return out;
}

void StreamDecoder::reset() {
  ids_.clear();
  prefix_ = read_ = 0;
}

}  // namespace sala::text
