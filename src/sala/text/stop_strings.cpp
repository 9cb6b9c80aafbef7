// StopStrings: stop-string detection over streamed text. Invariant: the emitted text plus pending_ is exactly the
// text pushed so far (up to the stop); pending_ is the longest suffix that is a proper prefix of some stop string.
#include <algorithm>

#include "sala/core/error.h"
#include "sala/text/tokenizer.h"

namespace sala::text {

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

size_t StopStrings::find_in(std::string_view text) const {
  size_t best = std::string_view::npos;
  for (const auto& s : stops_) best = std::min(best, text.find(s));
  return best;
}

StopStrings::Result StopStrings::push(std::string_view piece) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  pending_ += piece;
  size_t best = std::string::npos;
  const std::string* hit = nullptr;
  for (const auto& s : stops_) {
    const size_t p = pending_.find(s);
    if (p < best) best = p, hit = &s;
  }
  if (hit) {
    r.text = pending_.substr(0, best);
    r.stopped = true;
    r.stop = *hit;
    pending_.clear();
    stopped_ = true;
    return r;
  }
  // Hold back the longest suffix of pending_ that starts some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  r.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopStrings::flush() {
  std::string r;
  r.swap(pending_);
  return r;
}

}  // namespace sala::text
