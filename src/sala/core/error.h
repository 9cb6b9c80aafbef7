// Exceptions, one per way a command can fail (the CLI maps them to exit codes, README "Errors"):
//  - sala::Error: bad input (a file, a tensor, a config field, a request). Its message names the thing that is wrong.
//    Thrown by io/, text/, model/, runtime/; caught in apps/ and server/.
//  - sala::UsageError: an option value that is wrong in itself (not a number, out of its range, conflicting options).
//  - sala::InternalError: a broken invariant inside sala (a bug), from SALA_CHECK.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace sala {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class UsageError : public Error {
 public:
  using Error::Error;
};

class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

template <class... Args>
[[noreturn]] void fail_usage(fmt::format_string<Args...> f, Args&&... args) {
  throw UsageError(fmt::format(f, std::forward<Args>(args)...));
}

// Internal invariant (not input validation): throws with the failed expression, never compiled out.
#define SALA_CHECK(cond)                                                                                    \
  do {                                                                                                      \
    if (!(cond))                                                                                            \
      throw ::sala::InternalError(fmt::format("internal check failed: {} ({}:{})", #cond, __FILE__, __LINE__)); \
  } while (0)

}  // namespace sala
