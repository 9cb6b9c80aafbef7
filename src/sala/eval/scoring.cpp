#include "sala/eval/scoring.h"

namespace sala::eval {

namespace {

std::string lower(std::string_view s) {
  std::string o(s);
  for (char& c : o)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return o;
}

int found(std::string_view pred, std::span<const std::string> refs) {
  const std::string p = lower(postprocess_prediction(pred));
  int n = 0;
  for (const std::string& r : refs) n += p.find(lower(r)) != std::string::npos;
  return n;
}

}  // namespace

std::string postprocess_prediction(std::string_view pred) {
  std::string s(pred);
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = '\n';
  const auto ws = [](char c) { return c == ' ' || c == '\n'; };
  size_t b = 0, e = s.size();
  while (b < e && ws(s[b])) ++b;
  while (e > b && ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

double string_match_all(std::string_view pred, std::span<const std::string> refs) {
  if (refs.empty()) return 0;
  return 100.0 * double(found(pred, refs)) / double(refs.size());
}

double string_match_part(std::string_view pred, std::span<const std::string> refs) {
  return found(pred, refs) > 0 ? 100.0 : 0.0;
}

double score(Metric m, std::string_view pred, std::span<const std::string> refs) {
  return m == Metric::kAll ? string_match_all(pred, refs) : string_match_part(pred, refs);
}

}  // namespace sala::eval
