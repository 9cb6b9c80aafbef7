// open_regular_file / read_file / check_regular_file: the one place user-given paths are opened for reading.
// A path is stat'ed before it is opened, so a device is refused without being opened (opening one can have side
// effects), then opened with O_NONBLOCK (a FIFO swapped in after the stat still cannot block the open) and the
// descriptor fstat'ed, which is the check that counts.
#include "sala/io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "sala/core/error.h"

namespace sala::io {

namespace {

const char* kind_of(mode_t m) {
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "a file of unknown type";
}

[[noreturn]] void fail_not_regular(const std::string& path, std::string_view what, mode_t m) {
  fail("{}: not a regular file ({}; found {})", path, what, kind_of(m));
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

void check_regular_file(const std::string& path, std::string_view what) {
  if (path.empty()) fail("cannot open {}: the path is empty", what);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail("{}: cannot open {}: {}", path, what, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail_not_regular(path, what, st.st_mode);
}

int open_regular_file(const std::string& path, std::string_view what) {
  check_regular_file(path, what);
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) fail("{}: cannot open {}: {}", path, what, std::strerror(errno));
  FdCloser guard{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("{}: cannot stat {}: {}", path, what, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail_not_regular(path, what, st.st_mode);
  // O_NONBLOCK means nothing for a regular file on Linux; cleared anyway so the descriptor reads as an ordinary one.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)
    fail("{}: cannot set up {}: {}", path, what, std::strerror(errno));
  guard.fd = -1;
  return fd;
}

std::string read_file(const std::string& path, std::string_view what, uint64_t max_bytes) {
  FdCloser fd{open_regular_file(path, what)};
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) fail("{}: cannot stat {}: {}", path, what, std::strerror(errno));
  const uint64_t size = uint64_t(st.st_size);
  auto too_big = [&](uint64_t n) {
    fail("{}: {} is {} bytes, over the limit of {} bytes", path, what, n, max_bytes);
  };
  if (size > max_bytes) too_big(size);

  // Read up to one byte past the expected size, so a file that grew since the fstat is noticed (and bounded).
  const uint64_t cap = max_bytes < std::numeric_limits<uint64_t>::max() ? max_bytes + 1 : max_bytes;
  std::string out(size_t(size) + 1, '\0');
  size_t got = 0;
  for (;;) {
    if (got == out.size()) {
      if (out.size() > max_bytes) too_big(out.size());
      out.resize(size_t(std::min<uint64_t>(uint64_t(out.size()) * 2, cap)));
    }
    const ssize_t n = ::read(fd.fd, out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("{}: error reading {}: {}", path, what, std::strerror(errno));
    }
    if (n == 0) break;
    got += size_t(n);
  }
  if (got > max_bytes) too_big(got);
  out.resize(got);
  return out;
}

}  // namespace sala::io
