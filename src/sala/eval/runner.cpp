#include "sala/eval/runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <list>

#include "sala/core/error.h"
#include "sala/runtime/sampler.h"

namespace sala::eval {

namespace {

struct Live {
  size_t job = 0;
  SequenceState st;
  int64_t fed = 0;        // prompt tokens fed
  bool decoding = false;  // the prompt is in; the next item is the last generated token
  int64_t generated = 0;  // tokens generated (a stop id included)
  std::vector<int32_t> one;
  std::vector<float> logits;
  int32_t drawn = -1;  // the token drawn on the device (Model::Draw), -1 for non-finite logits
  Model::Draw draw;
};

const SamplingParams kGreedy{};

}  // namespace

std::vector<std::vector<int32_t>> run_jobs(const Model& m, std::span<const Job> jobs, const RunOptions& o,
                                           RunStats* stats) {
  if (o.max_seqs < 1 || o.step_rows < o.max_seqs)
    fail("eval: {} sequences in flight and {} rows per step: need 1 <= sequences <= rows", o.max_seqs, o.step_rows);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t V = m.config().vocab_size;
  std::vector<std::vector<int32_t>> out(jobs.size());
  RunProgress pr;
  pr.jobs = int64_t(jobs.size());
  for (const Job& j : jobs) {
    if (j.ids.empty()) fail("eval: job {} has an empty prompt", &j - jobs.data());
    pr.tokens_left += int64_t(j.ids.size()) + j.max_new;
  }
  RunStats rs;
  std::list<Live> live;
  size_t next = 0;
  // Greedy tokens are drawn where the logits are when the backend can (CUDA: no logits cross to the host).
  const bool on_device = m.samples_on_device();
  const auto nonfinite = [&](const Live& l, int64_t pos) {
    fail("eval: non-finite logits at position {} of prompt {} (of {} tokens)", pos, l.job, jobs[l.job].ids.size());
  };
  // The token after a row's logits; non-finite logits are an error, never a token.
  const auto pick = [&](const Live& l, std::span<const float> row, int64_t pos) {
    const int32_t t = argmax(row);
    if (!std::isfinite(row[size_t(t)])) nonfinite(l, pos);
    return t;
  };
  const auto drawn = [&](const Live& l, int64_t pos) {
    if (l.drawn < 0) nonfinite(l, pos);
    return l.drawn;
  };
  // Takes a generated token: true when the job is finished.
  const auto take = [&](Live& l, int32_t t) {
    const Job& j = jobs[l.job];
    ++l.generated, ++pr.tokens_done, --pr.tokens_left;
    const bool stop = std::find(j.stop_ids.begin(), j.stop_ids.end(), int64_t(t)) != j.stop_ids.end();
    if (!stop) out[l.job].push_back(t);
    if (stop || l.generated >= j.max_new) {
      pr.tokens_left -= j.max_new - l.generated;  // the answer budget it did not use
      return true;
    }
    l.one = {t};
    l.decoding = true;
    return false;
  };
  while (next < jobs.size() || !live.empty()) {
    while (int64_t(live.size()) < o.max_seqs && next < jobs.size()) {
      const Job& j = jobs[next];
      Live l;
      l.job = next++;
      l.st = m.new_state(int64_t(j.ids.size()) + std::max<int64_t>(j.max_new, 1));
      live.push_back(std::move(l));
      Live& b = live.back();  // a list: the draw's token pointer stays valid
      b.draw = Model::Draw{&kGreedy, 0, {}, &b.drawn};
    }
    std::vector<Model::Item> items;
    std::vector<Live*> who;
    std::vector<int64_t> rows;
    int64_t budget = o.step_rows;
    for (Live& l : live)
      if (l.decoding) {
        Model::end_call(l.st);
        m.begin_call(l.st, 1);
        items.push_back({&l.st, l.one, false, on_device ? nullptr : &l.logits, on_device ? &l.draw : nullptr});
        who.push_back(&l);
        rows.push_back(1);
        --budget;
      }
    for (Live& l : live) {
      if (l.decoding || budget == 0) continue;
      const Job& j = jobs[l.job];
      const int64_t len = int64_t(j.ids.size()), n = std::min(budget, len - l.fed);
      if (l.fed == 0) m.begin_call(l.st, len);
      // logits for on_rows, or for the answer's first token when the host picks it; a draw when the device does
      const bool answer = l.fed + n == len && j.max_new > 0;
      const bool rows_wanted = bool(j.on_rows) || (answer && !on_device);
      items.push_back({&l.st, std::span(j.ids).subspan(size_t(l.fed), size_t(n)), bool(j.on_rows),
                       rows_wanted ? &l.logits : nullptr, answer && on_device ? &l.draw : nullptr});
      who.push_back(&l);
      rows.push_back(n);
      budget -= n;
    }
    const auto ts = std::chrono::steady_clock::now();
    m.step(items);
    const double step_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
    ++rs.steps;
    bool prompt_rows = false;
    for (Live* l : who) prompt_rows |= !l->decoding;
    (prompt_rows ? rs.prefill_seconds : rs.decode_seconds) += step_s;
    for (size_t i = 0; i < who.size(); ++i) {
      Live& l = *who[i];
      const Job& j = jobs[l.job];
      bool done = false;
      if (l.decoding) {
        ++rs.decode_tokens;
        done = take(l, on_device ? drawn(l, l.st.pos - 1) : pick(l, l.logits, l.st.pos - 1));
      } else {
        const int64_t pos0 = l.fed, n = rows[i];
        if (j.on_rows) j.on_rows(pos0, l.logits);
        l.fed += n;
        rs.prefill_tokens += n;
        pr.tokens_done += n;
        pr.tokens_left -= n;
        if (l.fed == int64_t(j.ids.size())) {
          Model::end_call(l.st);
          if (j.max_new == 0) {
            done = true;
          } else if (on_device) {
            done = take(l, drawn(l, l.fed - 1));
          } else {
            const std::span<const float> last = std::span<const float>(l.logits).subspan(l.logits.size() - size_t(V));
            done = take(l, pick(l, last, l.fed - 1));
          }
        }
      }
      if (done) {
        ++pr.jobs_done;
        l.job = SIZE_MAX;  // removed below (states go back to the backend as soon as they finish)
      }
    }
    live.remove_if([](const Live& l) { return l.job == SIZE_MAX; });
    pr.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.progress) o.progress(pr);
  }
  rs.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) *stats = rs;
  return out;
}

}  // namespace sala::eval
