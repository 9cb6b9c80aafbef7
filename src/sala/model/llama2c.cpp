#include "sala/model/llama2c.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "sala/core/error.h"
#include "sala/io/file.h"

namespace sala {

namespace {

// The whole file (refusing a FIFO, directory or device); the bound only stops a runaway read: llama2.c files of 7B
// models are ~27 GB.
std::string read_all(const std::string& path, std::string_view what) {
  return io::read_file(path, what, uint64_t(1) << 40);
}

struct Cursor {
  const std::string& b;
  const std::string& path;
  size_t at = 0;
  template <class T>
  T get() {
    if (at + sizeof(T) > b.size()) fail("{}: truncated (needs {} more bytes at offset {})", path, sizeof(T), at);
    T v;
    std::memcpy(&v, b.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  std::vector<float> floats(int64_t n, const char* what) {
    const size_t bytes = size_t(n) * 4;
    if (n < 0 || at + bytes > b.size())
      fail("{}: truncated while reading {} ({} floats at offset {}, file has {} bytes)", path, what, n, at, b.size());
    std::vector<float> v(static_cast<size_t>(n));
    std::memcpy(v.data(), b.data() + at, bytes);
    at += bytes;
    return v;
  }
};

// Splits a stacked (L, rows, cols) tensor into per-layer vectors.
std::vector<std::vector<float>> split(const std::vector<float>& all, int64_t L) {
  std::vector<std::vector<float>> out(static_cast<size_t>(L));
  const size_t per = all.size() / size_t(L);
  for (int64_t l = 0; l < L; ++l) out[size_t(l)].assign(all.begin() + l * per, all.begin() + (l + 1) * per);
  return out;
}

}  // namespace

std::vector<float> permute_rope_rows(const std::vector<float>& w, int64_t heads, int64_t D, int64_t cols) {
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < D; ++j) {
      const int64_t src = j < D / 2 ? 2 * j : 2 * (j - D / 2) + 1;
      std::memcpy(&out[size_t((h * D + j) * cols)], &w[size_t((h * D + src) * cols)], size_t(cols) * 4);
    }
  return out;
}

Llama2cModel read_llama2c(const std::string& path) {
  const std::string b = read_all(path, "llama2.c checkpoint");
  Cursor c{b, path};
  bool v1 = false;
  if (b.size() >= 8) {
    uint32_t magic;
    std::memcpy(&magic, b.data(), 4);
    v1 = magic == 0x616b3432u;
  }
  if (v1) {
    c.get<uint32_t>();
    int32_t version = c.get<int32_t>();
    if (version != 1) fail("{}: llama2.c export version {} is not supported (legacy and version 1 are)", path, version);
  }
  int32_t dim = c.get<int32_t>(), hidden = c.get<int32_t>(), L = c.get<int32_t>(), H = c.get<int32_t>(),
          Hkv = c.get<int32_t>(), vocab = c.get<int32_t>(), seq = c.get<int32_t>();
  bool shared = vocab > 0;
  if (v1) {
    shared = c.get<uint8_t>() != 0;
    c.at = 256;
  }
  vocab = std::abs(vocab);
  if (dim <= 0 || hidden <= 0 || L <= 0 || H <= 0 || Hkv <= 0 || vocab <= 0 || seq <= 0 || dim % H || H % Hkv ||
      dim > (1 << 16) || L > 4096)
    fail("{}: not a llama2.c checkpoint (header dim={} hidden={} layers={} heads={} kv_heads={} vocab={} seq={})", path,
         dim, hidden, L, H, Hkv, vocab, seq);
  const int64_t D = dim / H, kv_dim = int64_t(Hkv) * D;

  ModelConfig cfg;
  cfg.model_type = "llama";
  cfg.architecture = "LlamaForCausalLM";
  cfg.vocab_size = vocab;
  cfg.hidden_size = dim;
  cfg.intermediate_size = hidden;
  cfg.num_hidden_layers = L;
  cfg.num_attention_heads = H;
  cfg.num_key_value_heads = Hkv;
  cfg.head_dim = D;
  cfg.max_position_embeddings = seq;
  cfg.rms_norm_eps = 1e-5;
  cfg.rope.theta = 10000.0;
  cfg.tie_word_embeddings = shared;
  cfg.bos_token_id = 1;
  cfg.eos_token_ids = {2};
  cfg.torch_dtype = "float32";
  cfg.layer_kinds.assign(size_t(L), LayerKind::Dense);
  validate_config(cfg, path);

  Weights w;
  w.layers.resize(size_t(L));
  for (auto& x : w.layers) x.kind = LayerKind::Dense;
  std::vector<float> rms_att, rms_ffn, wq, wk, wv, wo, w1, w2, w3;
  if (!v1) {
    w.embed = c.floats(int64_t(vocab) * dim, "token_embedding");
    rms_att = c.floats(int64_t(L) * dim, "rms_att");
    wq = c.floats(int64_t(L) * dim * dim, "wq");
    wk = c.floats(int64_t(L) * kv_dim * dim, "wk");
    wv = c.floats(int64_t(L) * kv_dim * dim, "wv");
    wo = c.floats(int64_t(L) * dim * dim, "wo");
    rms_ffn = c.floats(int64_t(L) * dim, "rms_ffn");
    w1 = c.floats(int64_t(L) * hidden * dim, "w1");
    w2 = c.floats(int64_t(L) * dim * hidden, "w2");
    w3 = c.floats(int64_t(L) * hidden * dim, "w3");
    w.final_norm = c.floats(dim, "rms_final");
    c.floats(int64_t(seq) * D, "freq_cis");  // legacy RoPE tables: present, unused
  } else {
    rms_att = c.floats(int64_t(L) * dim, "rms_att");
    rms_ffn = c.floats(int64_t(L) * dim, "rms_ffn");
    w.final_norm = c.floats(dim, "rms_final");
    w.embed = c.floats(int64_t(vocab) * dim, "token_embedding");
    wq = c.floats(int64_t(L) * dim * dim, "wq");
    wk = c.floats(int64_t(L) * kv_dim * dim, "wk");
    wv = c.floats(int64_t(L) * kv_dim * dim, "wv");
    wo = c.floats(int64_t(L) * dim * dim, "wo");
    w1 = c.floats(int64_t(L) * hidden * dim, "w1");
    w2 = c.floats(int64_t(L) * dim * hidden, "w2");
    w3 = c.floats(int64_t(L) * hidden * dim, "w3");
  }
  if (!shared) w.lm_head = c.floats(int64_t(vocab) * dim, "wcls");
  auto sa = split(rms_att, L), sf = split(rms_ffn, L), sq = split(wq, L), sk = split(wk, L), sv = split(wv, L),
       so = split(wo, L), s1 = split(w1, L), s2 = split(w2, L), s3 = split(w3, L);
  for (int64_t l = 0; l < L; ++l) {
    LayerWeights& x = w.layers[size_t(l)];
    x.in_norm = sa[size_t(l)];
    x.post_norm = sf[size_t(l)];
    x.q = permute_rope_rows(sq[size_t(l)], H, D, dim);
    x.k = permute_rope_rows(sk[size_t(l)], Hkv, D, dim);
    x.v = sv[size_t(l)];
    x.o = so[size_t(l)];
    x.gate = s1[size_t(l)];
    x.down = s2[size_t(l)];
    x.up = s3[size_t(l)];
  }
  return {cfg, std::move(w)};
}

Llama2cVocab Llama2cVocab::load(const std::string& path) {
  const std::string b = read_all(path, "llama2.c tokenizer");
  Cursor c{b, path};
  int32_t max_len = c.get<int32_t>();
  if (max_len <= 0 || max_len > 1024) fail("{}: not a llama2.c tokenizer (max_token_length {})", path, max_len);
  Llama2cVocab v;
  while (c.at < b.size()) {
    float score = c.get<float>();
    int32_t n = c.get<int32_t>();
    if (n < 0 || n > max_len || c.at + size_t(n) > b.size())
      fail("{}: piece {} has a bad length {} at offset {}", path, v.pieces_.size(), n, c.at);
    v.pieces_.emplace_back(b.data() + c.at, size_t(n));
    v.scores_.push_back(score);
    c.at += size_t(n);
  }
  return v;
}

const std::string& Llama2cVocab::piece(int64_t id) const {
  if (id < 0 || id >= size()) fail("token id {} is outside the llama2.c vocabulary [0, {})", id, size());
  return pieces_[size_t(id)];
}

std::string Llama2cVocab::decode_piece(int32_t prev, int32_t id) const {
  std::string p = piece(id);
  if (prev == 1 && !p.empty() && p[0] == ' ') p.erase(0, 1);
  unsigned byte;
  if (p.size() == 6 && std::sscanf(p.c_str(), "<0x%02X>", &byte) == 1) return std::string(1, char(byte));
  return p;
}

std::string Llama2cVocab::decode(const std::vector<int32_t>& ids, int32_t prev) const {
  std::string s;
  for (int32_t id : ids) {
    s += decode_piece(prev, id);
    prev = id;
  }
  return s;
}

}  // namespace sala
