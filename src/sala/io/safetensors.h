// Safetensors files: header parsing/validation, a read-only mmap reader, and an atomic writer.
// Layout: u64 little-endian header length N, N bytes of JSON header, then the data section. Every TensorInfo returned
// by the parser has been validated: known dtype, non-negative shape, begin <= end <= data section size,
// end - begin == numel * dtype size (no overflow), and the non-empty byte ranges tile the data section exactly (no
// overlap, no hole, no trailing bytes; empty ranges may sit anywhere in it). At most kMaxSafetensorsEntries entries.
// Tensors are listed in data order (by begin, then end offset; ties keep header order), which for files from
// write_safetensors is the order they were given in.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sala/core/dtype.h"

namespace sala::io {

// Upper bound on the JSON header, as in the reference safetensors implementation.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
// Upper bound on the header's entries (tensors plus __metadata__ keys). Real files hold far fewer (~450 tensors in the
// 9B model, tens of thousands in the largest MoE shards); the bound keeps the time and memory a hostile header costs
// small (within the byte limit a header could otherwise list ~2M entries).
inline constexpr size_t kMaxSafetensorsEntries = 250'000;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets within the data section
  int64_t numel() const;        // product of shape (1 for a scalar); throws sala::Error on int64 overflow
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // = 8 + header length
};

// Escaped (non-printable bytes and backslash as \xNN), length-bounded rendering of untrusted text for error messages.
std::string printable(std::string_view s);

// Parses and validates the header of a whole file image. file_name is only used in error messages.
SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file, std::string_view file_name);

// The JSON header (without the 8-byte length prefix) for the given tensors/offsets and metadata, padded with spaces to
// a multiple of 8 bytes so the data section starts 8-aligned. Keys: "__metadata__" first (omitted when empty), then
// the tensors in the given order. Throws sala::Error (prefixed with `where`) for duplicate or reserved names and for
// names/values that are not valid UTF-8. Offsets are written as given (not checked against any data).
std::string make_safetensors_header(std::span<const TensorInfo> tensors,
                                    const std::map<std::string, std::string>& metadata,
                                    std::string_view where = "safetensors header");

// Read-only mmap of one file; movable, not copyable. Spans returned by bytes() live as long as the object.
// open() refuses a FIFO, directory or device at once (io::open_regular_file), naming the path.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  SafetensorsFile(SafetensorsFile&& o) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& o) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  uint64_t data_offset() const { return header_.data_offset; }
  uint64_t file_size() const { return size_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  // The tensor's bytes (possibly not aligned to its dtype: safetensors does not pad between tensors).
  std::span<const std::byte> bytes(const TensorInfo& t) const;

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;
  std::string path_;
  const std::byte* base_ = nullptr;  // nullptr only for an empty file, which never parses
  uint64_t size_ = 0;
  SafetensorsHeader header_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
};

// Checks a tensor to be written (non-empty name other than "__metadata__", non-negative shape, byte count ==
// numel * dtype size). `where` names the destination in error messages.
void validate_tensor_to_write(const TensorToWrite& t, std::string_view where);

// Writes one .safetensors file atomically; tensors keep the given order (no padding between them); header padded with
// spaces to a multiple of 8. Throws sala::Error (and leaves `path` untouched) on duplicate names or bad sizes.
void write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sala::io
