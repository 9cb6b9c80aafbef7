// The engine step over several sequences (Model::step), on the CPU oracle: a batch of sequences of different lengths
// and modes (dense prefill, sparse prefill, decode) gives every sequence bitwise the logits it gets alone; weights read
// in their stored dtype (bf16 views into the mapped file) give bitwise the logits of fp32 copies of the same values.
#include <gtest/gtest.h>

#include <map>

#include "sala/model/model.h"
#include "sala/model/presets.h"
#include "test_util.h"

using namespace sala;

namespace {

// A sequence's script: prompt chunks, then single decode tokens; alone() runs it on its own.
struct Script {
  std::vector<int32_t> prompt;
  int64_t chunk;
  std::vector<int32_t> decodes;
};

// The logits of every prompt chunk's last row and of every decode, run alone.
std::vector<std::vector<float>> alone(const Model& m, const Script& s) {
  std::vector<std::vector<float>> out;
  SequenceState st = m.new_state();
  m.begin_call(st, int64_t(s.prompt.size()));
  for (size_t c0 = 0; c0 < s.prompt.size(); c0 += size_t(s.chunk)) {
    const size_t n = std::min(size_t(s.chunk), s.prompt.size() - c0);
    out.emplace_back();
    const Model::Item it{&st, std::span(s.prompt).subspan(c0, n), false, &out.back()};
    m.step(std::span(&it, 1));
  }
  Model::end_call(st);
  for (int32_t id : s.decodes) out.push_back(m.decode(id, st));
  return out;
}

// All scripts interleaved: each step carries the next chunk (or decode token) of every sequence that has one left.
std::vector<std::vector<std::vector<float>>> together(const Model& m, const std::vector<Script>& scripts) {
  const size_t S = scripts.size();
  std::vector<SequenceState> st;
  for (size_t i = 0; i < S; ++i) st.push_back(m.new_state());
  std::vector<std::vector<std::vector<float>>> out(S);
  std::vector<size_t> at(S, 0), dec(S, 0);
  while (true) {
    std::vector<Model::Item> items;
    std::vector<std::vector<float>> logits(S);
    std::vector<int> which;
    std::vector<std::vector<int32_t>> one(S);
    for (size_t i = 0; i < S; ++i) {
      const Script& s = scripts[i];
      if (at[i] < s.prompt.size()) {
        if (at[i] == 0) m.begin_call(st[i], int64_t(s.prompt.size()));
        const size_t n = std::min(size_t(s.chunk), s.prompt.size() - at[i]);
        items.push_back({&st[i], std::span(s.prompt).subspan(at[i], n), false, &logits[i]});
        at[i] += n;
      } else if (dec[i] < s.decodes.size()) {
        Model::end_call(st[i]);
        m.begin_call(st[i], 1);
        one[i] = {s.decodes[dec[i]++]};
        items.push_back({&st[i], one[i], false, &logits[i]});
      } else {
        continue;
      }
      which.push_back(int(i));
    }
    if (items.empty()) break;
    m.step(items);
    for (int i : which) out[size_t(i)].push_back(logits[size_t(i)]);
  }
  return out;
}

}  // namespace

TEST(Batch, EverySequenceGetsBitwiseWhatItGetsAlone) {
  const ModelConfig c = preset_config("sala-tiny");  // dense_len 128: prompts of 150 and 131 run block selection
  const Model m(c, random_weights(c, 21));
  const int64_t V = c.vocab_size;
  const std::vector<Script> scripts = {
      {test::random_ids(150, V, 1), 64, test::random_ids(5, V, 2)},  // sparse prefill in 3 chunks, then decodes
      {test::random_ids(60, V, 3), 60, test::random_ids(9, V, 4)},   // dense prefill in one chunk
      {test::random_ids(1, V, 5), 1, test::random_ids(12, V, 6)},    // a 1-token prompt: decodes from the first step on
      {test::random_ids(131, V, 7), 20, test::random_ids(3, V, 8)},  // sparse; 131 = 3 (mod 4): the stage-1 off-by-one (stride 4)
      {test::random_ids(127, V, 9), 127, {}},              // just below dense_len
  };
  const auto batched = together(m, scripts);
  for (size_t i = 0; i < scripts.size(); ++i) {
    const auto want = alone(m, scripts[i]);
    ASSERT_EQ(batched[i].size(), want.size()) << "sequence " << i;
    for (size_t k = 0; k < want.size(); ++k)
      EXPECT_EQ(batched[i][k], want[k]) << "sequence " << i << ", output " << k << " differs from the run alone";
  }
}

TEST(Batch, StoredBf16WeightsGiveBitwiseTheLogitsOfFp32Copies) {
  // save in bf16, then load twice: as views into the mapped file (widened in the matmul tiles) and as fp32 copies
  const test::TempDir tmp("bf16_views");
  const ModelConfig c = preset_config("sala-tiny");
  save_model(c, random_weights(c, 4), tmp.str(), DType::BF16);
  const Model mapped = Model::load(tmp.str());
  const Model copies(c, mapped.weights());
  const auto ids = test::random_ids(200, c.vocab_size, 11);  // sparse: every op runs
  SequenceState a = mapped.new_state(), b = copies.new_state();
  EXPECT_EQ(mapped.prefill(ids, a, 0, nullptr, true), copies.prefill(ids, b, 0, nullptr, true));
  EXPECT_EQ(mapped.decode(3, a), copies.decode(3, b));
  // f16 as well
  const test::TempDir tmp16("f16_views");
  save_model(c, random_weights(c, 4), tmp16.str(), DType::F16);
  const Model m16 = Model::load(tmp16.str());
  const Model c16(c, m16.weights());
  SequenceState x = m16.new_state(), y = c16.new_state();
  EXPECT_EQ(m16.prefill(ids, x), c16.prefill(ids, y));
}

TEST(Batch, StatesAreNotSharedAndCallsAreEnforced) {
  const ModelConfig c = preset_config("sala-tiny");
  const Model m(c, random_weights(c, 2));
  SequenceState a = m.new_state();
  const std::vector<int32_t> ids = {1, 2, 3};
  // rows outside an open call, and no call at all, are refused (the call is the state's, not the caller's)
  const Model::Item it{&a, ids, false, nullptr};
  test::expect_error([&] { m.step(std::span(&it, 1)); }, {"no call is open"});
  m.begin_call(a, 2);
  test::expect_error([&] { m.step(std::span(&it, 1)); }, {"outside their call"});
  Model::end_call(a);
  // one sequence twice in a step
  m.begin_call(a, 6);
  const Model::Item twice[2] = {{&a, ids, false, nullptr}, {&a, ids, false, nullptr}};
  test::expect_error([&] { m.step(twice); }, {"appears twice"});
  Model::end_call(a);
  // the CPU backend does not draw tokens (the host Sampler does): a draw is refused, not ignored
  EXPECT_FALSE(m.samples_on_device());
  const SamplingParams sp;
  int32_t tok = 0;
  const Model::Draw d{&sp, 0, {}, &tok};
  m.begin_call(a, 3);
  const Model::Item drawn{&a, ids, false, nullptr, &d};
  test::expect_error([&] { m.step(std::span(&drawn, 1)); }, {"does not sample"});
  Model::end_call(a);
  // a clone is a copy: the two go on independently and agree
  SequenceState b = m.new_state();
  m.prefill(ids, b);
  SequenceState b2 = m.clone_state(b);
  EXPECT_EQ(m.decode(9, b), m.decode(9, b2));
  EXPECT_EQ(b.pos, b2.pos);
  static_assert(!std::is_copy_constructible_v<SequenceState>);
}

TEST(Batch, RandomModelsMadeByTheBackendHaveEveryProjection) {
  // Model::random hands the backend tensors without data: the fused projections must still hold their gate parts
  // (o_gate in sparse layers, z in Lightning ones). The sanitizer build catches a read past a too-narrow projection.
  for (const char* preset : {"sala-tiny", "minicpm-tiny"}) {
    const ModelConfig c = preset_config(preset);
    const Model m = Model::random(c, 3, Device::CPU);
    SequenceState st = m.new_state();
    const auto ids = test::random_ids(200, c.vocab_size, 1);  // sparse for sala-tiny
    const auto logits = m.prefill(ids, st);
    ASSERT_EQ(int64_t(logits.size()), c.vocab_size);
    for (float x : logits) ASSERT_TRUE(std::isfinite(x)) << preset;
    // deterministic per seed; another seed gives other weights
    SequenceState st2 = m.new_state();
    EXPECT_EQ(m.prefill(ids, st2), logits);
    const Model other = Model::random(c, 4, Device::CPU);
    SequenceState st3 = other.new_state();
    EXPECT_NE(other.prefill(ids, st3), logits);
    test::expect_error([&] { (void)m.weights(); }, {"no host copy"});
  }
}

// --profile on the CPU: every op kind of a SALA step is timed, with its calls, and timing changes no logit.
TEST(Batch, ProfilingTimesEveryOpAndChangesNoLogit) {
  const ModelConfig c = preset_config("sala-tiny");
  const Model m(c, random_weights(c, 3));
  const auto ids = test::random_ids(int64_t(c.sparse.dense_len) + 40, c.vocab_size, 4);  // a sparse call
  SequenceState a = m.new_state(), b = m.new_state();
  const auto plain = m.prefill(ids, a);
  m.backend().set_profiling(true);
  EXPECT_EQ(m.prefill(ids, b), plain);
  EXPECT_EQ(m.decode(5, b), m.decode(5, a));
  const auto ops = m.backend().take_profile();
  m.backend().set_profiling(false);
  std::map<std::string, Backend::OpTime> by;
  for (const auto& o : ops) by[o.op] = o;
  for (const char* op : {"embed", "add + rmsnorm", "lightning", "select (stage 1 + top-k)", "attention sparse",
                         "kv append + K1/K2", "linear gate_proj|up_proj", "linear down_proj", "gather rows"})
    EXPECT_GT(by[op].calls, 0) << op;
  const int64_t layers = c.num_hidden_layers;
  EXPECT_EQ(by["linear down_proj"].calls, 3 * layers) << "one prefill step and two decode steps (b, then a)";
  for (size_t i = 1; i < ops.size(); ++i) EXPECT_GE(ops[i - 1].seconds, ops[i].seconds) << "largest first";
  m.decode(6, b);
  EXPECT_TRUE(m.backend().take_profile().empty()) << "nothing is timed once profiling is off";
}
