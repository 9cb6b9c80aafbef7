// libFuzzer target for sala::io::parse_safetensors_header. On arbitrary bytes the parser must either throw sala::Error
// or return a header that keeps its promises (offsets inside the data section, byte sizes matching dtype x shape, the
// non-empty ranges tiling the data section: no overlap, hole or trailing bytes) and that survives a round trip through make_safetensors_header. Anything else (a crash, a sanitizer
// report, another exception type, a broken promise) is a finding.
// With SALA_FUZZ_SEED_DIR set, LLVMFuzzerInitialize first writes the seed corpus there: a valid file produced by
// write_safetensors plus a few mutations of it (scripts/fuzz.sh relies on this).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sala/core/error.h"
#include "sala/io/safetensors.h"

namespace {

using sala::DType;
using namespace sala::io;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors_header: %s\n", what);
  __builtin_trap();
}

std::vector<std::byte> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

void write_all(const std::filesystem::path& path, const std::vector<std::byte>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

std::vector<std::byte> with_header(const std::string& header, size_t data_bytes) {
  std::vector<std::byte> out(8 + header.size() + data_bytes, std::byte{0});
  for (int i = 0; i < 8; ++i) out[size_t(i)] = std::byte((uint64_t(header.size()) >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void write_seeds(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::vector<uint16_t> w(6, 0x3F80);
  std::vector<float> b = {1, 2, 3};
  std::vector<int32_t> s = {7};
  std::vector<TensorToWrite> ts = {
      {"layers.0.weight", DType::BF16, {2, 3}, std::as_bytes(std::span<const uint16_t>(w))},
      {"layers.0.bias", DType::F32, {3}, std::as_bytes(std::span<const float>(b))},
      {"empty", DType::F16, {0, 4}, {}},
      {"step", DType::I32, {}, std::as_bytes(std::span<const int32_t>(s))},
  };
  const auto valid_path = (dir / "valid.safetensors").string();
  write_safetensors(valid_path, ts, {{"format", "pt"}});
  const std::vector<std::byte> valid = read_all(valid_path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint64_t(valid[size_t(i)]);
  const size_t header_end = size_t(8 + n);
  std::string header(reinterpret_cast<const char*>(valid.data() + 8), size_t(n));

  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string h = header;
    if (auto p = h.find(from); p != std::string::npos) h.replace(p, from.size(), to);
    auto img = with_header(h, valid.size() - header_end);
    std::memcpy(img.data() + 8 + h.size(), valid.data() + header_end, valid.size() - header_end);
    return img;
  };
  write_all(dir / "truncated_header", std::vector<std::byte>(valid.begin(), valid.begin() + std::ptrdiff_t(8 + n / 2)));
  write_all(dir / "truncated_data", std::vector<std::byte>(valid.begin(), valid.end() - 5));
  auto bad_len = valid;
  bad_len[7] = std::byte{0x7f};
  write_all(dir / "bad_length", bad_len);
  write_all(dir / "bad_dtype", replaced("\"BF16\"", "\"BX16\""));
  write_all(dir / "bad_shape", replaced("[2,3]", "[2,-3]"));
  write_all(dir / "wrong_size", replaced("[2,3]", "[3,3]"));
  write_all(dir / "overlap", replaced("[12,24]", "[10,22]"));
  write_all(dir / "bad_metadata", replaced("\"pt\"", "[1]"));
  write_all(dir / "empty_header", with_header("{}      ", 0));
  {  // bias and step moved 4 bytes later, data grown by 4: a hole at [12, 16)
    std::string h = header;
    for (auto [from, to] : {std::pair{"[12,24]", "[16,28]"}, std::pair{"[24,28]", "[28,32]"}})
      if (auto p = h.find(from); p != std::string::npos) h.replace(p, std::strlen(from), to);
    auto img = with_header(h, valid.size() - header_end + 4);
    std::memcpy(img.data() + 8 + h.size(), valid.data() + header_end, valid.size() - header_end);
    write_all(dir / "hole", img);
  }
  auto trailing = valid;
  trailing.push_back(std::byte{0});
  write_all(dir / "trailing_byte", trailing);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("SALA_FUZZ_SEED_DIR")) {
    try {
      write_seeds(dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_safetensors_header: writing seeds to %s failed: %s\n", dir, e.what());
      return 1;
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  SafetensorsHeader h;
  try {
    h = parse_safetensors_header(in, "fuzz-input");
  } catch (const sala::Error&) {
    return 0;  // rejected cleanly
  }

  if (h.data_offset < 8 || h.data_offset > size) finding("data_offset outside the input");
  const uint64_t data_size = size - h.data_offset;
  uint64_t reach = 0;
  for (const auto& t : h.tensors) {
    if (t.begin > t.end || t.end > data_size) finding("accepted offsets outside the data section");
    if (t.end - t.begin != uint64_t(t.numel()) * sala::dtype_size(t.dtype)) finding("accepted a wrong byte size");
    if (t.begin != t.end) {
      if (t.begin < reach) finding("accepted overlapping tensors");
      if (t.begin > reach) finding("accepted a hole in the data section");
      reach = t.end;
    }
  }
  if (reach != data_size) finding("accepted trailing bytes after the last tensor");

  // Round trip: the writer's header for what was parsed must parse back to the same tensors and metadata.
  try {
    std::string hdr = make_safetensors_header(h.tensors, h.metadata);
    if (hdr.size() % 8 != 0) finding("header not padded to 8 bytes");
    auto img = with_header(hdr, size_t(data_size));
    auto h2 = parse_safetensors_header(img, "round-trip");
    if (h2.metadata != h.metadata || h2.tensors.size() != h.tensors.size()) finding("round trip changed the header");
    for (size_t i = 0; i < h.tensors.size(); ++i) {
      const auto &a = h.tensors[i], &b = h2.tensors[i];
      if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.begin != b.begin || a.end != b.end)
        finding("round trip changed a tensor");
    }
  } catch (const sala::Error& e) {
    std::fprintf(stderr, "round trip threw: %s\n", e.what());
    finding("round trip of an accepted header threw");
  }
  return 0;
}
