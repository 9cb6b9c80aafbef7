// Named configs for `sala init`: the exact MiniCPM-SALA 9B shapes (sala-model.md §1.1), small SALA models for tests and
// benchmarks, and dense teachers. Each is a full ModelConfig, as if parsed from a config.json.
#pragma once
#include <string>
#include <vector>

#include "sala/model/config.h"

namespace sala {

std::vector<std::string> preset_names();
ModelConfig preset_config(const std::string& name);  // throws sala::Error listing the known names

}  // namespace sala
