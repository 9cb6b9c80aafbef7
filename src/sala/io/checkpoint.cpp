// Checkpoint: opens a single safetensors file or a sharded Hugging Face index and maps tensor names to shards;
// write_checkpoint produces the same layout transformers' save_pretrained does (file names, index keys, total_size).
#include "sala/io/checkpoint.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "sala/core/error.h"
#include "sala/io/atomic_file.h"
#include "sala/io/json.h"
#include "sala/io/file.h"

namespace sala::io {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr uint64_t kMaxIndexBytes = 100'000'000;

std::string read_small_file(const std::string& path) { return read_file(path, "index file", kMaxIndexBytes); }

// A weight_map value must name a file next to the index: no absolute paths, no "..", so a checkpoint cannot make us
// open files outside its folder.
void check_shard_name(const std::string& index_path, const std::string& tensor, const std::string& shard) {
  fs::path p(shard);
  bool bad = shard.empty() || p.is_absolute();
  for (const auto& part : p)
    if (part == "..") bad = true;
  if (bad)
    fail("{}: weight_map entry for tensor '{}' names shard '{}', expected a file name inside the checkpoint folder",
         index_path, printable(tensor), printable(shard));
}

bool is_shard_file_name(const std::string& s) {
  // model-NNNNN-of-NNNNN.safetensors
  static const std::string prefix = "model-", mid = "-of-", suffix = ".safetensors";
  if (s.size() != prefix.size() + 5 + mid.size() + 5 + suffix.size()) return false;
  auto digits = [&](size_t pos) {
    for (size_t i = pos; i < pos + 5; ++i)
      if (s[i] < '0' || s[i] > '9') return false;
    return true;
  };
  return s.compare(0, prefix.size(), prefix) == 0 && digits(6) && s.compare(11, mid.size(), mid) == 0 &&
         digits(15) && s.compare(20, suffix.size(), suffix) == 0;
}

void remove_if_exists(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);  // false without error when absent
  if (ec) fail("{}: cannot remove stale checkpoint file: {}", p.string(), ec.message());
}

}  // namespace

std::string shard_file_name(size_t index1, size_t count) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", index1, count);
}

Checkpoint Checkpoint::open(const std::string& path) {
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) fail("{}: checkpoint path does not exist", path);

  Checkpoint c;
  c.path_ = path;
  std::string single, index;
  if (fs::is_directory(st)) {
    fs::path s = fs::path(path) / kSafeWeightsName, i = fs::path(path) / kSafeWeightsIndexName;
    if (fs::exists(s)) single = s.string();
    else if (fs::exists(i)) index = i.string();
    else fail("{}: checkpoint folder has neither {} nor {}", path, kSafeWeightsName, kSafeWeightsIndexName);
  } else if (fs::path(path).extension() == ".json") {
    index = path;
  } else {
    single = path;
  }

  if (!single.empty()) {
    c.files_.push_back(SafetensorsFile::open(single));
    const auto& f = c.files_.back();
    for (size_t t = 0; t < f.tensors().size(); ++t) c.tensors_.emplace(f.tensors()[t].name, Loc{0, t});
    c.metadata_ = f.metadata();
    return c;
  }

  c.sharded_ = true;
  const json root = parse_json(read_small_file(index), index, "index");  // also refuses a tensor mapped twice
  if (!root.is_object()) fail("{}: index is not a JSON object (found {})", index, root.type_name());
  auto wm = root.find("weight_map");
  if (wm == root.end()) fail("{}: index has no \"weight_map\"", index);
  if (!wm->is_object()) fail("{}: index \"weight_map\" is not an object (found {})", index, wm->type_name());
  if (auto md = root.find("metadata"); md != root.end()) {
    if (!md->is_object()) fail("{}: index \"metadata\" is not an object (found {})", index, md->type_name());
    for (auto it = md->begin(); it != md->end(); ++it)
      c.metadata_[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
  }

  const fs::path dir = fs::path(index).parent_path();
  std::map<std::string, size_t> file_index;  // shard name -> index into files_
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const std::string& tensor = it.key();
    if (!it.value().is_string())
      fail("{}: weight_map entry for tensor '{}' is not a file name (found {})", index, printable(tensor),
           printable(it.value().dump(-1, ' ', false, json::error_handler_t::replace)));
    const auto& shard = it.value().get_ref<const std::string&>();
    check_shard_name(index, tensor, shard);
    auto [fi, inserted] = file_index.emplace(shard, c.files_.size());
    if (inserted) {
      std::string shard_path = (dir / shard).string();
      if (!fs::exists(fs::status(shard_path, ec)))  // anything else that is there, SafetensorsFile::open refuses
        fail("{}: missing shard {} (listed for tensor '{}'): file does not exist", index, shard_path,
             printable(tensor));
      c.files_.push_back(SafetensorsFile::open(shard_path));
    }
    const SafetensorsFile& f = c.files_[fi->second];
    const TensorInfo* t = f.find(tensor);
    if (!t)
      fail("{}: tensor '{}' is listed in the index but absent from its shard {}", index, printable(tensor), f.path());
    c.tensors_.emplace(tensor, Loc{fi->second, size_t(t - f.tensors().data())});
  }
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, l] : tensors_) out.push_back(name);  // std::map: already sorted
  return out;
}

const Checkpoint::Loc& Checkpoint::loc(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: no tensor '{}' in checkpoint", path_, printable(name));
  return it->second;
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return nullptr;
  return &files_[it->second.file].tensors()[it->second.tensor];
}

const std::string& Checkpoint::file_of(std::string_view name) const { return files_[loc(name).file].path(); }

std::span<const std::byte> Checkpoint::bytes(std::string_view name) const {
  const Loc& l = loc(name);
  return files_[l.file].bytes(files_[l.file].tensors()[l.tensor]);
}

std::vector<float> Checkpoint::read_f32(std::string_view name) const {
  const Loc& l = loc(name);
  const SafetensorsFile& f = files_[l.file];
  const TensorInfo& t = f.tensors()[l.tensor];
  if (!dtype_is_float(t.dtype))
    fail("{}: tensor '{}' has dtype {}, expected a float dtype (F32, F16, BF16 or F64) to read as f32", f.path(),
         printable(name), dtype_name(t.dtype));
  auto src = f.bytes(t);
  const size_t n = size_t(t.numel());
  std::vector<float> out(n);
  if (n == 0) return out;
  // safetensors does not pad between tensors, so data may be misaligned for its dtype; copy to aligned storage then.
  if (reinterpret_cast<uintptr_t>(src.data()) % dtype_size(t.dtype) == 0) {
    convert_to_f32(out.data(), src.data(), t.dtype, n);
  } else {
    std::vector<uint64_t> aligned((src.size() + 7) / 8);
    std::memcpy(aligned.data(), src.data(), src.size());
    convert_to_f32(out.data(), aligned.data(), t.dtype, n);
  }
  return out;
}

namespace {

// Bytes a described tensor will take; the same checks validate_tensor_to_write makes, without the bytes.
uint64_t planned_bytes(const TensorToWrite& t, std::string_view where) {
  if (t.name.empty()) fail("{}: tensor name is empty", where);
  if (t.name == "__metadata__") fail("{}: tensor name '__metadata__' is reserved", where);
  uint64_t n = dtype_size(t.dtype);
  for (int64_t d : t.shape)
    if (d < 0 || __builtin_mul_overflow(n, uint64_t(d), &n))
      fail("{}: tensor '{}': shape has a negative dim or is too large", where, printable(t.name));
  return n;
}

// Free bytes where dir is (or would be) created: the nearest existing ancestor's filesystem.
uint64_t free_bytes_at(const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec);
  while (!p.empty() && !fs::exists(p, ec)) p = p.parent_path();
  auto sp = fs::space(p.empty() ? fs::path(".") : p, ec);
  return ec ? UINT64_MAX : uint64_t(sp.available);
}

std::string gib(uint64_t b) { return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30)); }

}  // namespace

void write_checkpoint(const std::string& dir, std::span<const TensorToWrite> specs, const ProduceTensor& produce,
                      uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata,
                      const WriteProgress& progress) {
  // Validate everything before touching the folder, so bad input leaves an existing checkpoint intact.
  if (dir.empty()) fail("checkpoint folder name is empty");
  if (max_shard_bytes == 0) fail("{}: the largest shard size must be positive", dir);
  std::set<std::string_view> seen;
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const auto& t : specs) {
    sizes.push_back(planned_bytes(t, dir));
    if (!seen.insert(t.name).second) fail("{}: duplicate tensor name '{}'", dir, printable(t.name));
    if (__builtin_add_overflow(total, sizes.back(), &total)) fail("{}: checkpoint is too large", dir);
  }
  std::error_code ec;
  const fs::path d(dir);
  if (fs::exists(d, ec) && !fs::is_directory(d, ec)) fail("{}: exists and is not a folder", dir);

  // Shards in the given order, a new one when the next tensor would overflow the current (never an empty shard).
  std::vector<std::pair<size_t, size_t>> groups;  // [begin, end) into specs
  if (total <= max_shard_bytes) {
    groups.emplace_back(0, specs.size());
  } else {
    size_t start = 0;
    uint64_t cur = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (i > start && cur + sizes[i] > max_shard_bytes) {
        groups.emplace_back(start, i);
        start = i;
        cur = 0;
      }
      cur += sizes[i];
    }
    groups.emplace_back(start, specs.size());
  }
  const bool single = groups.size() == 1;
  auto file_name = [&](size_t g) { return single ? std::string(kSafeWeightsName) : shard_file_name(g + 1, groups.size()); };

  // Disk space: the new files, less what same-named files there now give back as each is replaced.
  uint64_t reclaimed = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    auto sz = fs::file_size(d / file_name(g), ec);
    if (!ec) reclaimed += sz;
  }
  const uint64_t avail = free_bytes_at(d);
  if (total > reclaimed && total - reclaimed > avail)
    fail("{}: not enough free disk space: the checkpoint needs {} ({} bytes), {} are available", dir, gib(total),
         total, gib(avail));

  fs::create_directories(d, ec);
  if (ec) fail("{}: cannot create checkpoint folder: {}", dir, ec.message());
  std::set<std::string> written;
  json weight_map = json::object();
  uint64_t done = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string name = file_name(g);
    auto [b, e] = groups[g];
    std::vector<std::vector<std::byte>> bufs(e - b);
    std::vector<TensorToWrite> tw;
    for (size_t i = b; i < e; ++i) {
      bufs[i - b].resize(size_t(sizes[i]));
      produce(i, bufs[i - b]);
      tw.push_back({specs[i].name, specs[i].dtype, specs[i].shape, bufs[i - b]});
      weight_map[specs[i].name] = name;
      done += sizes[i];
    }
    write_safetensors((d / name).string(), tw, metadata);
    written.insert(name);
    if (progress) progress(g + 1, groups.size(), done, total);
  }
  if (single) {
    remove_if_exists(d / kSafeWeightsIndexName);
  } else {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", std::move(weight_map)}};
    std::string text;
    try {
      text = index.dump(2, ' ', /*ensure_ascii=*/true) + "\n";  // as json.dumps(indent=2, sort_keys=True) + "\n"
    } catch (const json::exception& e) {
      fail("{}: tensor name is not valid UTF-8: {}", dir, e.what());
    }
    write_file_atomic((d / kSafeWeightsIndexName).string(), text);
    remove_if_exists(d / kSafeWeightsName);  // it would shadow the index on open()
  }
  // Shards of an earlier save with a different count would otherwise linger next to the new files.
  for (const auto& entry : fs::directory_iterator(d, ec)) {
    const std::string fname = entry.path().filename().string();
    if (is_shard_file_name(fname) && !written.count(fname)) remove_if_exists(entry.path());
  }
  if (ec) fail("{}: cannot list checkpoint folder: {}", dir, ec.message());
}

void write_checkpoint(const std::string& dir, std::span<const TensorToWrite> tensors, uint64_t max_shard_bytes,
                      const std::map<std::string, std::string>& metadata) {
  for (const auto& t : tensors) validate_tensor_to_write(t, dir);
  write_checkpoint(
      dir, tensors,
      [&](size_t i, std::span<std::byte> out) {
        if (!tensors[i].bytes.empty()) std::memcpy(out.data(), tensors[i].bytes.data(), out.size());
      },
      max_shard_bytes, metadata);
}

}  // namespace sala::io
