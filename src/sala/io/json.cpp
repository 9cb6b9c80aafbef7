#include "sala/io/json.h"

#include <string>
#include <unordered_set>
#include <vector>

#include "sala/core/error.h"
#include "sala/io/safetensors.h"

namespace sala::io {

namespace {

using json = nlohmann::json;

// Tracks the keys of every open object; containers are pushed and popped so nested objects get their own sets.
struct DuplicateKeys : json::json_sax_t {
  struct Level {
    bool object = false;
    std::string key;  // the key this container hangs under in its parent (for the message)
    std::unordered_set<std::string> keys;
  };
  std::vector<Level> stack;
  std::string pending_key, duplicate, where;

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return push(true); }
  bool start_array(std::size_t) override { return push(false); }
  bool end_object() override { return pop(); }
  bool end_array() override { return pop(); }
  bool key(string_t& k) override {
    if (!stack.back().keys.insert(k).second) {
      duplicate = k;
      for (size_t i = 1; i < stack.size(); ++i) where += (where.empty() ? "" : ".") + stack[i].key;
      return false;  // stops the parse
    }
    pending_key = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  bool push(bool object) {
    stack.push_back({object, stack.empty() || !stack.back().object ? std::string("[]") : pending_key, {}});
    return true;
  }
  bool pop() {
    stack.pop_back();
    return true;
  }
};

}  // namespace

json parse_json(std::string_view text, std::string_view file, std::string_view what) {
  DuplicateKeys d;
  json::sax_parse(text.begin(), text.end(), &d);
  if (!d.duplicate.empty())
    fail("{}: {} has the key '{}' twice{}", file, what, printable(d.duplicate),
         d.where.empty() ? "" : fmt::format(" (in '{}')", printable(d.where)));
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail("{}: {} is not valid JSON: {}", file, what, printable(e.what()));
  }
}

}  // namespace sala::io
