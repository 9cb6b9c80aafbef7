// Safetensors header parser/validator, mmap reader and atomic writer. All input checks live in
// parse_safetensors_header so the mmap reader, the checkpoint loader and the fuzz target share one validated path.
// Names and JSON snippets echoed into error messages are escaped and shortened: they come from untrusted files.
#include "sala/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

#include "sala/core/error.h"
#include "sala/io/atomic_file.h"

namespace sala::io {

namespace {

using json = nlohmann::json;
// For writing: keys in insertion order. Entries are appended to its vector directly (its operator[] is a linear scan).
using ordered_json = nlohmann::ordered_json;

// The deepest legitimate header is 3 levels (root -> entry -> shape list); allow slack for unknown extra fields but
// stop pathological nesting early.
constexpr int kMaxJsonDepth = 32;
constexpr size_t kMaxEchoChars = 120;

}  // namespace

// Tensor names, JSON snippets and parser messages come from untrusted files: escape them and bound their length.
std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= kMaxEchoChars) {
      out += fmt::format("... ({} bytes)", s.size());
      break;
    }
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') out += char(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

namespace {

std::string echo(std::string_view s) { return printable(s); }
std::string quote_name(std::string_view name) { return fmt::format("'{}'", printable(name)); }
std::string echo_json(const json& j) { return echo(j.dump(-1, ' ', false, json::error_handler_t::replace)); }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t read_le64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint64_t(p[i]);
  return v;
}

// Product of non-negative dims; nullopt if it does not fit int64. A zero dim makes the product 0 whatever the rest.
std::optional<int64_t> checked_numel(const std::vector<int64_t>& shape) {
  for (int64_t d : shape)
    if (d == 0) return 0;
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return std::nullopt;
  return n;
}

std::string dtype_list() {
  std::string s;
  for (DType t : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16, DType::I8,
                  DType::U64, DType::U32, DType::U16, DType::U8, DType::BOOL}) {
    if (!s.empty()) s += ", ";
    s += dtype_name(t);
  }
  return s;
}

// nlohmann parse with a depth limit and duplicate-key rejection (nlohmann would silently keep the last duplicate,
// letting two readers disagree about which tensor a name refers to). `root_keys` gets the top-level keys in file
// order (json objects are sorted maps), so tensors tied on offsets (empty ones) keep the order they were written in.
json parse_header_json(std::string_view text, std::string_view file, std::vector<std::string>& root_keys) {
  std::vector<std::set<std::string>> keys_at_depth;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    if (depth > kMaxJsonDepth) fail("{}: header JSON is nested deeper than {} levels", file, kMaxJsonDepth);
    size_t d = size_t(depth);
    if (ev == json::parse_event_t::object_start) {
      if (keys_at_depth.size() < d + 2) keys_at_depth.resize(d + 2);
      keys_at_depth[d + 1].clear();  // keys of this object are reported one level deeper
    } else if (ev == json::parse_event_t::key) {
      if (keys_at_depth.size() < d + 1) keys_at_depth.resize(d + 1);
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys_at_depth[d].insert(k).second)
        fail("{}: header JSON has duplicate key {}", file, quote_name(k));
      if (d == 1) root_keys.push_back(k);
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    fail("{}: header is not valid JSON: {}", file, echo(e.what()));
  }
}

TensorInfo parse_entry(const std::string& name, const json& v, std::string_view file, uint64_t data_size) {
  TensorInfo t;
  t.name = name;
  const std::string qn = quote_name(name);
  if (!v.is_object()) fail("{}: tensor {}: entry is not an object (found {})", file, qn, v.type_name());
  auto field = [&](const char* key) -> const json& {
    auto it = v.find(key);
    if (it == v.end()) fail("{}: tensor {}: missing \"{}\" in header entry {}", file, qn, key, echo_json(v));
    return *it;
  };

  const json& jd = field("dtype");
  if (!jd.is_string()) fail("{}: tensor {}: dtype is not a string (found {})", file, qn, echo_json(jd));
  const auto& dname = jd.get_ref<const std::string&>();
  auto dt = dtype_from_name(dname);
  if (!dt) fail("{}: tensor {}: unknown dtype {} (expected one of {})", file, qn, quote_name(dname), dtype_list());
  t.dtype = *dt;

  const json& js = field("shape");
  if (!js.is_array())
    fail("{}: tensor {}: shape is not a list of non-negative integers (found {})", file, qn, echo_json(js));
  t.shape.reserve(js.size());
  for (size_t i = 0; i < js.size(); ++i) {
    const json& e = js[i];
    if (!e.is_number_unsigned())
      fail("{}: tensor {}: shape is not a list of non-negative integers: shape[{}] is {}", file, qn, i, echo_json(e));
    uint64_t u = e.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max()))
      fail("{}: tensor {}: shape[{}] = {} does not fit int64", file, qn, i, u);
    t.shape.push_back(int64_t(u));
  }

  const json& jo = field("data_offsets");
  if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
    fail("{}: tensor {}: data_offsets must be two non-negative integers [begin, end] (found {})", file, qn,
         echo_json(jo));
  t.begin = jo[0].get<uint64_t>();
  t.end = jo[1].get<uint64_t>();
  if (t.begin > t.end) fail("{}: tensor {}: data_offsets [{}, {}] have begin > end", file, qn, t.begin, t.end);
  if (t.end > data_size)
    fail("{}: tensor {}: data_offsets [{}, {}] out of range: the data section has {} bytes", file, qn, t.begin,
         t.end, data_size);

  auto numel = checked_numel(t.shape);
  if (!numel) fail("{}: tensor {}: shape {} has more than 2^63-1 elements", file, qn, shape_str(t.shape));
  uint64_t esize = dtype_size(t.dtype), want = 0;
  if (__builtin_mul_overflow(uint64_t(*numel), esize, &want))
    fail("{}: tensor {}: wrong byte size: {} {} needs more than 2^64-1 bytes", file, qn, dtype_name(t.dtype),
         shape_str(t.shape));
  if (t.end - t.begin != want)
    fail("{}: tensor {}: wrong byte size for {} {}: data_offsets [{}, {}] give {} bytes, expected {} ({} elements x {} "
         "bytes)",
         file, qn, dtype_name(t.dtype), shape_str(t.shape), t.begin, t.end, t.end - t.begin, want, *numel, esize);
  return t;
}

}  // namespace

int64_t TensorInfo::numel() const {
  auto n = checked_numel(shape);
  if (!n)
    fail("tensor {}: shape {} has a negative dim or more than 2^63-1 elements", quote_name(name), shape_str(shape));
  return *n;
}

SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file, std::string_view file_name) {
  if (file.size() < 8)
    fail("{}: truncated safetensors file: {} bytes, expected at least 8 (the header length)", file_name, file.size());
  const uint64_t n = read_le64(file.data());
  const uint64_t after_len = file.size() - 8;
  if (n > kMaxSafetensorsHeaderBytes)
    fail("{}: header length {} exceeds the limit of {} bytes", file_name, n, kMaxSafetensorsHeaderBytes);
  if (n > after_len)
    fail("{}: truncated safetensors file: header length is {} but only {} bytes follow the length field", file_name, n,
         after_len);

  std::string_view text(reinterpret_cast<const char*>(file.data() + 8), size_t(n));
  std::vector<std::string> keys;
  json root = parse_header_json(text, file_name, keys);
  if (!root.is_object()) fail("{}: header is not a JSON object (found {})", file_name, root.type_name());
  SALA_CHECK(keys.size() == root.size());

  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = after_len - n;
  h.tensors.reserve(root.size());
  for (const std::string& key : keys) {
    const json& v = root.at(key);
    if (key == "__metadata__") {
      if (!v.is_object())
        fail("{}: __metadata__ is not an object of string values (found {})", file_name, v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail("{}: __metadata__ is not an object of string values: key {} has {}", file_name, quote_name(m.key()),
               echo_json(m.value()));
        h.metadata.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    h.tensors.push_back(parse_entry(key, v, file_name, data_size));
  }

  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  // Sorted by begin, so a non-empty range overlaps an earlier one iff it starts before the furthest end seen so far.
  // Empty ranges hold no bytes and cannot overlap anything.
  const TensorInfo* reach = nullptr;
  for (const auto& t : h.tensors) {
    if (t.begin == t.end) continue;
    if (reach && t.begin < reach->end)
      fail("{}: tensors {} [{}, {}] and {} [{}, {}] overlap in the data section", file_name, quote_name(reach->name),
           reach->begin, reach->end, quote_name(t.name), t.begin, t.end);
    if (!reach || t.end > reach->end) reach = &t;
  }
  return h;
}

std::string make_safetensors_header(std::span<const TensorInfo> tensors,
                                    const std::map<std::string, std::string>& metadata, std::string_view where) {
  ordered_json h = ordered_json::object();
  auto& entries = h.get_ref<ordered_json::object_t&>();
  entries.reserve(tensors.size() + 1);
  if (!metadata.empty()) {
    auto m = ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    entries.emplace_back("__metadata__", std::move(m));
  }
  std::set<std::string_view> seen;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail("{}: tensor name '__metadata__' is reserved", where);
    if (!seen.insert(t.name).second) fail("{}: duplicate tensor name {}", where, quote_name(t.name));
    auto e = ordered_json::object();
    e["dtype"] = std::string(dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {t.begin, t.end};
    entries.emplace_back(t.name, std::move(e));
  }
  std::string s;
  try {
    s = h.dump();
  } catch (const ordered_json::exception& e) {
    fail("{}: tensor name or metadata is not valid UTF-8: {}", where, echo(e.what()));
  }
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

// ---- SafetensorsFile ---------------------------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open safetensors file: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("{}: cannot stat safetensors file: {}", path, std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  SafetensorsFile f;
  f.path_ = path;
  f.size_ = uint64_t(st.st_size);
  if (f.size_ > 0) {  // mmap of length 0 is EINVAL; an empty file fails parsing below as truncated
    void* p = ::mmap(nullptr, size_t(f.size_), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: mmap of {} bytes failed: {}", path, f.size_, std::strerror(e));
    }
    f.base_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  f.header_ = parse_safetensors_header(std::span<const std::byte>(f.base_, size_t(f.size_)), path);
  for (size_t i = 0; i < f.header_.tensors.size(); ++i) f.by_name_.emplace(f.header_.tensors[i].name, i);
  return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      header_(std::move(o.header_)),
      by_name_(std::move(o.by_name_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    header_ = std::move(o.header_);
    by_name_ = std::move(o.by_name_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  if (base_) ::munmap(const_cast<std::byte*>(base_), size_t(size_));
  base_ = nullptr;
  size_ = 0;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &header_.tensors[it->second];
}

std::span<const std::byte> SafetensorsFile::bytes(const TensorInfo& t) const {
  // Guards against a TensorInfo from another file: the range must lie inside this file's data section.
  SALA_CHECK(t.begin <= t.end && header_.data_offset <= size_ && t.end <= size_ - header_.data_offset);
  if (t.begin == t.end) return {};
  return {base_ + header_.data_offset + t.begin, size_t(t.end - t.begin)};
}

// ---- writer --------------------------------------------------------------------------------------------------------

void validate_tensor_to_write(const TensorToWrite& t, std::string_view where) {
  if (t.name.empty()) fail("{}: tensor name is empty", where);
  if (t.name == "__metadata__") fail("{}: tensor name '__metadata__' is reserved", where);
  for (int64_t d : t.shape)
    if (d < 0) fail("{}: tensor {}: shape {} has a negative dim", where, quote_name(t.name), shape_str(t.shape));
  auto numel = checked_numel(t.shape);
  uint64_t want = 0;
  if (!numel || __builtin_mul_overflow(uint64_t(*numel), uint64_t(dtype_size(t.dtype)), &want))
    fail("{}: tensor {}: shape {} is too large", where, quote_name(t.name), shape_str(t.shape));
  if (t.bytes.size() != want)
    fail("{}: tensor {}: wrong byte size for {} {}: got {} bytes, expected {}", where, quote_name(t.name),
         dtype_name(t.dtype), shape_str(t.shape), t.bytes.size(), want);
}

void write_safetensors(const std::string& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  uint64_t off = 0;
  for (const auto& t : tensors) {
    validate_tensor_to_write(t, path);
    infos.push_back(TensorInfo{t.name, t.dtype, t.shape, off, off + t.bytes.size()});
    off += t.bytes.size();
  }
  const std::string header = make_safetensors_header(infos, metadata, path);  // also rejects duplicate names
  if (header.size() > kMaxSafetensorsHeaderBytes)
    fail("{}: header would be {} bytes, over the limit of {}", path, header.size(), kMaxSafetensorsHeaderBytes);

  std::byte len[8];
  for (int i = 0; i < 8; ++i) len[i] = std::byte((uint64_t(header.size()) >> (8 * i)) & 0xff);
  AtomicFile f(path);
  f.write(std::span<const std::byte>(len, 8));
  f.write(header);
  for (const auto& t : tensors) f.write(t.bytes);
  f.commit();
}

}  // namespace sala::io
