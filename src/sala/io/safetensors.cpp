// Safetensors header parser/validator, mmap reader and atomic writer. All input checks live in
// parse_safetensors_header so the mmap reader, the checkpoint loader and the fuzz target share one validated path.
// Names and JSON snippets echoed into error messages are escaped and shortened: they come from untrusted files.
#include "sala/io/safetensors.h"

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
#include <unordered_set>
#include <utility>

#include "sala/core/error.h"
#include "sala/io/atomic_file.h"
#include "sala/io/file.h"

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

TensorInfo parse_entry(std::string name, const json& v, std::string_view file, uint64_t data_size) {
  TensorInfo t;
  t.name = std::move(name);
  auto qn = [&] { return quote_name(t.name); };  // only on the error path: entries are many
  if (!v.is_object()) fail("{}: tensor {}: entry is not an object (found {})", file, qn(), v.type_name());
  auto field = [&](const char* key) -> const json& {
    auto it = v.find(key);
    if (it == v.end()) fail("{}: tensor {}: missing \"{}\" in header entry {}", file, qn(), key, echo_json(v));
    return *it;
  };

  const json& jd = field("dtype");
  if (!jd.is_string()) fail("{}: tensor {}: dtype is not a string (found {})", file, qn(), echo_json(jd));
  const auto& dname = jd.get_ref<const std::string&>();
  auto dt = dtype_from_name(dname);
  if (!dt) fail("{}: tensor {}: unknown dtype {} (expected one of {})", file, qn(), quote_name(dname), dtype_list());
  t.dtype = *dt;

  const json& js = field("shape");
  if (!js.is_array())
    fail("{}: tensor {}: shape is not a list of non-negative integers (found {})", file, qn(), echo_json(js));
  t.shape.reserve(js.size());
  for (size_t i = 0; i < js.size(); ++i) {
    const json& e = js[i];
    if (!e.is_number_unsigned())
      fail("{}: tensor {}: shape is not a list of non-negative integers: shape[{}] is {}", file, qn(), i, echo_json(e));
    uint64_t u = e.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max()))
      fail("{}: tensor {}: shape[{}] = {} does not fit int64", file, qn(), i, u);
    t.shape.push_back(int64_t(u));
  }

  const json& jo = field("data_offsets");
  if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
    fail("{}: tensor {}: data_offsets must be two non-negative integers [begin, end] (found {})", file, qn(),
         echo_json(jo));
  t.begin = jo[0].get<uint64_t>();
  t.end = jo[1].get<uint64_t>();
  if (t.begin > t.end) fail("{}: tensor {}: data_offsets [{}, {}] have begin > end", file, qn(), t.begin, t.end);
  if (t.end > data_size)
    fail("{}: tensor {}: data_offsets [{}, {}] out of range: the data section has {} bytes", file, qn(), t.begin,
         t.end, data_size);

  auto numel = checked_numel(t.shape);
  if (!numel) fail("{}: tensor {}: shape {} has more than 2^63-1 elements", file, qn(), shape_str(t.shape));
  uint64_t esize = dtype_size(t.dtype), want = 0;
  if (__builtin_mul_overflow(uint64_t(*numel), esize, &want))
    fail("{}: tensor {}: wrong byte size: {} {} needs more than 2^64-1 bytes", file, qn(), dtype_name(t.dtype),
         shape_str(t.shape));
  if (t.end - t.begin != want)
    fail("{}: tensor {}: wrong byte size for {} {}: data_offsets [{}, {}] give {} bytes, expected {} ({} elements x {} "
         "bytes)",
         file, qn(), dtype_name(t.dtype), shape_str(t.shape), t.begin, t.end, t.end - t.begin, want, *numel, esize);
  return t;
}

void read_metadata(const json& v, std::string_view file, std::map<std::string, std::string>& out) {
  if (!v.is_object()) fail("{}: __metadata__ is not an object of string values (found {})", file, v.type_name());
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string())
      fail("{}: __metadata__ is not an object of string values: key {} has {}", file, quote_name(m.key()),
           echo_json(m.value()));
    out.emplace(m.key(), m.value().get<std::string>());
  }
}

// Streaming header parser (nlohmann's SAX interface), linear in the header size. Each top-level value (a tensor entry
// or __metadata__) is built as a small json DOM and validated by parse_entry / read_metadata when it ends, so tensors
// come out in header order (kept by the stable sort for ties) and the whole header never exists as one DOM.
// (nlohmann's callback parser, json::parse with a callback, is quadratic here: after each nested object ends it scans
// the parent for discarded members, i.e. the whole root object once per tensor entry.)
// Also enforced: the depth limit, kMaxSafetensorsEntries, and no duplicate key in any object (nlohmann would keep the
// last duplicate, letting two readers disagree about which tensor a name refers to). Errors in the JSON syntax, depth,
// duplicates and the entry limit are thrown at once; errors in entry contents are held until the whole text has parsed,
// so a header that is not valid JSON is reported as such first.
class HeaderSax final : public nlohmann::json_sax<json> {
 public:
  // header_bytes: the JSON text's size, to size the tables up front (an entry takes at least ~50 bytes).
  HeaderSax(std::string_view file, uint64_t data_size, size_t header_bytes, SafetensorsHeader& out)
      : file_(file), data_size_(data_size), out_(out) {
    const size_t guess = std::min(header_bytes / 64, kMaxSafetensorsEntries);
    root_keys_.reserve(guess);
    out_.tensors.reserve(guess);
  }

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool string(string_t& v) override { return value(json(std::move(v))); }
  bool binary(binary_t& v) override { return value(json::binary(std::move(v))); }  // not produced by JSON text
  bool start_object(std::size_t) override { return open(json::value_t::object); }
  bool start_array(std::size_t) override { return open(json::value_t::array); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    if (!root_is_object_) return true;
    if (depth_ == 1) {
      if (!root_keys_.insert(k).second) fail("{}: header JSON has duplicate key {}", file_, quote_name(k));
      count_entry();
      key_ = k;
      return true;
    }
    auto [it, inserted] = stack_.back()->get_ref<json::object_t&>().try_emplace(k);
    if (!inserted) fail("{}: header JSON has duplicate key {}", file_, quote_name(k));
    if (depth_ == 2 && key_ == "__metadata__") count_entry();
    slot_ = &it->second;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    fail("{}: header is not valid JSON: {}", file_, echo(e.what()));
  }

  // After a complete parse: the first error held back, or a top level that is not an object.
  void finish() {
    if (first_error_) throw *first_error_;
    SALA_CHECK(root_type_ != nullptr);
    if (!root_is_object_) fail("{}: header is not a JSON object (found {})", file_, root_type_);
  }

 private:
  void count_entry() {
    if (++entries_ > kMaxSafetensorsEntries)
      fail("{}: header has more than {} entries (tensors and __metadata__ keys)", file_, kMaxSafetensorsEntries);
  }

  bool open(json::value_t t) {
    if (++depth_ > kMaxJsonDepth) fail("{}: header JSON is nested deeper than {} levels", file_, kMaxJsonDepth);
    if (depth_ == 1) {
      root_is_object_ = t == json::value_t::object;
      root_type_ = root_is_object_ ? "object" : "array";
    } else if (root_is_object_) {
      if (depth_ == 2) {
        cur_ = json(t);
        stack_.assign(1, &cur_);
      } else {
        stack_.push_back(&insert(json(t)));
      }
    }
    return true;
  }

  bool close() {
    const int d = depth_--;
    if (d > 1 && root_is_object_) {
      stack_.pop_back();
      if (d == 2) end_value();
    }
    return true;
  }

  bool value(json&& v) {
    if (depth_ == 0) {
      root_type_ = v.type_name();  // a scalar header, refused in finish()
    } else if (root_is_object_) {
      if (depth_ == 1) {
        cur_ = std::move(v);
        end_value();
      } else {
        insert(std::move(v));
      }
    }  // else inside a top-level array: only syntax and depth matter
    return true;
  }

  // Places v in the innermost open container of cur_ and returns where it went (stable: a container's parent does
  // not grow while the container is open).
  json& insert(json&& v) {
    json* top = stack_.back();
    if (top->is_array()) {
      auto& a = top->get_ref<json::array_t&>();
      a.push_back(std::move(v));
      return a.back();
    }
    *slot_ = std::move(v);
    return *slot_;
  }

  // A top-level value is complete.
  void end_value() {
    if (!first_error_) {
      try {
        if (key_ == "__metadata__") read_metadata(cur_, file_, out_.metadata);
        else out_.tensors.push_back(parse_entry(std::move(key_), cur_, file_, data_size_));
      } catch (const Error& e) {
        first_error_ = e;
      }
    }
    cur_ = json();
  }

  std::string_view file_;
  uint64_t data_size_;
  SafetensorsHeader& out_;
  int depth_ = 0;                     // containers open
  bool root_is_object_ = false;
  const char* root_type_ = nullptr;   // type of the top-level value, once seen
  std::unordered_set<std::string> root_keys_;
  size_t entries_ = 0;
  std::string key_;                   // the current top-level key
  json cur_;                          // the top-level value being built
  std::vector<json*> stack_;          // open containers of cur_, innermost last
  json* slot_ = nullptr;              // the value slot after the last key of the innermost open object
  std::optional<Error> first_error_;
};

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
  SafetensorsHeader h;
  h.data_offset = 8 + n;
  const uint64_t data_size = after_len - n;
  {
    HeaderSax sax(file_name, data_size, text.size(), h);
    SALA_CHECK(json::sax_parse(text.begin(), text.end(), &sax));  // the handler throws instead of returning false
    sax.finish();
  }

  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  // The non-empty ranges must tile the data section exactly: no overlap, no hole, no trailing bytes (the reference
  // safetensors library's rule; bytes no tensor owns mean a damaged or tampered file). Sorted by begin, a non-empty
  // range overlaps an earlier one iff it starts before the end of the previous one, and leaves a hole iff it starts
  // after it. Empty ranges hold no bytes and may sit anywhere in [0, data size] (the reference also requires them on a
  // boundary between tensors; files from write_safetensors satisfy both).
  const TensorInfo* prev = nullptr;  // the last non-empty tensor so far
  for (const auto& t : h.tensors) {
    if (t.begin == t.end) continue;
    const uint64_t at = prev ? prev->end : 0;
    if (t.begin < at)
      fail("{}: tensors {} [{}, {}] and {} [{}, {}] overlap in the data section", file_name, quote_name(prev->name),
           prev->begin, prev->end, quote_name(t.name), t.begin, t.end);
    if (t.begin > at) {
      if (prev)
        fail("{}: data section has a hole at bytes [{}, {}) (between tensors {} and {})", file_name, at, t.begin,
             quote_name(prev->name), quote_name(t.name));
      fail("{}: data section has a hole at bytes [0, {}) (before the first tensor, {})", file_name, t.begin,
           quote_name(t.name));
    }
    prev = &t;
  }
  const uint64_t used = prev ? prev->end : 0;
  if (used < data_size) {
    if (prev)
      fail("{}: {} trailing bytes after the last tensor's data (tensor {} ends at byte {} of a {}-byte data section)",
           file_name, data_size - used, quote_name(prev->name), used, data_size);
    fail("{}: {} trailing bytes after the last tensor's data (no tensor has data)", file_name, data_size);
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
  const int fd = open_regular_file(path, "safetensors file");  // refuses FIFOs, directories, devices without blocking
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("{}: cannot stat safetensors file: {}", path, std::strerror(e));
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
  const size_t entries = tensors.size() + (metadata.empty() ? 0 : 1 + metadata.size());
  if (entries > kMaxSafetensorsEntries)
    fail("{}: {} entries (tensors and __metadata__ keys), over the limit of {} that readers accept", path, entries,
         kMaxSafetensorsEntries);
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
