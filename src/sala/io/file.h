// Reading files whose paths come from users (checkpoints, configs, tokenizers, text inputs). Such a path may name a
// FIFO, a directory, a device or a socket: opening a FIFO for reading blocks until a writer appears, a directory reads
// as nothing, /dev/zero never ends. Every reader therefore goes through open_regular_file, which opens with O_NONBLOCK
// (a FIFO open returns at once), fstats the descriptor it got (so no other file can be swapped in between the check
// and the read) and refuses anything but a regular file with a message naming the path and what was expected.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace sala::io {

// Opens `path` read-only (O_CLOEXEC) and returns the descriptor, which the caller must ::close; O_NONBLOCK is cleared
// again once the file is known to be regular. `what` says what the file was meant to be ("config file"). Throws
// sala::Error "{path}: not a regular file ({what}; found a FIFO)" (or a directory, a character device, a block
// device, a socket) and "{path}: cannot open {what}: {reason}" (missing file, no permission, ...).
int open_regular_file(const std::string& path, std::string_view what);

// The whole content of a regular file, opened through open_regular_file. Throws sala::Error
// "{path}: {what} is N bytes, over the limit of M bytes" when it is larger than max_bytes (also if it grows past the
// limit while being read), and names the path on read errors.
std::string read_file(const std::string& path, std::string_view what, uint64_t max_bytes);

// Throws as open_regular_file does unless `path` names a regular file (symlinks followed), without opening it: for
// paths handed to a library that opens them itself (SentencePiece's trainer).
void check_regular_file(const std::string& path, std::string_view what);

}  // namespace sala::io
