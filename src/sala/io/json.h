// JSON files from users (config.json, the checkpoint index): nlohmann silently keeps the last of two equal keys, so a
// config with "vocab_size" twice or an index that maps a tensor twice would load with no word about it. parse_json
// rejects duplicate keys at any depth (a linear SAX pass) and names the file on any syntax error.
#pragma once
#include <nlohmann/json.hpp>
#include <string_view>

namespace sala::io {

// Throws sala::Error "{file}: {what} is not valid JSON: ..." or "{file}: {what} has the key 'k' twice (in 'a.b')".
nlohmann::json parse_json(std::string_view text, std::string_view file, std::string_view what);

}  // namespace sala::io
