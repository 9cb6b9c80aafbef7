// SentencePiece tokenizer.model support and `sala tokenizer train`: a tokenizer trained by sala must give the same
// ids through its tokenizer.model (libsentencepiece) and its tokenizer.json (sala's HF loader), and decode back to
// the input. MiniCPM's tokenizer.model is compared with its tokenizer.json where the two algorithms agree.
#include <gtest/gtest.h>
#include <unistd.h>

#include "oracle_util.h"
#include "sala/text/tokenizer.h"
#include "sala/text/tokenizer_train.h"

namespace sala::text {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> corpus_cases() {
  std::vector<std::string> cases;
  const fs::path dir = fs::path(SALA_SOURCE_DIR) / "tests" / "text" / "corpus";
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".txt") continue;
    const std::string all = testing::read_bytes(e.path());
    cases.push_back(all);
    size_t b = 0;
    while (b <= all.size()) {
      size_t n = all.find('\n', b);
      if (n == std::string::npos) n = all.size();
      cases.push_back(all.substr(b, n - b));
      b = n + 1;
    }
  }
  return cases;
}

TEST(TokenizerTrain, ModelAndJsonAgree) {
  const fs::path out = fs::temp_directory_path() / ("sala_tok_train_" + std::to_string(::getpid()));
  // Training text: the corpus files, repeated so that BPE has pair statistics to work with.
  const fs::path train_txt = out / "train.txt";
  fs::create_directories(out);
  {
    std::ofstream f(train_txt, std::ios::binary);
    for (int rep = 0; rep < 20; ++rep)
      for (const auto& c : corpus_cases()) f << c << '\n';
  }
  TokenizerTrainOptions opt;
  opt.inputs = {train_txt.string()};
  opt.out_dir = (out / "tok").string();
  opt.vocab_size = 1200;
  opt.hard_vocab_limit = false;
  train_tokenizer(opt);
  ASSERT_TRUE(fs::exists(out / "tok" / "tokenizer.model"));
  ASSERT_TRUE(fs::exists(out / "tok" / "tokenizer.json"));
  const auto spm = Tokenizer::load((out / "tok" / "tokenizer.model").string());
  const auto hf = Tokenizer::load((out / "tok").string());  // tokenizer.json preferred
  ASSERT_EQ(spm->kind(), "sentencepiece");
  ASSERT_EQ(hf->kind(), "tokenizer.json");
  EXPECT_EQ(spm->vocab_size(), hf->vocab_size());
  EXPECT_EQ(hf->bos_id(), 1);
  EXPECT_EQ(hf->token_to_id("<|im_start|>"), 3);
  EXPECT_EQ(hf->token_to_id("<|im_end|>"), 4);
  EXPECT_EQ(hf->config().chat_format, ChatFormat::kChatML);
  std::vector<std::string> cases = corpus_cases();
  cases.push_back("unseen characters: \xF0\x9F\xA6\x99 \xE1\x88\xB4 and <|im_start|>user\nhi<|im_end|>");
  int n = 0;
  for (const auto& c : cases) {
    const auto a = spm->encode(c, true), b = hf->encode(c, true);
    EXPECT_EQ(testing::first_diff(*hf, a, b), "") << "case \"" << testing::show(c.substr(0, 60)) << "\"";
    // Lossless round trip (SentencePiece drops the dummy-prefix space only).
    const bool has_special = c.find("<|im_") != std::string::npos || c.find("<s>") != std::string::npos ||
                             c.find("</s>") != std::string::npos || c.find("<unk>") != std::string::npos;
    if (!has_special) {
      EXPECT_EQ(hf->decode(b, true), c) << testing::show(c.substr(0, 60));
    }
    ++n;
  }
  EXPECT_GT(n, 50);
  fs::remove_all(out);
}

TEST(TokenizerSpm, MiniCPMModelLoads) {
  const fs::path dir = fs::path(SALA_SOURCE_DIR) / ".." / "shared" / "fixtures" / "minicpm-tokenizer";
  if (!fs::exists(dir / "tokenizer.model")) GTEST_SKIP() << dir << " absent";
  const auto spm = Tokenizer::load((dir / "tokenizer.model").string());
  const auto hf = Tokenizer::load((dir / "tokenizer.json").string());
  EXPECT_EQ(spm->vocab_size(), 73448);
  EXPECT_EQ(spm->bos_id(), 1);
  EXPECT_EQ(spm->token_to_id("<|im_end|>"), 73440);
  // MiniCPM's tokenizer.model has add_dummy_prefix off, while its tokenizer.json (what transformers uses) prepends
  // "▁" to every segment; so libsentencepiece on " " + text is the comparable call. Beyond that, SentencePiece's
  // score-based merging and HF's merge ranks can still differ in rare ties (ecosystem.md §5): count, don't assert.
  int same = 0, total = 0;
  for (const auto& c : corpus_cases()) {
    if (c.empty() || c.find('<') != std::string::npos) continue;
    ++total;
    same += spm->encode(" " + c, false) == hf->encode(c, false);
  }
  std::printf("[ spm ] MiniCPM tokenizer.model(\" \" + text) vs tokenizer.json(text): %d of %d cases identical\n", same,
              total);
  EXPECT_EQ(same, total);
  EXPECT_EQ(spm->encode(" Hello world, this is a test.", false), hf->encode("Hello world, this is a test.", false));
  EXPECT_EQ(spm->encode("Hello", false), (std::vector<int32_t>{15934}));  // no dummy prefix: "Hello", not "▁Hello"
  EXPECT_EQ(spm->encode("<|im_start|>user\n你好<|im_end|>", false), (std::vector<int32_t>{73441, 1836, 5, 23523, 73440}));
  EXPECT_EQ(spm->decode(spm->encode("Hello world", true)), "Hello world");
}

}  // namespace
}  // namespace sala::text
