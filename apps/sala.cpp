// sala: command-line entry point, and the one place errors become messages and exit codes (README "Errors"):
//   0 success; 1 bad input or a failed request (`sala: error: ...` naming the file, tensor, field or option);
//   2 a malformed command line (`sala: error: ...` plus where to find help); 3 an internal error (a bug in sala).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include "commands.h"
#include "sala/core/edit_distance.h"
#include "sala/core/error.h"
#include "sala_version.h"
#ifdef SALA_HAVE_CUDA
#include "sala/backend/cuda/cuda_backend.h"
#endif

namespace {

constexpr int kExitError = 1, kExitUsage = 2, kExitInternal = 3;

struct UnknownCommand {
  std::string message, path;  // path: the command whose help lists the valid words
};

// CLI11 reports `sala generat` as "A subcommand is required": name the unknown word (and the nearest command) instead.
// Walks the leading words of the command line through the subcommand tree.
void check_subcommand_words(CLI::App& app, int argc, char** argv) {
  CLI::App* cur = &app;
  std::string path = "sala";
  for (int i = 1; i < argc && argv[i][0] != '-'; ++i) {
    auto subs = cur->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return;
    CLI::App* next = nullptr;
    for (CLI::App* s : subs)
      if (s->check_name(argv[i])) next = s;
    if (!next) {
      if (cur->get_require_subcommand_min() == 0) return;  // a positional argument, not a command
      std::string names, best;
      size_t best_d = 3;  // suggest only close matches
      for (CLI::App* s : subs) {
        names += (names.empty() ? "" : ", ") + s->get_name();
        size_t d = sala::edit_distance(argv[i], s->get_name());
        if (d < best_d) best_d = d, best = s->get_name();
      }
      throw UnknownCommand{(path == "sala" ? "" : path.substr(5) + ": ") + "unknown command '" + argv[i] + "'" +
                               (best.empty() ? "" : " (did you mean '" + best + "'?)") + "; commands: " + names,
                           path};
    }
    cur = next;
    path += " " + next->get_name();
  }
}

// The deepest subcommand the command line reached, for the help hint.
std::string command_path(CLI::App& app) {
  std::string path = "sala";
  CLI::App* cur = &app;
  while (true) {
    auto parsed = cur->get_subcommands();
    if (parsed.empty()) break;
    cur = parsed.front();
    path += " " + cur->get_name();
  }
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sala: run, inspect and convert hybrid sparse + linear attention models (MiniCPM-SALA family).\n"
      "Models are Hugging Face folders (config.json + *.safetensors). Start with:\n"
      "  sala init --preset sala-tiny --out /tmp/tiny     # a random-weight model\n"
      "  sala info /tmp/tiny                              # what it is and what it costs\n"
      "  sala generate /tmp/tiny --ids 1,5,9              # token ids in, token ids out\n"
      "  sala generate models/sala-tiny --prompt \"Hi\"     # text in, text out (the bundled tiny model)\n"
      "Every subcommand has --help. Exit codes: 0 ok, 1 error in the input or request, 2 bad command line, 3 internal "
      "error.\n"};
#ifdef SALA_HAVE_CUDA
  sala::cuda::register_backend();
#endif
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  app.set_version_flag("--version", std::string("sala ") + SALA_VERSION + " (commit " + SALA_COMMIT + ")");
  sala::app::add_model_commands(app);
  sala::app::add_generate_commands(app);
  sala::app::add_chat_commands(app);
  sala::app::add_compare_commands(app);
  sala::app::add_bench_commands(app);
  sala::app::add_eval_commands(app);
  add_text_commands(app);
  try {
    check_subcommand_words(app, argc, argv);
    app.parse(argc, argv);
  } catch (const UnknownCommand& e) {
    std::fprintf(stderr, "sala: error: %s\n(see '%s --help')\n", e.message.c_str(), e.path.c_str());
    return kExitUsage;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string where = command_path(app);
    std::fprintf(stderr, "sala: error: %s\n(see '%s --help')\n", e.what(), where.c_str());
    return kExitUsage;
  } catch (const sala::UsageError& e) {
    std::fprintf(stderr, "sala: error: %s\n(see '%s --help')\n", e.what(), command_path(app).c_str());
    return kExitUsage;
  } catch (const sala::Error& e) {
    std::fprintf(stderr, "sala: error: %s\n", e.what());
    return kExitError;
  } catch (const std::filesystem::filesystem_error& e) {
    // Paths named by the user that the filesystem refused (permissions, a full disk, a file where a folder is needed).
    std::string what = e.code().message();
    std::string p1 = e.path1().string(), p2 = e.path2().string();
    std::fprintf(stderr, "sala: error: %s%s%s: %s\n", p1.c_str(), p2.empty() ? "" : " -> ", p2.c_str(), what.c_str());
    return kExitError;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "sala: error: out of memory (the model, context or request is larger than this machine's "
                         "memory; try a smaller --context or --chunk)\n");
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sala: internal error: %s (this is a bug in sala; please report it)\n", e.what());
    return kExitInternal;
  }
  return 0;
}
