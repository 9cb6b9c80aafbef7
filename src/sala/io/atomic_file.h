// Atomic file replacement: bytes go to `<path>.tmp.<pid>`, which is fsynced and then renamed over `path`, so a reader
// sees either the old file or the complete new one, never a partial write. On any failure (or if the writer is
// destroyed without commit()) the temp file is removed and `path` is left untouched.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace sala::io {

class AtomicFile {
 public:
  // Creates (truncates) the temp file next to `path`; throws sala::Error naming it if that fails.
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // not committed: closes and removes the temp file
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::span<const std::byte> data);
  void write(std::string_view data);
  // fsync + close + rename over the target, then fsync the directory (best effort). After commit, write() is an error.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }
  uint64_t bytes_written() const { return written_; }

 private:
  void discard() noexcept;
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// One-shot helpers.
void write_file_atomic(const std::string& path, std::span<const std::byte> data);
void write_file_atomic(const std::string& path, std::string_view data);

}  // namespace sala::io
