// llama2.c import: the real pretrained stories260K reproduces llama2.c's reference text token for token.
#include <gtest/gtest.h>

#include <fstream>

#include "ref/ref64.h"
#include "sala/io/checkpoint.h"
#include "sala/model/llama2c.h"
#include "sala/model/model.h"
#include "sala/runtime/generate.h"
#include "test_util.h"

using namespace sala;

namespace {
const char* kReferenceText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball. She wanted to play with it, but it was too high";
}

TEST(Llama2c, PermutedRowsTurnAdjacentPairRopeIntoHalfRope) {
  // llama2.c rotates pairs (2i, 2i+1) by angle pos*theta^(-2i/D); HF rotates (i, i+D/2). q = W x: rotating W's rows
  // with the permutation makes HF-rope(permuted q) a permutation of llama2c-rope(q), so all dot products agree.
  const int64_t H = 2, D = 8, cols = 5;
  auto w = test::randn(size_t(H * D * cols), 1);
  auto x = test::randn(size_t(cols), 2);
  auto wp = permute_rope_rows(w, H, D, cols);
  const int pos = 7;
  std::vector<double> q(size_t(H * D)), qp(size_t(H * D));
  for (int64_t r = 0; r < H * D; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      q[size_t(r)] += double(w[size_t(r * cols + c)]) * x[size_t(c)];
      qp[size_t(r)] += double(wp[size_t(r * cols + c)]) * x[size_t(c)];
    }
  auto hf = ref::rope_neox(qp, 1, int(H), int(D), {pos}, 10000.0);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < D / 2; ++i) {
      double f = std::pow(10000.0, -2.0 * double(i) / double(D)), c = std::cos(pos * f), s = std::sin(pos * f);
      double a = q[size_t(h * D + 2 * i)], b = q[size_t(h * D + 2 * i + 1)];
      EXPECT_NEAR(hf[size_t(h * D + i)], a * c - b * s, 1e-9);
      EXPECT_NEAR(hf[size_t(h * D + i + D / 2)], a * s + b * c, 1e-9);
    }
}

TEST(Llama2c, Stories260KReproducesReferenceText) {
  SALA_REQUIRE_SHARED("fixtures/stories260K/stories260K.bin");
  Llama2cModel imported = read_llama2c(test::shared_path("fixtures/stories260K/stories260K.bin"));
  EXPECT_EQ(imported.config.hidden_size, 64);
  EXPECT_EQ(imported.config.num_key_value_heads, 4);
  EXPECT_EQ(parameter_count(imported.config), 260032);  // SOURCE.md: 260,032 weights (tied classifier)
  // through the HF layout on disk, as `sala import llama2c` writes it
  const test::TempDir tmp_dir("stories");
  const std::string dir = tmp_dir.str();
  save_model(imported.config, imported.weights, dir, DType::F32);
  Model m = Model::load(dir);
  Llama2cVocab vocab = Llama2cVocab::load(test::shared_path("fixtures/stories260K/tok512.bin"));
  ASSERT_EQ(vocab.size(), 512);
  SequenceState st = m.new_state();
  GenerateOptions o;
  o.max_new_tokens = 60;
  std::vector<int32_t> bos = {1};
  GenerateResult r = generate(m, st, bos, o);
  std::string text = vocab.decode(r.tokens, 1);
  const std::string want = kReferenceText;
  ASSERT_GE(text.size(), want.size()) << text;
  EXPECT_EQ(text.substr(0, want.size()), want);
}

TEST(Llama2c, Version1ExportHasIdenticalWeights) {
  SALA_REQUIRE_SHARED("fixtures/stories260K/stories260K_v1.bin");
  Llama2cModel a = read_llama2c(test::shared_path("fixtures/stories260K/stories260K.bin"));
  Llama2cModel b = read_llama2c(test::shared_path("fixtures/stories260K/stories260K_v1.bin"));
  for (const TensorSpec& s : tensor_specs(a.config)) EXPECT_EQ(a.weights.get(s), b.weights.get(s)) << s.name;
}

TEST(Llama2c, RejectsTruncatedAndForeignFiles) {
  SALA_REQUIRE_SHARED("fixtures/stories260K/stories260K.bin");
  const test::TempDir tmp_dir("l2c_bad");
  const std::string dir = tmp_dir.str();
  const std::string bytes = test::read_text(test::shared_path("fixtures/stories260K/stories260K.bin"));
  { std::ofstream(dir + "/cut.bin", std::ios::binary) << bytes.substr(0, 5000); }
  test::expect_error([&] { read_llama2c(dir + "/cut.bin"); }, {"cut.bin", "truncated"});
  { std::ofstream(dir + "/junk.bin", std::ios::binary) << std::string(64, '\x7f'); }
  test::expect_error([&] { read_llama2c(dir + "/junk.bin"); }, {"junk.bin", "not a llama2.c checkpoint"});
}
