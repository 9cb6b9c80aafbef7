// sala: command-line entry point. Library code throws sala::Error for bad input; it is reported here with exit code 1.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "commands.h"
#include "sala/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{
      "sala: run, inspect and convert hybrid sparse + linear attention models (MiniCPM-SALA family).\n"
      "Models are Hugging Face folders (config.json + *.safetensors). Start with:\n"
      "  sala init --preset sala-tiny --out /tmp/tiny     # a random-weight model\n"
      "  sala info /tmp/tiny                              # what it is and what it costs\n"
      "  sala generate /tmp/tiny --ids 1,5,9              # token ids in, token ids out\n"
      "  sala generate models/sala-tiny --prompt \"Hi\"     # text in, text out (the bundled tiny model)\n"
      "Every subcommand has --help.\n"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  sala::app::add_model_commands(app);
  sala::app::add_generate_commands(app);
  sala::app::add_chat_commands(app);
  sala::app::add_compare_commands(app);
  add_text_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sala::Error& e) {
    std::fprintf(stderr, "sala: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sala: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
