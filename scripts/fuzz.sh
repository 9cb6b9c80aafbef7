#!/usr/bin/env bash
# Builds the libFuzzer target fuzz_safetensors_header with clang (`cmake --preset fuzz`) and runs it for $1 seconds
# (default 30) on a seed corpus regenerated in build/fuzz/corpus: a valid file written by sala's own writer plus a few
# mutations of it (the target writes them when SALA_FUZZ_SEED_DIR is set). Inputs the fuzzer finds interesting stay in
# the corpus for the next run. Exits non-zero if the fuzzer finds a crash; the reproducer is left in
# build/fuzz/artifacts/ (replay: build/fuzz/fuzz_safetensors_header <file>).
# Env: SALA_BUILD_JOBS (default 2) parallel compile jobs.
set -euo pipefail

secs="${1:-30}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || ((secs < 1)); then
  echo "usage: $0 [seconds>0]" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build=build/fuzz
target=fuzz_safetensors_header
corpus="$build/corpus"
artifacts="$build/artifacts"

# The fuzz preset (SALA_FUZZ=ON) builds each fuzz/*.cpp with -fsanitize=fuzzer,address,undefined against the sources
# it exercises, themselves instrumented (see the SALA_FUZZ block of CMakeLists.txt).
cmake --preset fuzz --no-warn-unused-cli >/dev/null
cmake --build "$build" --target "$target" -j "${SALA_BUILD_JOBS:-2}"

mkdir -p "$corpus" "$artifacts"
cat >"$build/safetensors.dict" <<'DICT'
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F64\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"I64\""
"\"I32\""
"\"U8\""
"\"BOOL\""
"18446744073709551615"
"9223372036854775807"
"4611686018427387904"
"\"format\":\"pt\""
"\\u0000"
DICT

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

# Seed pass: writes the seeds, then runs every corpus input once (-runs=0), so a known crasher fails fast.
SALA_FUZZ_SEED_DIR="$corpus" "$build/$target" -runs=0 -artifact_prefix="$artifacts/" "$corpus"

set +e
"$build/$target" "$corpus" \
  -dict="$build/safetensors.dict" \
  -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$artifacts/" -print_final_stats=1
rc=$?
set -e
if ((rc != 0)); then
  echo "fuzz.sh: $target found a problem (exit $rc); reproducers in $artifacts/:" >&2
  ls -t "$artifacts" | head -5 >&2
  exit "$rc"
fi
echo "fuzz.sh: $target ran ${secs}s with no findings (corpus: $(ls "$corpus" | wc -l) inputs)"
