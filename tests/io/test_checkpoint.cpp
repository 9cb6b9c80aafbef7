// Tests for io/checkpoint: single-file and sharded round trips (file names, index JSON text as transformers writes it,
// shard grouping worked out by hand), stale-file cleanup on rewrite, f32 decoding against closed-form values, and the
// index validation errors (missing weight_map, missing shard, tensor absent from its shard, path escape).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "sala/core/error.h"
#include "sala/io/checkpoint.h"
#include "sala/io/safetensors.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using sala::DType;
using namespace sala::io;

struct TempDir : sala::test::TempDir {
  TempDir() : sala::test::TempDir("io-ck") {}
};

using sala::test::byte_view;
using sala::test::error_of;

using sala::test::read_text;
using sala::test::write_text;

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}


bool equal_bytes(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// Five tensors of 40, 24, 64, 8 and 0 bytes (136 in all).
struct Fixture {
  std::vector<float> a = std::vector<float>(10);      // F32 [2, 5]: 40 bytes
  std::vector<uint16_t> b = std::vector<uint16_t>(12);  // BF16 [12]: 24 bytes
  std::vector<double> c = std::vector<double>(8);     // F64 [8]: 64 bytes
  std::vector<int32_t> d = {1, -2};                     // I32 [2]: 8 bytes
  std::vector<TensorToWrite> tensors;
  Fixture() {
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f - 2.0f;  // exact in f32
    for (size_t i = 0; i < b.size(); ++i) b[i] = uint16_t(0x3F80 + (i << 4));  // 1 + i/8 for i < 8, exact in bf16
    for (size_t i = 0; i < c.size(); ++i) c[i] = 1.0 / double(i + 1);
    tensors = {{"model.a", DType::F32, {2, 5}, byte_view(a)},
               {"model.b", DType::BF16, {12}, byte_view(b)},
               {"model.c", DType::F64, {8}, byte_view(c)},
               {"model.d", DType::I32, {2}, byte_view(d)},
               {"model.e", DType::F16, {0, 3}, {}}};
  }
};

void expect_same_content(const Checkpoint& ck, const Fixture& fx) {
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"model.a", "model.b", "model.c", "model.d", "model.e"}));
  EXPECT_EQ(ck.size(), 5u);
  for (const auto& t : fx.tensors) {
    const TensorInfo* info = ck.find(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_EQ(info->dtype, t.dtype);
    EXPECT_EQ(info->shape, t.shape);
    EXPECT_TRUE(equal_bytes(ck.bytes(t.name), t.bytes)) << t.name;
  }
  EXPECT_EQ(ck.find("model.z"), nullptr);
  // f32 decoding against values computed here in double.
  auto a = ck.read_f32("model.a");
  ASSERT_EQ(a.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(a[i], float(double(i) * 0.5 - 2.0));
  auto b = ck.read_f32("model.b");
  ASSERT_EQ(b.size(), 12u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(b[i], float(1.0 + double(i) / 8.0)) << i;
  EXPECT_EQ(b[8], 2.0f);  // 0x4000
  auto c = ck.read_f32("model.c");
  ASSERT_EQ(c.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(c[i], float(1.0 / double(i + 1))) << i;
  EXPECT_TRUE(ck.read_f32("model.e").empty());
}

TEST(CheckpointRoundTrip, SingleFile) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors);
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{"model.safetensors"}));
  auto ck = Checkpoint::open(dir.str());
  EXPECT_FALSE(ck.sharded());
  expect_same_content(ck, fx);
  EXPECT_EQ(ck.file_of("model.c"), dir.file("model.safetensors"));
  EXPECT_EQ(ck.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));

  auto direct = Checkpoint::open(dir.file("model.safetensors"));  // a file path works too
  expect_same_content(direct, fx);

  // Exactly at the limit still gives one file.
  TempDir dir2;
  write_checkpoint(dir2.str(), fx.tensors, 136);
  EXPECT_EQ(files_in(dir2.path()), (std::set<std::string>{"model.safetensors"}));
}

TEST(CheckpointRoundTrip, ShardedIndexAndFileNames) {
  TempDir dir;
  Fixture fx;
  // Greedy grouping with a 48-byte limit, worked out by hand: [a 40] [b 24] [c 64, alone, over the limit] [d 8, e 0].
  write_checkpoint(dir.str(), fx.tensors, 48, {{"format", "pt"}});
  const std::string s1 = "model-00001-of-00004.safetensors", s2 = "model-00002-of-00004.safetensors",
                    s3 = "model-00003-of-00004.safetensors", s4 = "model-00004-of-00004.safetensors";
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{s1, s2, s3, s4, "model.safetensors.index.json"}));

  // The index as transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
  const std::string expected_index =
      "{\n"
      "  \"metadata\": {\n"
      "    \"total_size\": 136\n"
      "  },\n"
      "  \"weight_map\": {\n"
      "    \"model.a\": \"model-00001-of-00004.safetensors\",\n"
      "    \"model.b\": \"model-00002-of-00004.safetensors\",\n"
      "    \"model.c\": \"model-00003-of-00004.safetensors\",\n"
      "    \"model.d\": \"model-00004-of-00004.safetensors\",\n"
      "    \"model.e\": \"model-00004-of-00004.safetensors\"\n"
      "  }\n"
      "}\n";
  EXPECT_EQ(read_text(dir.file("model.safetensors.index.json")), expected_index);

  // Each shard is a self-contained safetensors file with the metadata.
  auto f4 = SafetensorsFile::open(dir.file(s4));
  ASSERT_EQ(f4.tensors().size(), 2u);
  EXPECT_EQ(f4.tensors()[0].name, "model.d");
  EXPECT_EQ(f4.tensors()[1].name, "model.e");
  EXPECT_EQ(f4.metadata().at("format"), "pt");

  auto ck = Checkpoint::open(dir.str());
  EXPECT_TRUE(ck.sharded());
  expect_same_content(ck, fx);
  EXPECT_EQ(ck.file_of("model.a"), dir.file(s1));
  EXPECT_EQ(ck.file_of("model.c"), dir.file(s3));
  EXPECT_EQ(ck.file_of("model.e"), dir.file(s4));
  EXPECT_EQ(ck.metadata().at("total_size"), "136");
  EXPECT_EQ(ck.files().size(), 4u);

  auto via_index = Checkpoint::open(dir.file("model.safetensors.index.json"));
  expect_same_content(via_index, fx);

  EXPECT_EQ(shard_file_name(12, 345), "model-00012-of-00345.safetensors");
}

TEST(CheckpointRoundTrip, RewriteRemovesStaleFiles) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors, 48);  // 4 shards + index
  write_text(dir.file("config.json"), "{}");    // unrelated files survive
  write_checkpoint(dir.str(), fx.tensors);      // single file: index and shards must go
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{"model.safetensors", "config.json"}));
  expect_same_content(Checkpoint::open(dir.str()), fx);

  write_checkpoint(dir.str(), fx.tensors, 48);  // back to shards: model.safetensors would shadow the index
  EXPECT_EQ(files_in(dir.path()).count("model.safetensors"), 0u);
  write_checkpoint(dir.str(), fx.tensors, 70);  // [a b] [c] [d e]: 3 shards, the 4-shard files are removed
  EXPECT_EQ(files_in(dir.path()),
            (std::set<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                   "model-00003-of-00003.safetensors", "model.safetensors.index.json",
                                   "config.json"}));
  auto ck = Checkpoint::open(dir.str());
  expect_same_content(ck, fx);
  EXPECT_EQ(ck.file_of("model.b"), dir.file("model-00001-of-00003.safetensors"));
}

TEST(CheckpointRoundTrip, FolderPrefersModelSafetensorsOverIndex) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors, 48);
  std::vector<int32_t> only = {5};
  std::vector<TensorToWrite> one = {{"only", DType::I32, {1}, byte_view(only)}};
  write_safetensors(dir.file("model.safetensors"), one);  // as transformers: model.safetensors wins
  auto ck = Checkpoint::open(dir.str());
  EXPECT_FALSE(ck.sharded());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"only"}));
}

// ---- errors ---------------------------------------------------------------------------------------------------------

TEST(CheckpointErrors, MissingWeightMap) {
  TempDir dir;
  const std::string idx = dir.file("model.safetensors.index.json");
  write_text(idx, R"({"metadata": {"total_size": 0}})");
  std::string msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find(idx), std::string::npos) << msg;
  EXPECT_NE(msg.find("no \"weight_map\""), std::string::npos) << msg;

  write_text(idx, R"({"weight_map": ["a"]})");
  msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find("\"weight_map\" is not an object"), std::string::npos) << msg;

  write_text(idx, R"({"weight_map": {)");
  msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find(idx), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
}

TEST(CheckpointErrors, MissingShard) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors, 48);
  const std::string gone = dir.file("model-00003-of-00004.safetensors");
  fs::remove(gone);
  std::string msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find(dir.file("model.safetensors.index.json")), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing shard " + gone), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.c"), std::string::npos) << msg;
}

TEST(CheckpointErrors, TensorMissingFromShard) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors, 48);
  const std::string idx = dir.file("model.safetensors.index.json");
  auto j = nlohmann::json::parse(read_text(idx));
  j["weight_map"]["model.ghost"] = "model-00002-of-00004.safetensors";
  write_text(idx, j.dump(2));
  std::string msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find(idx), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'model.ghost' is listed in the index but absent from its shard " +
                     dir.file("model-00002-of-00004.safetensors")),
            std::string::npos)
      << msg;
}

TEST(CheckpointErrors, ShardOutsideFolderOrNotAString) {
  TempDir dir;
  const std::string idx = dir.file("model.safetensors.index.json");
  write_text(idx, R"({"weight_map": {"w": "../other/model.safetensors"}})");
  std::string msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find("inside the checkpoint folder"), std::string::npos) << msg;
  write_text(idx, R"({"weight_map": {"w": "/etc/passwd"}})");
  msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find("inside the checkpoint folder"), std::string::npos) << msg;
  write_text(idx, R"({"weight_map": {"w": 3}})");
  msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find("not a file name"), std::string::npos) << msg;
}

TEST(CheckpointErrors, CorruptShardNamesTheShard) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors, 48);
  const std::string shard = dir.file("model-00002-of-00004.safetensors");
  write_text(shard, std::string("\x05\x00\x00", 3));
  std::string msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find(shard), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST(CheckpointErrors, EmptyOrMissingPath) {
  TempDir dir;
  std::string msg = error_of([&] { Checkpoint::open(dir.str()); });
  EXPECT_NE(msg.find(dir.str()), std::string::npos) << msg;
  EXPECT_NE(msg.find("neither model.safetensors nor model.safetensors.index.json"), std::string::npos) << msg;
  const std::string nowhere = dir.file("nowhere");
  msg = error_of([&] { Checkpoint::open(nowhere); });
  EXPECT_NE(msg.find(nowhere), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST(CheckpointErrors, ReadF32OfNonFloatAndUnknownTensor) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors);
  auto ck = Checkpoint::open(dir.str());
  std::string msg = error_of([&] { ck.read_f32("model.d"); });
  EXPECT_NE(msg.find(dir.file("model.safetensors")), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'model.d' has dtype I32, expected a float dtype"), std::string::npos) << msg;
  for (auto* what : {"bytes", "file_of", "read_f32"}) {
    msg = error_of([&] {
      if (std::string(what) == "bytes") ck.bytes("nope");
      else if (std::string(what) == "file_of") ck.file_of("nope");
      else ck.read_f32("nope");
    });
    EXPECT_NE(msg.find("no tensor 'nope'"), std::string::npos) << what << ": " << msg;
  }
}

TEST(CheckpointErrors, BadWriteLeavesFolderUntouched) {
  TempDir dir;
  Fixture fx;
  write_checkpoint(dir.str(), fx.tensors, 48);
  const auto before = files_in(dir.path());
  const std::string index_before = read_text(dir.file("model.safetensors.index.json"));
  auto dup = fx.tensors;
  dup.push_back(fx.tensors[0]);
  std::string msg = error_of([&] { write_checkpoint(dir.str(), dup); });
  EXPECT_NE(msg.find("duplicate tensor name 'model.a'"), std::string::npos) << msg;
  auto bad = fx.tensors;
  bad[3].shape = {3};
  msg = error_of([&] { write_checkpoint(dir.str(), bad); });
  EXPECT_NE(msg.find("tensor 'model.d': wrong byte size"), std::string::npos) << msg;
  EXPECT_EQ(files_in(dir.path()), before);
  EXPECT_EQ(read_text(dir.file("model.safetensors.index.json")), index_before);
}

}  // namespace

TEST(Checkpoint, IndexMappingATensorTwiceIsRefused) {
  // nlohmann keeps the last of two equal keys: two readers could then disagree about where a tensor lives
  const sala::test::TempDir tmp("dup_index");
  Fixture fx;
  write_checkpoint(tmp.str(), fx.tensors, 50);  // sharded
  const std::string idx = tmp.file("model.safetensors.index.json");
  std::string text;
  {
    std::ifstream in(idx);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const size_t at = text.find("\"model.a\"");
  ASSERT_NE(at, std::string::npos);
  const size_t eol = text.find('\n', at);
  text.insert(eol + 1, text.substr(at - 4, eol + 1 - (at - 4)));  // the same line again
  write_text(idx, text);
  const std::string msg = error_of([&] { Checkpoint::open(tmp.str()); });
  EXPECT_NE(msg.find(idx), std::string::npos) << msg;
  EXPECT_NE(msg.find("key 'model.a' twice (in 'weight_map')"), std::string::npos) << msg;
}
