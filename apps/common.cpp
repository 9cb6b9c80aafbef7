#include "common.h"

#include <cstring>
#include <filesystem>

#include "sala/core/error.h"
#include "sala/model/presets.h"

namespace sala::app {

std::vector<int32_t> parse_ids(const std::string& s, const std::string& what) {
  std::vector<int32_t> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ',' || s[i] == ' ' || s[i] == '\n' || s[i] == '\t')) ++i;
    if (i >= s.size()) break;
    size_t j = i;
    if (s[j] == '-') ++j;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || (j < s.size() && s[j] != ',' && s[j] != ' ' && s[j] != '\n' && s[j] != '\t'))
      fail("{}: '{}' is not a list of integer token ids (e.g. 1,2,3)", what, s);
    long long v = std::stoll(s.substr(i, j - i));
    if (v < INT32_MIN || v > INT32_MAX) fail("{}: token id {} is out of range", what, v);
    out.push_back(int32_t(v));
    i = j;
  }
  return out;
}

std::string join_ids(std::span<const int32_t> ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) b /= 1024, ++i;
  return fmt::format("{:.2f} {}", b, u[i]);
}

uint32_t fingerprint(std::span<const float> v) {
  uint32_t h = 2166136261u;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * 4; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

ModelConfig resolve_config(const std::string& model, const std::string& preset) {
  if (!preset.empty()) return preset_config(preset);
  if (model.empty()) fail("give a model folder, a config.json or --preset NAME");
  return load_config(model);
}

}  // namespace sala::app
