// Shared helpers for tests: seeded random tensors, error metrics, paths to ../shared fixtures.
#pragma once
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sala/core/error.h"
#include "sala/core/rng.h"

namespace sala::test {

inline std::vector<float> randn(size_t n, uint64_t seed, float std = 1.0f) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(r.normal()) * std;
  return v;
}
// n token ids uniform in [0, vocab), deterministic per seed.
inline std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  Rng r(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int32_t(r.below(uint64_t(vocab)));
  return v;
}
inline std::vector<double> to_f64(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// max |a-b| / max(max|b|, tiny): scale-aware error against a reference.
template <class A, class B>
double rel_max_err(const A& a, const B& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / den;
}

// ../shared relative to the repo root (tests run with the repo root as working directory).
inline std::string shared_path(const std::string& rel) {
  return (std::filesystem::path(SALA_SOURCE_DIR) / ".." / "shared" / rel).lexically_normal().string();
}
#define SALA_REQUIRE_SHARED(rel)                                                               \
  do {                                                                                         \
    if (!std::filesystem::exists(::sala::test::shared_path(rel)))                              \
      GTEST_SKIP() << "needs ../shared/" << (rel) << " (absent: not a CI checkout)";           \
  } while (0)

// Runs f, expects a sala::Error, returns its message ("" and a test failure otherwise).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ::sala::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected sala::Error, none thrown";
  return "";
}

// Runs f, which must throw sala::Error whose message contains every given fragment.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> fragments) {
  try {
    f();
  } catch (const ::sala::Error& e) {
    for (auto& frag : fragments)
      EXPECT_NE(std::string(e.what()).find(frag), std::string::npos) << "message: " << e.what() << "\nmissing: " << frag;
    return;
  }
  ADD_FAILURE() << "no sala::Error thrown";
}

// A fresh directory under the system temp dir, removed with everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "tmp") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("sala-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Runs a shell command, capturing stdout and stderr together.
struct ShellRun {
  int code = -1;
  std::string out;
};
inline ShellRun shell(const std::string& cmd) {
  ShellRun r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// A whole file as bytes in a string (empty if it cannot be read), and a file (re)written with exactly `s`.
inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
inline void write_text(const std::string& path, std::string_view s) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(s.data(), std::streamsize(s.size()));
}

// The bytes of a vector, as the safetensors writer takes them.
template <class T>
std::span<const std::byte> byte_view(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

}  // namespace sala::test
