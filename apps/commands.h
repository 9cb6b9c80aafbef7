// Subcommand registration: each apps/cmd_*.cpp adds its subcommands to the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>

namespace sala::app {

void add_model_commands(CLI::App& app);     // info, init, import
void add_generate_commands(CLI::App& app);  // generate, dump
void add_chat_commands(CLI::App& app);      // chat
void add_compare_commands(CLI::App& app);   // compare
void add_bench_commands(CLI::App& app);     // bench
void add_eval_commands(CLI::App& app);      // eval

}  // namespace sala::app

void add_text_commands(CLI::App& app);  // tokenize, detokenize, tokenizer train
