// AtomicFile: POSIX write-temp / fsync / rename. Partial writes and EINTR are retried; every failure names the file.
#include "sala/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "sala/core/error.h"

namespace sala::io {

namespace {
std::string errno_text() { return std::strerror(errno); }

// Makes the rename durable; some filesystems refuse fsync on directories, which is not worth failing over.
void fsync_parent_dir(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  (void)::fsync(dfd);
  ::close(dfd);
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty()) fail("atomic write: empty file path");
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create temp file {}: {}", path_, tmp_, errno_text());
}

AtomicFile::~AtomicFile() {
  if (!committed_) discard();
}

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::write(std::span<const std::byte> data) {
  if (committed_ || fd_ < 0) fail("{}: write after commit or failure", path_);
  const std::byte* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    // Large single writes may be split by the kernel (Linux caps one write at ~2 GiB); loop until done.
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string why = errno_text();
      discard();
      fail("{}: write to {} failed after {} bytes: {}", path_, tmp_, written_, why);
    }
    p += n;
    left -= size_t(n);
    written_ += uint64_t(n);
  }
}

void AtomicFile::write(std::string_view data) {
  write(std::as_bytes(std::span<const char>(data.data(), data.size())));
}

void AtomicFile::commit() {
  if (committed_ || fd_ < 0) fail("{}: commit after commit or failure", path_);
  if (::fsync(fd_) != 0) {
    std::string why = errno_text();
    discard();
    fail("{}: fsync of {} failed: {}", path_, tmp_, why);
  }
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    std::string why = errno_text();
    discard();
    fail("{}: close of {} failed: {}", path_, tmp_, why);
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::string why = errno_text();
    discard();
    fail("{}: rename from {} failed: {}", path_, tmp_, why);
  }
  committed_ = true;
  fsync_parent_dir(path_);
}

void write_file_atomic(const std::string& path, std::span<const std::byte> data) {
  AtomicFile f(path);
  f.write(data);
  f.commit();
}

void write_file_atomic(const std::string& path, std::string_view data) {
  AtomicFile f(path);
  f.write(data);
  f.commit();
}

}  // namespace sala::io
