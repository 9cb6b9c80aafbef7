// Unit tests of the tokenizer building blocks with hand-derived expectations: lossy UTF-8 repair (Unicode's own
// Table 3-8 example), incomplete-tail detection, the normalization fast path against utf8proc called directly,
// Oniguruma \s semantics, added-token lstrip/rstrip/single_word, unk fusing, the add_bos/add_eos override, stop
// strings, streaming hold-back of byte-fallback pieces, and errors for unsupported components.
#include <gtest/gtest.h>
#include <utf8proc.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "sala/core/error.h"
#include "sala/text/normalizers.h"
#include "sala/text/regex.h"
#include "sala/text/tokenizer.h"
#include "sala/text/utf8.h"

namespace sala::text {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

TEST(Utf8, LossyRepairFollowsMaximalSubparts) {
  // Unicode 15, Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d
  const std::string in = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(to_valid_utf8(in), "a" + r + r + r + "b" + r + "c" + r + r + "d");
  EXPECT_EQ(to_valid_utf8("\xED\xA0\x80"), r + r + r);  // surrogate: ED then A0 is out of range
  EXPECT_EQ(to_valid_utf8("\xF0\x9F\x98"), r);          // truncated 4-byte sequence at the end
  EXPECT_EQ(to_valid_utf8("ok \xE4\xB8\xAD"), "ok \xE4\xB8\xAD");
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));
  EXPECT_TRUE(is_valid_utf8("plain ascii text, long enough for the 8-byte path"));
}

TEST(Utf8, IncompleteTail) {
  EXPECT_EQ(utf8_incomplete_tail("abc\xE4\xB8"), 2u);
  EXPECT_EQ(utf8_incomplete_tail("abc\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(utf8_incomplete_tail("\xF0\x9F"), 2u);
  EXPECT_EQ(utf8_incomplete_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8_incomplete_tail("x\xC0"), 0u);      // C0 never starts a valid sequence
  EXPECT_EQ(utf8_incomplete_tail("x\xE0\x80"), 0u);  // E0 80 is not a valid prefix
}

std::string utf8proc_direct(const std::string& s, int opts) {
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                              &out, static_cast<utf8proc_option_t>(opts | UTF8PROC_STABLE));
  std::string r(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

TEST(Normalizers, FastPathAgreesWithUtf8proc) {
  std::vector<std::string> samples = {"plain", "caf\xC3\xA9", "cafe\xCC\x81", "\xEF\xAC\x81", "\xE3\x80\x80x",
                                      "\xE3\x81\x8B\xE3\x82\x99", "\xE4\xB8\xAD\xE6\x96\x87", "\xE2\x84\xAB",
                                      "\xEA\xB0\x80", "\xC2\xBD\xC2\xB2", "\xEF\xBD\xB1"};
  // Every code point of the fast-path ranges, one string per range.
  for (auto [lo, hi] : std::vector<std::pair<char32_t, char32_t>>{{0x20, 0x2FF}, {0x3000, 0x303F}, {0x3041, 0x3096},
                                                                  {0x30A1, 0x30FA}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}}) {
    std::string s;
    for (char32_t c = lo; c <= hi; ++c) append_utf8(s, c);
    samples.push_back(s);
  }
  for (const auto& s : samples) {
    EXPECT_EQ(unicode_normalize(s, UnicodeForm::kNFC), utf8proc_direct(s, UTF8PROC_COMPOSE));
    EXPECT_EQ(unicode_normalize(s, UnicodeForm::kNFD), utf8proc_direct(s, UTF8PROC_DECOMPOSE));
    EXPECT_EQ(unicode_normalize(s, UnicodeForm::kNFKC), utf8proc_direct(s, UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
    EXPECT_EQ(unicode_normalize(s, UnicodeForm::kNFKD), utf8proc_direct(s, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
  }
}

TEST(Regex, WhitespaceIsOnigurumaWhiteSpace) {
  Regex re(R"(\s+|\S+)", "test");
  std::vector<std::pair<size_t, size_t>> m;
  const std::string s = "a\xE1\xA0\x8E" "b \xE3\x80\x80" "c";  // U+180E is not White_Space; U+3000 is
  re.find_all(s, m);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(s.substr(m[0].first, m[0].second - m[0].first), "a\xE1\xA0\x8E" "b");
  EXPECT_EQ(s.substr(m[1].first, m[1].second - m[1].first), " \xE3\x80\x80");
  EXPECT_EQ(onig_to_pcre2(R"([^\s\p{L}])"), R"([^\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\p{L}])");
}

// A tiny tokenizer.json: chars a b c and space, merges a+b, ab+c; <X> special with lstrip/rstrip; [W] single_word.
json tiny_json() {
  return json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [
      {"id": 7, "content": "<X>", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": true},
      {"id": 8, "content": "[W]", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false}],
    "normalizer": null, "pre_tokenizer": null, "post_processor": null,
    "decoder": {"type": "Fuse"},
    "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
              "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
              "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, " ": 4, "ab": 5, "abc": 6},
              "merges": ["a b", ["ab", "c"]]}
  })");
}

fs::path write_tmp(const std::string& name, const json& tok, const json& cfg = nullptr) {
  const fs::path dir = fs::temp_directory_path() / ("sala_text_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tok.dump();
  if (!cfg.is_null()) std::ofstream(dir / "tokenizer_config.json") << cfg.dump();
  return dir;
}

TEST(Tokenizer, AddedTokenStripAndSingleWord) {
  const auto tok = Tokenizer::load(write_tmp("tiny", tiny_json()).string());
  EXPECT_EQ(tok->encode("abc", false), (Ids{6}));
  EXPECT_EQ(tok->encode("cab", false), (Ids{3, 5}));
  EXPECT_EQ(tok->encode("ab  <X>  c", false), (Ids{5, 7, 3}));  // lstrip/rstrip absorb the spaces
  EXPECT_EQ(tok->encode("a [W] b", false), (Ids{1, 4, 8, 4, 2}));
  EXPECT_EQ(tok->encode("a[W]b", false), (Ids{1, 0, 0, 0, 2}));  // not a single word: [, W, ] are unknown
  EXPECT_EQ(tok->decode(Ids{5, 7, 3}, true), "abc");
  EXPECT_EQ(tok->decode(Ids{5, 7, 3}, false), "ab<X>c");
  EXPECT_EQ(tok->decode(Ids{1, 8, 2}, true), "a[W]b");  // [W] is not special: kept
  EXPECT_TRUE(tok->is_special(7));
  EXPECT_FALSE(tok->is_special(8));
  EXPECT_EQ(tok->vocab_size(), 9);
  EXPECT_EQ(tok->token_to_id("<X>"), 7);
  EXPECT_EQ(tok->id_to_token(6), "abc");
}

TEST(Tokenizer, FuseUnk) {
  json j = tiny_json();
  j["model"]["fuse_unk"] = true;
  const auto tok = Tokenizer::load(write_tmp("fuse", j).string());
  EXPECT_EQ(tok->encode("a[W]b", false), (Ids{1, 0, 2}));
}

TEST(Tokenizer, LlamaConfigOverridesPostProcessor) {
  const json cfg = {{"tokenizer_class", "LlamaTokenizer"}, {"add_bos_token", false}, {"add_eos_token", true},
                    {"eos_token", "<X>"}};
  const auto tok = Tokenizer::load(write_tmp("cfg", tiny_json(), cfg).string());
  EXPECT_EQ(tok->encode("ab", true), (Ids{5, 7}));
  EXPECT_EQ(tok->encode("ab", false), (Ids{5}));
  EXPECT_EQ(tok->eos_ids(), (Ids{7}));
}

TEST(Tokenizer, UnsupportedComponentsAreNamed) {
  const auto expect_error = [](json j, const std::string& name, const std::string& what) {
    const auto dir = write_tmp("bad_" + name, j);
    try {
      Tokenizer::load(dir.string());
      ADD_FAILURE() << "no error for " << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  json j = tiny_json();
  j["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}};
  expect_error(j, "norm", "\"Precompiled\"");
  j = tiny_json();
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  expect_error(j, "pre", "\"BertPreTokenizer\"");
  j = tiny_json();
  j["decoder"] = {{"type", "CTC"}};
  expect_error(j, "dec", "\"CTC\"");
  j = tiny_json();
  j["model"]["type"] = "WordPiece";
  expect_error(j, "model", "\"WordPiece\"");
  j = tiny_json();
  j["model"]["merges"].push_back("a zz");
  expect_error(j, "merge", "\"zz\"");
}

TEST(StreamDecoder, HoldsIncompleteBytes) {
  json vocab = {{"<unk>", 0}, {"a", 1}};
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = 2 + b;
  json j = tiny_json();
  j["added_tokens"] = json::array();
  j["model"] = {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true},
                {"vocab", vocab}, {"merges", json::array()}};
  j["decoder"] = {{"type", "Sequence"}, {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}};
  const auto tok = Tokenizer::load(write_tmp("bytes", j).string());
  const Ids ids = tok->encode("a\xE2\x82\xAC", false);  // a + euro sign (3 bytes)
  ASSERT_EQ(ids, (Ids{1, 2 + 0xE2, 2 + 0x82, 2 + 0xAC}));
  StreamDecoder sd(*tok);
  EXPECT_EQ(sd.push(ids[0]), "a");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), "");
  EXPECT_EQ(sd.push(ids[3]), "\xE2\x82\xAC");
  EXPECT_EQ(sd.push(2 + 0xE4), "");
  EXPECT_EQ(sd.finish(), "\xEF\xBF\xBD");  // a dangling byte decodes to U+FFFD, as decode() gives
}

TEST(StopStrings, HoldsBackPartialMatches) {
  StopStrings st({"<|im_end|>", "###"});
  auto r = st.push("Hello <|im");
  EXPECT_EQ(r.text, "Hello ");
  EXPECT_FALSE(r.stopped);
  r = st.push("_e");
  EXPECT_EQ(r.text, "");
  r = st.push("nd|> tail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(r.stop, "<|im_end|>");
  EXPECT_TRUE(st.push("more").stopped);

  StopStrings st2({"<|im_end|>"});
  EXPECT_EQ(st2.push("a <|i").text, "a ");
  EXPECT_EQ(st2.push("x").text, "<|ix");
  EXPECT_EQ(st2.push("end #").text, "end #");
  EXPECT_EQ(st2.push("<").text, "");
  EXPECT_EQ(st2.flush(), "<");
  EXPECT_EQ(st2.find_in("abc<|im_end|>"), 3u);
}

}  // namespace
}  // namespace sala::text
