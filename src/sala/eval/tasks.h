// The synthetic long-context tasks (RULER's, ../shared/research/kernels-engines.md §7, plus passkey retrieval): the
// task table, the prompt format (the model's chat template, or raw completion) and the sample generator.
// A sample is a pure function of (task, target length, depth, index, seed, tokenizer, format, corpus): its own seed
// is derived from those, so it does not depend on which other tasks, lengths or depths a run asks for. The haystack is
// sized by fit_length so the prompt, in the model's tokens, is as long as possible without passing the target (within
// 1% of it from a few hundred tokens on); the answer's tokens come on top.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sala/text/tokenizer.h"

namespace sala::eval {

enum class Metric { kAll, kPart };  // RULER's string_match_all / string_match_part (scoring.h)

struct TaskInfo {
  std::string_view name, what;
  bool depth = false;          // one needle placed at each depth of the grid (else: positions drawn at random)
  bool text_haystack = false;  // the haystack is a local text corpus (--haystack)
  int64_t max_new = 0;         // answer tokens generated (RULER's budgets)
  Metric metric = Metric::kAll;
};

std::span<const TaskInfo> all_tasks();
const TaskInfo* find_task(std::string_view name);  // exact names and the aliases (niah_single = niah_single_1, ...)
// "a,b,c": task names, aliases and the groups "all" / "ruler" (every task but passkey) / "niah"; canonical names,
// deduplicated, in the order given. UsageError naming --tasks (with the list of tasks) for an unknown name.
std::vector<std::string> parse_tasks(const std::string& list);

enum class TemplateMode { kAuto, kChat, kRaw };
TemplateMode parse_template_mode(const std::string& s);  // auto | chat | raw (UsageError naming --template)

// How a task's question becomes token ids: chat = the user message in the model's chat template, then the answer
// prefix as the start of the assistant's turn; raw = question, a space, the answer prefix (with BOS as the tokenizer
// adds it). auto = chat when the tokenizer has a chat format.
struct PromptFormat {
  const text::Tokenizer* tok = nullptr;
  bool chat = false;
  PromptFormat(const text::Tokenizer& t, TemplateMode m);
  std::vector<int32_t> encode(const std::string& user, const std::string& answer_prefix) const;
};

struct SampleSpec {
  std::string task;
  int64_t length = 0;   // target prompt tokens
  double depth = -1;    // needle depth in percent (depth tasks), -1 otherwise
  int64_t index = 0;    // sample number within its (task, length, depth) cell
};

struct Sample {
  SampleSpec spec;
  uint64_t seed = 0;                    // this sample's own seed
  std::string user, answer_prefix;      // the question (user message) and the start of the answer
  std::vector<std::string> references;  // what a correct answer contains
  std::string needle;                   // depth tasks: the queried needle sentence (placed at spec.depth)
  std::vector<int32_t> ids;             // the prompt as the model gets it
  int64_t haystack_units = 0;           // words (or list entries) of haystack the length search settled on
  int64_t max_new = 0;
};

// What sample generation needs besides the spec.
struct TaskContext {
  PromptFormat format;
  std::shared_ptr<const std::vector<std::string>> corpus;  // sentences of --haystack (text-haystack tasks)
  uint64_t seed = 42;
};

uint64_t sample_seed(uint64_t seed, const SampleSpec& s);
// One sample. hint: the haystack size of a previous sample of the same task and length (0 = none), updated.
// Throws sala::Error when the task's fixed text alone is over the target length, or a text task has no corpus.
Sample make_sample(const TaskContext& ctx, const SampleSpec& spec, int64_t* hint = nullptr);

}  // namespace sala::eval
