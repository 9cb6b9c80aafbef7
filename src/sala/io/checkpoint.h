// A model checkpoint in the Hugging Face layout: a folder with model.safetensors, or with
// model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor: shard file}}) plus its shards; or a single
// .safetensors file. Like transformers, a folder's model.safetensors wins over an index next to it.
// Invariant after open(): every name in names() is present, with a validated TensorInfo, in the shard file_of() names.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sala/io/safetensors.h"

namespace sala::io {

inline constexpr const char* kSafeWeightsName = "model.safetensors";
inline constexpr const char* kSafeWeightsIndexName = "model.safetensors.index.json";

// "model-00001-of-00003.safetensors" for index 1 (1-based) of 3, as transformers names shards.
std::string shard_file_name(size_t index1, size_t count);

class Checkpoint {
 public:
  // path: a folder (see above), a .safetensors file, or an index .json file (shards resolved next to it).
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return path_; }            // as given to open()
  bool sharded() const { return sharded_; }
  std::vector<std::string> names() const;                      // all tensor names, sorted
  size_t size() const { return tensors_.size(); }
  const TensorInfo* find(std::string_view name) const;         // nullptr if absent
  const std::string& file_of(std::string_view name) const;     // path of the shard holding it; throws if absent
  std::span<const std::byte> bytes(std::string_view name) const;  // throws if absent
  // Reads a float tensor (F32/F16/BF16/F64) converted to f32; error names tensor and file if dtype is not float.
  std::vector<float> read_f32(std::string_view name) const;
  // Metadata of the index file (values that are not strings, like total_size, as their JSON text), or of the single
  // file's __metadata__.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  struct Loc {
    size_t file = 0, tensor = 0;  // indices into files_ and files_[file].tensors()
  };
  const Loc& loc(std::string_view name) const;  // throws sala::Error naming the tensor and checkpoint if absent
  std::string path_;
  bool sharded_ = false;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, Loc, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// The one checkpoint writer. Writes tensors to dir (created if needed): one model.safetensors if the total is <=
// max_shard_bytes, else shards model-00001-of-0000N.safetensors (greedy in the given order; a tensor larger than the
// limit gets a shard of its own) plus model.safetensors.index.json (metadata.total_size = sum of tensor bytes; keys
// sorted, indent 2, like transformers). `metadata` goes into each safetensors file's __metadata__.
// Before anything is written: every tensor is validated and the free disk space is checked (an error names the folder
// and both sizes). Each file is written atomically and the index last; then files of an earlier checkpoint in dir
// that would shadow or confuse this one (a stale index or model.safetensors, shards model-*-of-*.safetensors not
// written now) are removed, so the folder holds exactly the new checkpoint.
void write_checkpoint(const std::string& dir, std::span<const TensorToWrite> tensors,
                      uint64_t max_shard_bytes = 5ull << 30,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// The same, streaming: tensors are described up front (name, dtype, shape; `bytes` left empty) and produced one
// shard at a time by produce(i, out), which fills tensor i's bytes (out is sized by the writer), so no more than one
// shard is in memory. progress (if set) runs after each file with (files done, files, bytes done, total bytes).
using ProduceTensor = std::function<void(size_t index, std::span<std::byte> out)>;
using WriteProgress = std::function<void(size_t done, size_t files, uint64_t bytes_done, uint64_t total_bytes)>;
void write_checkpoint(const std::string& dir, std::span<const TensorToWrite> specs, const ProduceTensor& produce,
                      uint64_t max_shard_bytes = 5ull << 30,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                      const WriteProgress& progress = {});

}  // namespace sala::io
