// Weights: the tensor table, save/load round trips (single and sharded), and validation errors that name the tensor,
// the expected and the found.
#include <gtest/gtest.h>

#include <set>

#include "sala/io/checkpoint.h"
#include "sala/io/safetensors.h"
#include "sala/model/model.h"
#include "sala/model/presets.h"
#include "test_util.h"

using namespace sala;

TEST(Weights, TensorTableHasTheReleasedNames) {
  ModelConfig c = preset_config("minicpm-sala-9b");
  auto specs = tensor_specs(c);
  auto find = [&](const std::string& n) -> const TensorSpec* {
    for (auto& s : specs)
      if (s.name == n) return &s;
    return nullptr;
  };
  ASSERT_NE(find("model.layers.0.self_attn.o_gate.weight"), nullptr);   // sparse layer
  EXPECT_EQ(find("model.layers.0.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{256, 4096}));
  EXPECT_EQ(find("model.layers.0.self_attn.q_norm.weight"), nullptr);   // no norms in sparse layers
  EXPECT_EQ(find("model.layers.1.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{4096, 4096}));
  EXPECT_EQ(find("model.layers.1.self_attn.q_norm.weight")->shape, (std::vector<int64_t>{128}));
  EXPECT_EQ(find("model.layers.1.self_attn.o_norm.weight")->shape, (std::vector<int64_t>{4096}));
  EXPECT_NE(find("model.layers.1.self_attn.z_proj.weight"), nullptr);
  EXPECT_EQ(find("model.layers.1.self_attn.o_gate.weight"), nullptr);
  EXPECT_NE(find("lm_head.weight"), nullptr);
}

TEST(Weights, ShardedRoundTripInEveryDtype) {
  ModelConfig c = preset_config("sala-tiny");
  Weights w = random_weights(c, 3);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    const test::TempDir tmp_dir(std::string("w_") + std::string(dtype_name(t)));
    const std::string dir = tmp_dir.str();
    save_model(c, w, dir, t, 1 << 20);  // ~1 MiB shards: several files + index
    EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
    io::Checkpoint ck = io::Checkpoint::open(dir);
    std::set<std::string> files;
    for (auto& n : ck.names()) files.insert(std::filesystem::path(ck.file_of(n)).filename().string());
    ASSERT_GT(files.size(), 1u);
    for (size_t i = 1; i <= files.size(); ++i) EXPECT_EQ(files.count(io::shard_file_name(i, files.size())), 1u);
    Model m = Model::load(dir);
    const double tol = t == DType::F32 ? 0 : t == DType::BF16 ? 1.0 / 256 : 1.0 / 2048;
    for (const TensorSpec& s : tensor_specs(c)) {
      const auto& a = w.get(s);
      const auto& b = m.weights().get(s);
      ASSERT_EQ(a.size(), b.size()) << s.name;
      for (size_t i = 0; i < a.size(); ++i)
        ASSERT_LE(std::abs(a[i] - b[i]), tol * std::abs(a[i]) + 1e-7) << s.name << "[" << i << "]";
    }
  }
}

TEST(Weights, ValidationNamesTensorExpectedAndFound) {
  ModelConfig c = preset_config("llama-tiny");
  Weights w = random_weights(c, 4);
  const test::TempDir tmp_dir("w_bad");
  const std::string dir = tmp_dir.str();
  // rewrite the checkpoint with one tensor changed at a time
  auto write = [&](const std::string& skip, const std::string& reshape, DType int_dtype_for = DType::F32) {
    std::vector<io::TensorToWrite> tw;
    std::vector<std::vector<std::byte>> bufs;
    bufs.reserve(64);
    for (const TensorSpec& s : tensor_specs(c)) {
      if (s.name == skip) continue;
      const auto& v = w.get(s);
      auto shape = s.shape;
      DType dt = DType::F32;
      if (s.name == reshape) shape = {shape[0] * (shape.size() > 1 ? shape[1] : 1)};
      if (s.name == skip + "#int") dt = int_dtype_for;
      bufs.emplace_back(reinterpret_cast<const std::byte*>(v.data()),
                        reinterpret_cast<const std::byte*>(v.data() + v.size()));
      tw.push_back({s.name, dt, shape, std::span<const std::byte>(bufs.back())});
    }
    io::write_safetensors(dir + "/model.safetensors", tw);
    save_config(c, dir);
  };
  write("model.layers.1.mlp.up_proj.weight", "");
  test::expect_error([&] { Model::load(dir); }, {"model.layers.1.mlp.up_proj.weight", "missing", "[172, 64]"});
  write("", "model.layers.0.self_attn.k_proj.weight");
  test::expect_error([&] { Model::load(dir); },
                     {"model.safetensors", "model.layers.0.self_attn.k_proj.weight", "[2048]", "expected [32, 64]"});
  // an integer tensor where a float one belongs
  {
    std::vector<io::TensorToWrite> tw;
    std::vector<std::vector<std::byte>> bufs;
    bufs.reserve(64);
    for (const TensorSpec& s : tensor_specs(c)) {
      const auto& v = w.get(s);
      bufs.emplace_back(reinterpret_cast<const std::byte*>(v.data()),
                        reinterpret_cast<const std::byte*>(v.data() + v.size()));
      DType dt = s.name == "model.norm.weight" ? DType::I32 : DType::F32;
      tw.push_back({s.name, dt, s.shape, std::span<const std::byte>(bufs.back())});
    }
    io::write_safetensors(dir + "/model.safetensors", tw);
  }
  test::expect_error([&] { Model::load(dir); }, {"model.norm.weight", "I32", "float"});
}
