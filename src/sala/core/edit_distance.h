// Levenshtein distance, for "did you mean" suggestions (an unknown command, task or option value).
#pragma once
#include <cstddef>
#include <string_view>

namespace sala {

size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace sala
