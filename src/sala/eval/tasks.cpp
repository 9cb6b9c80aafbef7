#include "sala/eval/tasks.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <unordered_map>

#include "sala/core/edit_distance.h"
#include "sala/core/error.h"
#include "sala/core/rng.h"
#include "sala/eval/fit.h"
#include "sala/eval/haystack.h"
#include "sala/eval/words.h"

namespace sala::eval {

namespace {

constexpr TaskInfo kTasks[] = {
    {"niah_single_1", "one needle (word key, 7-digit value) in the noise haystack", true, false, 128, Metric::kAll},
    {"niah_single_2", "one needle (word key, 7-digit value) in a text haystack", true, true, 128, Metric::kAll},
    {"niah_single_3", "one needle (word key, UUID value) in a text haystack", true, true, 128, Metric::kAll},
    {"niah_multikey_1", "4 needles in a text haystack, one key asked", true, true, 128, Metric::kAll},
    {"niah_multikey_2", "one needle in a haystack of distractor needles (word keys, numbers)", true, false, 128,
     Metric::kAll},
    {"niah_multikey_3", "one needle in a haystack of distractor needles (UUID keys and values)", true, false, 128,
     Metric::kAll},
    {"niah_multivalue", "4 values for one key in a text haystack, all asked", false, true, 128, Metric::kAll},
    {"niah_multiquery", "4 needles in a text haystack, all 4 keys asked", false, true, 128, Metric::kAll},
    {"vt", "variable tracking: a chain of 4 assignments hidden in noise, all names asked", false, false, 30,
     Metric::kAll},
    {"cwe", "common words extraction: the 10 most common words of a numbered list", false, false, 120, Metric::kAll},
    {"fwe", "frequent words extraction: the 3 most frequent coded words (Zipf, alpha 2)", false, false, 50,
     Metric::kAll},
    {"passkey", "a 5-digit pass key hidden in the noise haystack (landmark-attention prompt)", true, false, 16,
     Metric::kAll},
};

struct Alias {
  std::string_view alias, name;
};
constexpr Alias kAliases[] = {{"niah_single", "niah_single_1"}, {"niah_multikey", "niah_multikey_1"},
                              {"niah_mk", "niah_multikey_1"},   {"niah_mv", "niah_multivalue"},
                              {"niah_mq", "niah_multiquery"},   {"variable_tracking", "vt"},
                              {"common_words", "cwe"},          {"freq_words", "fwe"}};

std::string task_list() {
  std::string s;
  for (const TaskInfo& t : kTasks) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s + " (groups: all, ruler, niah)";
}

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h ^= h >> 31;
  return h * 0xbf58476d1ce4e5b9ull;
}

// What a task's builder produces for a haystack of n units.
struct Built {
  std::string user, prefix, needle;
  std::vector<std::string> refs;
};
// n: haystack units; extra: bytes of the next word (haystack tasks only: the search's finest step)
using Builder = std::function<Built(int64_t n, int64_t extra)>;

// ---- NIAH ----------------------------------------------------------------------------------------------------------

struct NiahParams {
  enum Hay { kNoise, kText, kNeedles } hay = kNoise;
  bool uuid_keys = false, uuid_values = false;
  int num_k = 1, num_v = 1, num_q = 1;
};

NiahParams niah_params(std::string_view task) {
  NiahParams p;
  if (task == "niah_single_1") return p;
  if (task == "niah_single_2") return p.hay = NiahParams::kText, p;
  if (task == "niah_single_3") return p.hay = NiahParams::kText, p.uuid_values = true, p;
  if (task == "niah_multikey_1") return p.hay = NiahParams::kText, p.num_k = 4, p;
  if (task == "niah_multikey_2") return p.hay = NiahParams::kNeedles, p;
  if (task == "niah_multikey_3") return p.hay = NiahParams::kNeedles, p.uuid_keys = p.uuid_values = true, p;
  if (task == "niah_multivalue") return p.hay = NiahParams::kText, p.num_v = 4, p;
  if (task == "niah_multiquery") return p.hay = NiahParams::kText, p.num_k = 4, p.num_q = 4, p;
  SALA_CHECK(false);
}

std::string needle_sentence(const std::string& vtype, const std::string& key, const std::string& value) {
  return "One of the special magic " + vtype + " for " + key + " is: " + value + ".";
}

Builder niah_builder(const TaskInfo& info, const TaskContext& ctx, const SampleSpec& spec, uint64_t seed) {
  const NiahParams p = niah_params(info.name);
  Rng r(seed);
  const auto key = [p](Rng& g) { return p.uuid_keys ? random_uuid(g) : random_key(g); };
  const auto value = [p](Rng& g) { return p.uuid_values ? random_uuid(g) : random_number(g, 7); };
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> values;
  std::set<std::string> used_keys, used_values;
  while (int(keys.size()) < p.num_k) {
    std::string k = key(r);
    if (used_keys.insert(k).second) keys.push_back(k);
  }
  for (int i = 0; i < p.num_k; ++i) {
    values.emplace_back();
    while (int(values.back().size()) < p.num_v) {
      std::string v = value(r);
      if (used_values.insert(v).second) values.back().push_back(v);
    }
  }
  // the keys asked: num_q distinct of num_k, the first of them the depth needle's
  std::vector<int> order(size_t(p.num_k));
  for (int i = 0; i < p.num_k; ++i) order[size_t(i)] = i;
  shuffle(order, r);
  const std::vector<int> asked(order.begin(), order.begin() + p.num_q);
  const std::string vtype = p.uuid_values ? "uuids" : "numbers";
  struct Needle {
    std::string text;
    double depth;  // 0..1
  };
  std::vector<Needle> needles;
  for (int i = 0; i < p.num_k; ++i)
    for (const std::string& v : values[size_t(i)]) needles.push_back({needle_sentence(vtype, keys[size_t(i)], v), r.uniform()});
  std::string depth_needle;
  if (info.depth) {
    const size_t k = size_t(asked[0]) * size_t(p.num_v);
    needles[k].depth = spec.depth / 100.0;
    depth_needle = needles[k].text;
  }
  std::vector<std::string> refs;
  std::string query;
  for (size_t q = 0; q < asked.size(); ++q) {
    for (const std::string& v : values[size_t(asked[q])]) refs.push_back(v);
    query += (q == 0 ? "" : q + 1 == asked.size() ? ", and " : ", ") + keys[size_t(asked[q])];
  }
  const bool one = p.num_q * p.num_v == 1;
  const std::string noun = p.uuid_values ? "uuid" : "number";
  std::string user, prefix;
  if (one) {
    user = "A special magic " + noun + " is hidden within the following text. Make sure to memorize it. I will quiz "
           "you about the " + noun + " afterwards.\n";
    prefix = "The special magic " + noun + " for " + query + " mentioned in the provided text is";
  } else {
    user = "Some special magic " + noun + "s are hidden within the following text. Make sure to memorize them. I "
           "will quiz you about the " + noun + "s afterwards.\n";
    prefix = "The special magic " + noun + "s for " + query + " mentioned in the provided text are";
  }
  const std::string question = one ? "\nWhat is the special magic " + noun + " for " + query + " mentioned in the provided text?"
                                   : "\nWhat are all the special magic " + noun + "s for " + query + " mentioned in the provided text?";
  auto hay = std::make_shared<Haystack>(Haystack::noise());
  if (p.hay == NiahParams::kText) {
    if (!ctx.corpus) fail("{} needs a text haystack: give --haystack FILE|DIR (any local text)", info.name);
    *hay = Haystack::text(ctx.corpus, Rng(seed ^ 0x7e57ull).below(ctx.corpus->size()));
  } else if (p.hay == NiahParams::kNeedles) {
    // distractors: the same sentence with other keys and values (never an asked key, never a real value)
    auto g = std::make_shared<Rng>(seed ^ 0xd15ull);
    *hay = Haystack::generated([g, key, value, used_keys, used_values, vtype]() {
      std::string k = key(*g), v = value(*g);
      while (used_keys.count(k)) k = key(*g);
      while (used_values.count(v)) v = value(*g);
      return needle_sentence(vtype, k, v);
    });
  }
  if (p.hay != NiahParams::kNoise) {
    // depth in the model's tokens: the words of a text (or of UUIDs) vary too much for bytes to stand in for them
    auto cache = std::make_shared<std::unordered_map<std::string, int64_t>>();
    hay->set_weigher([cache, tok = ctx.format.tok](const std::string& w) {
      auto it = cache->find(w);
      if (it == cache->end()) it = cache->emplace(w, int64_t(tok->encode(" " + w, false).size())).first;
      return it->second;
    });
  }
  return [=](int64_t n, int64_t extra) {
    std::vector<Insert> ins;
    for (const Needle& nd : needles) ins.push_back({hay->at_depth(nd.depth, n), nd.text});
    return Built{user + hay->render(n, ins, extra) + question, prefix, depth_needle, refs};
  };
}

// ---- passkey --------------------------------------------------------------------------------------------------------

Builder passkey_builder(const SampleSpec& spec, uint64_t seed) {
  Rng r(seed);
  const std::string key = random_number(r, 5);
  const std::string needle = "The pass key is " + key + ". Remember it. " + key + " is the pass key.";
  auto hay = std::make_shared<Haystack>(Haystack::noise());
  const double depth = spec.depth / 100.0;
  return [=](int64_t n, int64_t extra) {
    return Built{"There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will "
                 "quiz you about the important information there.\n" +
                     hay->render(n, {{hay->at_depth(depth, n), needle}}, extra) + "\nWhat is the pass key?",
                 "The pass key is", needle, {key}};
  };
}

// ---- variable tracking -------------------------------------------------------------------------------------------

Builder vt_builder(uint64_t seed) {
  constexpr int kHops = 4;
  Rng r(seed);
  std::vector<std::string> names;
  std::set<std::string> seen;
  while (int(names.size()) < kHops + 1) {
    std::string v = random_letters(r, 5, true);
    if (seen.insert(v).second) names.push_back(v);
  }
  const std::string value = random_number(r, 5);
  std::vector<std::string> chain = {"VAR " + names[0] + " = " + value + "."};
  for (int j = 0; j < kHops; ++j) chain.push_back("VAR " + names[size_t(j + 1)] + " = VAR " + names[size_t(j)] + ".");
  std::vector<double> at(chain.size());
  for (double& x : at) x = r.uniform();
  std::sort(at.begin(), at.end());
  auto hay = std::make_shared<Haystack>(Haystack::noise());
  const std::string user0 = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n";
  const std::string question = "\nQuestion: Find all variables that are assigned the value " + value + " in the text above.";
  const std::string prefix = "Answer: According to the chain(s) of variable assignment in the text above, " +
                             std::to_string(kHops + 1) + " variables are assigned the value " + value + ", they are:";
  return [=](int64_t n, int64_t extra) {
    std::vector<Insert> ins;
    for (size_t j = 0; j < chain.size(); ++j) ins.push_back({hay->at_depth(at[j], n), chain[j]});
    return Built{user0 + hay->render(n, ins, extra) + question, prefix, "", names};
  };
}

// ---- common words extraction ----------------------------------------------------------------------------------------

std::string numbered(const std::vector<std::string>& words) {
  std::string s;
  for (size_t i = 0; i < words.size(); ++i) s += (i ? " " : "") + std::to_string(i + 1) + ". " + words[i];
  return s;
}

// n = entries of uncommon words; the 10 common words appear fc times each, every uncommon word fu times at most.
Builder cwe_builder(const SampleSpec& spec, uint64_t seed) {
  constexpr int kCommon = 10, kExample = 15;
  // RULER's frequencies (6/1 below 4K tokens, else 30/3); below 2K, 4/1 and no worked example, so short prompts fit
  const int fc = spec.length < 2048 ? 4 : spec.length < 4096 ? 6 : 30, fu = spec.length < 4096 ? 1 : 3;
  const bool example = spec.length >= 2048;
  const std::string intro = "Below is a numbered list of words. In these words, some appear more often than others. "
                            "Memorize the ones that appear most often.\n";
  const std::string question = "\nQuestion: What are the 10 most common words in the above list?";
  const std::string prefix = "Answer: The top 10 words that appear most often in the list are:";
  return [=](int64_t n, int64_t) {
    Rng r(seed);
    const int64_t uncommon = (n + fu - 1) / fu;
    const std::vector<std::string> pool = distinct_words(r, kExample + kCommon + uncommon);
    // a worked example first (10 words twice, 5 once), as RULER shows one
    std::vector<std::string> ex;
    for (int i = 0; i < kExample; ++i)
      for (int k = 0; k < (i < kCommon ? 2 : 1); ++k) ex.push_back(pool[size_t(i)]);
    Rng rs(seed ^ 0xc3eull);
    shuffle(ex, rs);
    std::vector<std::string> ex_answer(pool.begin(), pool.begin() + kCommon);
    std::vector<std::string> list;
    for (int i = 0; i < kCommon; ++i)
      for (int k = 0; k < fc; ++k) list.push_back(pool[size_t(kExample + i)]);
    for (int64_t i = 0; i < n; ++i) list.push_back(pool[size_t(kExample + kCommon + i / fu)]);
    shuffle(list, rs);
    Built b;
    b.user = (example ? intro + numbered(ex) + question + "\n" + prefix + " " + numbered(ex_answer) + "\n\n" : "") +
             intro + numbered(list) + question;
    b.prefix = prefix;
    b.refs.assign(pool.begin() + kExample, pool.begin() + kExample + kCommon);
    return b;
  };
}

// ---- frequent words extraction --------------------------------------------------------------------------------------

constexpr double kZeta2 = 1.6449340668482264;  // zeta(2): the Zipf(2) normalizer
int64_t zipf_count(int64_t n, int64_t rank) { return int64_t(double(n) / (double(rank) * double(rank) * kZeta2)); }

// The smallest word count whose 4th and 5th ranks differ (so the answer, ranks 2-4, is unambiguous).
int64_t fwe_min_words() {
  int64_t n = 1;
  while (zipf_count(n, 4) <= zipf_count(n, 5)) ++n;
  return n;
}

Builder fwe_builder(const SampleSpec& spec, uint64_t seed) {
  Rng r(seed);
  const int64_t vocab = std::max<int64_t>(10, spec.length / 50);  // RULER: max_seq_length // 50
  std::vector<std::string> coded;
  std::set<std::string> seen = {"..."};
  coded.push_back("...");  // rank 1 is noise, as in RULER
  while (int64_t(coded.size()) < vocab) {
    std::string w = random_letters(r, 6, false);
    if (seen.insert(w).second) coded.push_back(w);
  }
  const std::string intro = "Read the following coded text and track the frequency of each coded word. Find the three "
                            "most frequently appeared coded words. ";
  const std::string question = "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are "
                               "the three most frequently appeared words in the above coded text?";
  return [=](int64_t n, int64_t extra) {
    std::vector<std::string> text;
    for (int64_t k = 0; k < vocab; ++k)
      for (int64_t c = zipf_count(n, k + 1); c > 0; --c) text.push_back(coded[size_t(k)]);
    Rng rs(seed ^ 0xf3eull);
    shuffle(text, rs);
    // the finest step: more of the noise word, spread evenly (it is rank 1 already: the answer does not change)
    for (int64_t e = extra; e > 0; --e) text.insert(text.begin() + int64_t(text.size()) * e / (extra + 1), "...");
    std::string ctx_text;
    for (size_t i = 0; i < text.size(); ++i) ctx_text += (i ? " " : "") + text[i];
    return Built{intro + ctx_text + question,
                 "Answer: According to the coded text above, the three most frequently appeared words are:", "",
                 {coded[1], coded[2], coded[3]}};
  };
}

}  // namespace

std::span<const TaskInfo> all_tasks() { return kTasks; }

const TaskInfo* find_task(std::string_view name) {
  for (const Alias& a : kAliases)
    if (a.alias == name) name = a.name;
  for (const TaskInfo& t : kTasks)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<std::string> parse_tasks(const std::string& list) {
  std::vector<std::string> out;
  const auto add = [&out](std::string_view n) {
    if (std::find(out.begin(), out.end(), n) == out.end()) out.emplace_back(n);
  };
  std::string cur;
  for (char ch : list + ",") {
    if (ch == ' ') continue;
    if (ch != ',') {
      cur += ch;
      continue;
    }
    if (cur.empty()) continue;
    if (cur == "all" || cur == "ruler" || cur == "niah") {
      for (const TaskInfo& t : kTasks)
        if (cur == "all" || (cur == "ruler" && t.name != "passkey") || (cur == "niah" && t.name.starts_with("niah")))
          add(t.name);
    } else if (const TaskInfo* t = find_task(cur)) {
      add(t->name);
    } else {
      std::string best;
      size_t best_d = 4;
      for (const TaskInfo& t : kTasks)
        if (size_t d = edit_distance(cur, t.name); d < best_d) best_d = d, best = t.name;
      fail_usage("--tasks: unknown task '{}'{}; tasks: {}", cur, best.empty() ? "" : " (did you mean '" + best + "'?)",
                 task_list());
    }
    cur.clear();
  }
  if (out.empty()) fail_usage("--tasks: no task given; tasks: {}", task_list());
  return out;
}

TemplateMode parse_template_mode(const std::string& s) {
  if (s == "auto") return TemplateMode::kAuto;
  if (s == "chat") return TemplateMode::kChat;
  if (s == "raw") return TemplateMode::kRaw;
  fail_usage("--template '{}' is not one of auto, chat, raw", s);
}

PromptFormat::PromptFormat(const text::Tokenizer& t, TemplateMode m) : tok(&t) {
  const bool has = t.config().chat_format != text::ChatFormat::kNone;
  if (m == TemplateMode::kChat && !has) fail("--template chat: the tokenizer has no chat template sala can render");
  chat = m == TemplateMode::kChat || (m == TemplateMode::kAuto && has);
}

std::vector<int32_t> PromptFormat::encode(const std::string& user, const std::string& answer_prefix) const {
  if (chat) return tok->encode(tok->apply_chat_template({{"user", user}}, true) + answer_prefix, false);
  return tok->encode(user + " " + answer_prefix, true);
}

uint64_t sample_seed(uint64_t seed, const SampleSpec& s) {
  uint64_t h = mix(0x5a1aull, seed);
  for (char c : s.task) h = mix(h, uint64_t(uint8_t(c)));
  h = mix(h, uint64_t(s.length));
  h = mix(h, uint64_t(int64_t(std::llround(s.depth * 1000))));
  return mix(h, uint64_t(s.index));
}

Sample make_sample(const TaskContext& ctx, const SampleSpec& spec, int64_t* hint) {
  const TaskInfo* info = find_task(spec.task);
  if (!info) fail("unknown task '{}'", spec.task);
  if (info->depth && !(spec.depth >= 0 && spec.depth <= 100)) fail("{}: depth {} is outside [0, 100]", spec.task, spec.depth);
  Sample s;
  s.spec = spec;
  if (!info->depth) s.spec.depth = -1;
  s.seed = sample_seed(ctx.seed, s.spec);
  s.max_new = info->max_new;
  Builder build;
  int64_t n_min = 0;
  if (spec.task == "passkey") build = passkey_builder(s.spec, s.seed);
  else if (spec.task == "vt") build = vt_builder(s.seed);
  else if (spec.task == "cwe") build = cwe_builder(s.spec, s.seed);
  else if (spec.task == "fwe") build = fwe_builder(s.spec, s.seed), n_min = fwe_min_words();
  else build = niah_builder(*info, ctx, s.spec, s.seed);
  const auto count = [&](int64_t n, int64_t extra) {
    const Built b = build(n, extra);
    return int64_t(ctx.format.encode(b.user, b.prefix).size());
  };
  const Fit f = fit_length([&](int64_t n) { return count(n, 0); }, spec.length, n_min, hint ? *hint : 0);
  if (f.n < 0)
    fail("{}: the prompt is {} tokens with the smallest haystack, over the target length {} (give a longer --lengths)",
         spec.task, f.tokens, spec.length);
  if (hint) *hint = f.n;
  // A haystack of long words (code, tables, rare words) can leave more than 0.5% short: then part of the next word
  // closes the gap, so the prompt still lands within 1% (one word's worth of bytes is tried, the whole word is over);
  // fwe adds noise words ("..."). cwe's step stays one list entry.
  int64_t extra = 0;
  const bool words = spec.task != "cwe";
  if (words && f.tokens < spec.length - std::max<int64_t>(1, spec.length / 200))
    extra = std::max<int64_t>(0, fit_length([&](int64_t c) { return count(f.n, c); }, spec.length, 0, 0, 256).n);
  Built b = build(f.n, extra);
  s.user = std::move(b.user);
  s.answer_prefix = std::move(b.prefix);
  s.references = std::move(b.refs);
  s.needle = std::move(b.needle);
  s.ids = ctx.format.encode(s.user, s.answer_prefix);
  s.haystack_units = f.n;
  return s;
}

}  // namespace sala::eval
