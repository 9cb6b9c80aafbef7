// Runs many prompts through the engine together: up to max_seqs sequences in flight, each engine step
// (Model::step) carrying one decode token of every sequence that is generating plus prefill chunks of the others, up
// to step_rows rows (chunked prefill beside decode, as a server batches). Generation is greedy (argmax, lowest id on
// ties; drawn on the device when the backend samples, so no logits cross to the host) up to a job's max_new tokens
// or a stop id. A job may instead (or as well) take the logits of every prompt row
// (perplexity). On the CPU backend a sequence's logits are bitwise those it gets alone (tests/model/test_batch.cpp),
// so results do not depend on max_seqs or step_rows.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "sala/model/model.h"

namespace sala::eval {

struct Job {
  std::vector<int32_t> ids;        // the prompt (non-empty)
  int64_t max_new = 0;             // greedy tokens generated after the prompt
  std::vector<int64_t> stop_ids;   // generation ends at these (not included in the output)
  // When set: called for every prompt chunk with the chunk's first position and its logits (rows x vocab).
  std::function<void(int64_t pos0, std::span<const float> logits)> on_rows;
};

struct RunProgress {
  int64_t jobs_done = 0, jobs = 0;
  int64_t tokens_done = 0;  // prompt rows fed + tokens generated
  int64_t tokens_left = 0;  // an upper bound: prompt rows still to feed + answer tokens not yet generated
  double seconds = 0;
};

struct RunStats {
  int64_t prefill_tokens = 0, decode_tokens = 0, steps = 0;
  double seconds = 0;
  // Time of the steps that carried prompt rows (with any decode rows beside them) and of the decode-only steps.
  double prefill_seconds = 0, decode_seconds = 0;
};

struct RunOptions {
  int64_t max_seqs = 4;      // sequences in flight (the cache plan must hold them on CUDA)
  int64_t step_rows = 2048;  // rows of one engine step at most (>= max_seqs)
  std::function<void(const RunProgress&)> progress;  // after every step
};

// The generated ids of each job, in job order. Throws sala::Error on non-finite logits (naming the job and position).
std::vector<std::vector<int32_t>> run_jobs(const Model& m, std::span<const Job> jobs, const RunOptions& o,
                                           RunStats* stats = nullptr);

}  // namespace sala::eval
