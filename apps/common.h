// Helpers shared by the CLI subcommands: id-list parsing, model resolution, byte formatting, fingerprints.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "sala/model/config.h"

namespace sala::app {

std::vector<int32_t> parse_ids(const std::string& s, const std::string& what);  // "1,2,3" or "1 2 3"
std::string join_ids(std::span<const int32_t> ids);
std::string human_bytes(double b);
uint32_t fingerprint(std::span<const float> v);  // FNV-1a of the bytes: numerics changes show at a glance
// A model given as a folder, a config.json path or a preset name.
ModelConfig resolve_config(const std::string& model, const std::string& preset);

}  // namespace sala::app
