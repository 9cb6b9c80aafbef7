// sala::Error: the one exception type for bad input (a file, a tensor, a config field, a request).
// Its message names the thing that is wrong. Thrown by io/, text/, model/, runtime/; caught in apps/ and server/.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace sala {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Internal invariant (not input validation): throws with the failed expression, never compiled out.
#define SALA_CHECK(cond)                                                                   \
  do {                                                                                     \
    if (!(cond)) ::sala::fail("internal check failed: {} ({}:{})", #cond, __FILE__, __LINE__); \
  } while (0)

}  // namespace sala
