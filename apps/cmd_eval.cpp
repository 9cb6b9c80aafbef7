// sala eval: RULER-style long-context tasks, passkey retrieval and perplexity (docs/eval.md). Samples are generated
// for the model's own tokenizer (seeded; the haystack sized to each target length), run together through the engine
// (several sequences per step, greedy answers), scored by RULER's rules; results go to stdout as a Markdown table and,
// with --out, to results.jsonl, summary.md, heatmap.tsv and one heatmap PNG per task (tools/plot_eval.py).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <map>

#include "commands.h"
#include "common.h"
#include "gen_common.h"
#include "sala/core/error.h"
#include "sala/eval/files.h"
#include "sala/eval/haystack.h"
#include "sala/eval/perplexity.h"
#include "sala/eval/report.h"
#include "sala/eval/runner.h"
#include "sala/eval/scoring.h"
#include "sala/eval/tasks.h"
#include "sala/io/atomic_file.h"
#include "sala/model/presets.h"
#include "sala/text/tokenizer.h"

namespace sala::app {

namespace {

namespace fs = std::filesystem;

double parse_depth(const std::string& s) {
  size_t used = 0;
  double v = -1;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !(v >= 0 && v <= 100))
    fail_usage("--depths: '{}' is not a depth in percent (0 to 100)", s);
  return v;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// tools/plot_eval.py beside the source tree the binary was built in (build/<preset>/sala), or under the working dir.
std::string find_plot_script() {
  std::vector<fs::path> c;
  if (const char* e = std::getenv("SALA_TOOLS_DIR")) c.push_back(fs::path(e) / "plot_eval.py");
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (const char* up : {"../../tools", "../tools", "tools"}) c.push_back(exe.parent_path() / up / "plot_eval.py");
  c.push_back(fs::path("tools") / "plot_eval.py");
  for (const fs::path& p : c)
    if (fs::is_regular_file(p, ec)) return p.lexically_normal().string();
  return "";
}

// The heatmap PNGs: tools/plot_eval.py with Debian's python3-matplotlib; skipped with a note when either is missing.
void plot(const std::string& dir, bool quiet) {
  const std::string script = find_plot_script();
  const char* py = "/usr/bin/python3";
  std::string why;
  if (script.empty()) why = "tools/plot_eval.py not found (set SALA_TOOLS_DIR)";
  else if (access(py, X_OK) != 0) why = "/usr/bin/python3 is not installed";
  else if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") != 0)
    why = "python3-matplotlib is not installed";
  if (why.empty()) {
    const std::string cmd = std::string(py) + " " + shell_quote(script) + " " + shell_quote(dir + "/heatmap.tsv") +
                            " -o " + shell_quote(dir) + (quiet ? " >/dev/null" : " 1>&2");
    if (std::system(cmd.c_str()) == 0) return;
    why = "tools/plot_eval.py failed";
  }
  fmt::print(stderr, "eval: heatmap PNGs skipped ({}); the data is in {}/heatmap.tsv\n", why, dir);
}

struct Args {
  std::string model, preset, tokenizer, tasks, lengths = "4k", depths = "0,25,50,75,100", haystack, out,
      tmpl = "auto", device = "cpu";
  std::vector<std::string> ppl;
  int64_t samples = 4, batch = 4, chunk = 0, max_new = 0, context = 0, window = 0, stride = 0;
  uint64_t seed = 42, weight_seed = 1;
  bool check_weights = false, quiet = false, no_plot = false;
};

void run_eval(const Args& a) {
  // ---- the command line, checked before anything is loaded
  if (a.tasks.empty() && a.ppl.empty()) fail_usage("give --tasks LIST and/or --ppl FILE|DIR (see 'sala eval --help')");
  const std::vector<std::string> tasks = a.tasks.empty() ? std::vector<std::string>{} : eval::parse_tasks(a.tasks);
  std::vector<int64_t> lengths;
  for (const std::string& s : split_list(a.lengths)) lengths.push_back(parse_length(s, 16));
  if (!tasks.empty() && lengths.empty()) fail_usage("--lengths: no length given");
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  std::vector<double> depths;
  for (const std::string& s : split_list(a.depths)) depths.push_back(parse_depth(s));
  if (depths.empty()) fail_usage("--depths: no depth given");
  const eval::TemplateMode tmode = eval::parse_template_mode(a.tmpl);
  if (a.samples < 1) fail_usage("--samples = {} must be >= 1", a.samples);
  if (a.batch < 1) fail_usage("--batch = {} must be >= 1", a.batch);
  if (a.chunk < 0) fail_usage("--chunk = {} must be >= 0 (0 = 2048 on cpu, 8192 on cuda)", a.chunk);
  if (a.max_new < 0) fail_usage("-n/--max-new-tokens = {} must be >= 0 (0 = each task's budget)", a.max_new);
  if (a.context < 0) fail_usage("--context = {} must be >= 0 (0 = max_position_embeddings)", a.context);
  if (a.window < 0) fail_usage("--window = {} must be >= 0 (0 = the context limit)", a.window);
  if (a.stride < 0) fail_usage("--stride = {} must be >= 0 (0 = the window)", a.stride);
  if (a.window > 0 && a.stride > a.window)
    fail_usage("--stride {} is over --window {}: the tokens between windows would never be scored", a.stride, a.window);
  if (!a.preset.empty() && !a.model.empty()) fail_usage("give a model folder or --preset NAME, not both");
  if (a.preset.empty() && a.model.empty()) fail_usage("give a model folder (or --preset NAME for random weights)");
  if (!a.preset.empty() && a.tokenizer.empty())
    fail_usage("--preset {}: a random-weight model has no tokenizer; give --tokenizer PATH", a.preset);
  bool text_tasks = false;
  for (const std::string& t : tasks) text_tasks |= eval::find_task(t)->text_haystack;
  if (text_tasks && a.haystack.empty()) {
    std::string which;
    for (const std::string& t : tasks)
      if (eval::find_task(t)->text_haystack) which += (which.empty() ? "" : ", ") + t;
    fail_usage("--haystack FILE|DIR is needed by {} (a text haystack: any local text)", which);
  }
  std::vector<std::string> ppl_files;
  for (const std::string& p : a.ppl)
    for (std::string& f : eval::text_files(p, "--ppl")) ppl_files.push_back(std::move(f));
  std::shared_ptr<const std::vector<std::string>> corpus;
  if (!a.haystack.empty()) corpus = eval::load_corpus(a.haystack, "--haystack");
  const Device dev = parse_device(a.device);

  // ---- model and tokenizer
  const auto t_load = clk::now();
  const ModelConfig cfg0 = a.preset.empty() ? load_config(a.model) : preset_config(a.preset);
  const std::string tok_path = a.tokenizer.empty() ? a.model : a.tokenizer;
  const auto tok = text::Tokenizer::load(tok_path);
  if (tok->vocab_size() > cfg0.vocab_size)
    fail("{}: the tokenizer has {} ids but the model's vocab_size is {}", tok_path, tok->vocab_size(), cfg0.vocab_size);
  const int64_t limit = context_limit(cfg0, a.context);
  int64_t need = 0;  // the longest sequence of the run
  for (const std::string& t : tasks) {
    const int64_t budget = a.max_new > 0 ? a.max_new : eval::find_task(t)->max_new;
    for (int64_t L : lengths) {
      if (L + budget > limit)
        fail("--lengths: {} ({} prompt tokens + {} answer tokens of {}) is over the context limit of {} tokens "
             "(--context; max_position_embeddings is {})",
             eval::length_label(L), L, budget, t, limit, cfg0.max_position_embeddings);
      need = std::max(need, L + budget);
    }
  }
  if (a.window > limit)
    fail("--window {} is over the context limit of {} tokens (--context)", a.window, limit);
  const int64_t window = a.window > 0 ? a.window : limit;
  if (!ppl_files.empty()) need = std::max(need, window);
  Model m = a.preset.empty() ? Model::load(a.model, {.check_finite = a.check_weights, .device = dev})
                             : Model::random(cfg0, a.weight_seed, dev);
  const double load_s = since(t_load);

  // ---- samples
  const eval::TaskContext ctx{eval::PromptFormat(*tok, tmode), corpus, a.seed};
  std::vector<eval::Sample> samples;
  const auto t_gen = clk::now();
  auto shown = t_gen;
  for (const std::string& t : tasks) {
    const eval::TaskInfo& info = *eval::find_task(t);
    for (int64_t L : lengths) {
      int64_t hint = 0;
      for (double d : info.depth ? depths : std::vector<double>{-1})
        for (int64_t i = 0; i < a.samples; ++i) {
          eval::Sample s = eval::make_sample(ctx, {t, L, d, i}, &hint);
          if (a.max_new > 0) s.max_new = a.max_new;
          samples.push_back(std::move(s));
          if (!a.quiet && since(shown) > 0.5) {
            fmt::print(stderr, "\reval: generated {} samples   ", samples.size());
            shown = clk::now();
          }
        }
    }
  }
  if (!a.quiet && !samples.empty())
    fmt::print(stderr, "\reval: generated {} samples ({:.1f}s)\n", samples.size(), since(t_gen));

  // ---- the cache plan and the run
  const int64_t step_rows = std::max(a.chunk > 0 ? a.chunk : (dev == Device::CUDA ? 8192 : 2048), a.batch);
  CachePlan plan;
  plan.max_seqs = std::max<int64_t>(1, std::min<int64_t>(a.batch, int64_t(samples.size()) + int64_t(ppl_files.size()) * 64));
  plan.max_tokens = std::max<int64_t>(need, 1);
  plan.total_tokens = plan.max_tokens * plan.max_seqs;
  plan.max_step_rows = step_rows;
  m.plan(plan);
  eval::RunOptions ro;
  ro.max_seqs = plan.max_seqs;
  ro.step_rows = step_rows;
  auto last = clk::now() - std::chrono::seconds(10);
  const char* what = "samples";
  ro.progress = [&](const eval::RunProgress& p) {
    if (a.quiet) return;
    const bool end = p.jobs_done == p.jobs;
    if (!end && since(last) < 0.5) return;
    last = clk::now();
    const double rate = double(p.tokens_done) / std::max(p.seconds, 1e-9);
    fmt::print(stderr, "\reval: {}/{} {}, {} tokens, {:.0f} tok/s, ETA {:.0f}s   {}", p.jobs_done, p.jobs, what,
               p.tokens_done, rate, double(p.tokens_left) / std::max(rate, 1e-9), end ? "\n" : "");
  };
  const std::vector<int64_t> stops = stop_ids_for(m, tok.get());
  std::vector<eval::Job> jobs;
  for (const eval::Sample& s : samples) jobs.push_back({s.ids, s.max_new, stops, {}});
  eval::RunStats st;
  const std::vector<std::vector<int32_t>> outs = eval::run_jobs(m, jobs, ro, &st);
  std::vector<eval::Record> recs;
  for (size_t k = 0; k < samples.size(); ++k) {
    const eval::Sample& s = samples[k];
    eval::Record r{s.spec.task, s.spec.length, int64_t(s.ids.size()), s.spec.depth, s.spec.index, s.seed,
                   s.references, tok->decode(outs[k], true), int64_t(outs[k].size()), 0};
    r.score = eval::score(eval::find_task(s.spec.task)->metric, r.output, r.references);
    recs.push_back(std::move(r));
  }
  std::vector<eval::PplResult> ppl;
  eval::RunStats pst;
  if (!ppl_files.empty()) {
    std::vector<eval::PplDoc> docs;
    for (const std::string& f : ppl_files) {
      const std::string text = eval::read_text(f, "--ppl");
      docs.push_back({f, tok->encode(text, true), int64_t(text.size())});
      check_ids_in_vocab(docs.back().ids, m.config(), f);
    }
    what = "windows";
    ppl = eval::perplexity(m, docs, window, a.stride > 0 ? a.stride : window, ro, &pst);
  }

  // ---- report
  const double secs = st.seconds + pst.seconds;
  const int64_t pre = st.prefill_tokens + pst.prefill_tokens, dec = st.decode_tokens;
  std::string header = fmt::format(
      "sala eval: {} on {}, tokenizer {}, {} prompts, seed {}; {} samples, {:.1f}s (load {:.1f}s), prefill {} tokens "
      "({:.0f} tok/s), decode {} tokens ({:.1f} tok/s in decode-only steps), {} sequences per step at most\n\n",
      a.preset.empty() ? a.model : a.preset + " (random weights)", m.backend().describe(), tok_path,
      ctx.format.chat ? "chat-template" : "raw", a.seed, samples.size(), secs, load_s, pre,
      double(pre) / std::max(st.prefill_seconds + pst.prefill_seconds, 1e-9), dec,
      double(dec) / std::max(st.decode_seconds, 1e-9), plan.max_seqs);
  const std::string md = eval::summary_markdown(recs, ppl, header);
  if (!a.out.empty()) {
    fs::create_directories(a.out);
    std::string jl;
    for (const eval::Record& r : recs) jl += eval::record_json(r) + "\n";
    for (const eval::PplResult& r : ppl) jl += eval::ppl_json(r, window, a.stride > 0 ? a.stride : window) + "\n";
    io::write_file_atomic(a.out + "/results.jsonl", jl);
    io::write_file_atomic(a.out + "/summary.md", md);
    if (!recs.empty()) {
      io::write_file_atomic(a.out + "/heatmap.tsv", eval::heatmap_tsv(recs));
      if (!a.no_plot) plot(a.out, a.quiet);
    }
  }
  std::fputs(md.c_str(), stdout);
}

}  // namespace

void add_eval_commands(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "eval", "Long-context evaluation: RULER-style tasks (NIAH, variable tracking, common/frequent words) and "
              "passkey retrieval at chosen lengths and needle depths, and perplexity of text files (docs/eval.md)");
  cmd->add_option("model", a->model, "Model folder (config.json + safetensors + tokenizer)");
  cmd->add_option("--preset", a->preset, "Random weights of a named config instead of a model (throughput checks; "
                                         "needs --tokenizer), e.g. minicpm-sala-9b");
  cmd->add_option("--weight-seed", a->weight_seed, "Seed of the --preset weights")->capture_default_str();
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer folder or file (default: the model folder)");
  cmd->add_option("--tasks", a->tasks,
                  "Tasks, comma-separated: niah_single_1..3, niah_multikey_1..3, niah_multivalue, niah_multiquery, "
                  "vt, cwe, fwe, passkey; groups all, ruler, niah");
  cmd->add_option("--lengths", a->lengths, "Target prompt lengths in the model's tokens (4096, 4k, 128k, 1m)")
      ->capture_default_str();
  cmd->add_option("--depths", a->depths, "Needle depths in percent for the depth tasks (the heatmap's rows)")
      ->capture_default_str();
  cmd->add_option("--samples", a->samples, "Samples per task, length and depth")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Sample seed (same seed, same samples)")->capture_default_str();
  cmd->add_option("--haystack", a->haystack, "Text file or folder for the text-haystack tasks (niah_single_2, ...)");
  cmd->add_option("--template", a->tmpl, "auto (the chat template when the tokenizer has one), chat or raw")
      ->capture_default_str();
  cmd->add_option("-n,--max-new-tokens", a->max_new, "Answer tokens per sample (0 = each task's RULER budget)")
      ->capture_default_str();
  cmd->add_option("--ppl", a->ppl, "Perplexity of a text file, or of every file in a folder (repeatable)");
  cmd->add_option("--window", a->window, "Perplexity window in tokens (0 = the context limit)")->capture_default_str();
  cmd->add_option("--stride", a->stride, "Perplexity window stride (0 = the window: disjoint windows)")
      ->capture_default_str();
  cmd->add_option("--batch", a->batch, "Sequences in flight (run together in each engine step)")->capture_default_str();
  cmd->add_option("--chunk", a->chunk, "Rows per engine step (0 = 2048 on cpu, 8192 on cuda)")->capture_default_str();
  cmd->add_option("--context", a->context, "Context limit (default: max_position_embeddings)");
  cmd->add_option("--out", a->out, "Folder for results.jsonl, summary.md, heatmap.tsv and heatmap_<task>.png");
  cmd->add_flag("--no-plot", a->no_plot, "Do not draw the heatmap PNGs");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress on stderr");
  add_check_weights_flag(cmd, a->check_weights);
  add_device_option(cmd, a->device);
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace sala::app
