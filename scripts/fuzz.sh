#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (`cmake --preset fuzz`) and runs them for $1 seconds in all (default 30),
# split evenly between them:
#   fuzz_safetensors_header  parse_safetensors_header on arbitrary bytes
#   fuzz_checkpoint_load     the whole load path (Checkpoint::open + validate_checkpoint + load_weights, tiny config)
# Each runs on its own seed corpus, regenerated in build/fuzz/corpus/<target>: valid files produced by sala's own
# writer plus a few mutations of them (the targets write them when SALA_FUZZ_SEED_DIR is set). Inputs the fuzzer finds
# interesting stay in the corpus for the next run. Exits non-zero if a fuzzer finds a crash; the reproducer is left in
# build/fuzz/artifacts/ (replay: build/fuzz/<target> <file>). The last line of the output is the verdict.
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
targets=(fuzz_safetensors_header fuzz_checkpoint_load)
declare -A max_len=([fuzz_safetensors_header]=4096 [fuzz_checkpoint_load]=16384)  # the load seeds are ~10 kB
artifacts="$build/artifacts"

# The fuzz preset (SALA_FUZZ=ON) builds each fuzz/*.cpp with -fsanitize=fuzzer,address,undefined against the sources
# it exercises, themselves instrumented (see the SALA_FUZZ block of CMakeLists.txt).
cmake --preset fuzz --no-warn-unused-cli >/dev/null
cmake --build "$build" --target "${targets[@]}" -j "${SALA_BUILD_JOBS:-2}"

mkdir -p "$artifacts"
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
"\"model.embed_tokens.weight\""
"\"lm_head.weight\""
"\"model.layers.0.\""
"\"model.layers.1.\""
DICT

export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"

n=${#targets[@]}
summary=()
for i in "${!targets[@]}"; do
  target="${targets[$i]}"
  # An even split; the last target also gets the remainder, so the total is $secs (each at least 1 s).
  t=$((secs / n))
  ((i == n - 1)) && t=$((secs - (n - 1) * (secs / n)))
  ((t < 1)) && t=1
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"

  # Seed pass: writes the seeds, then runs every corpus input once (-runs=0), so a known crasher fails fast.
  SALA_FUZZ_SEED_DIR="$corpus" "$build/$target" -runs=0 -artifact_prefix="$artifacts/" "$corpus"

  set +e
  "$build/$target" "$corpus" \
    -dict="$build/safetensors.dict" \
    -max_total_time="$t" -max_len="${max_len[$target]}" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1
  rc=$?
  set -e
  if ((rc != 0)); then
    echo "fuzz.sh: $target found a problem (exit $rc); reproducers in $artifacts/:" >&2
    ls -t "$artifacts" | head -5 >&2
    exit "$rc"
  fi
  echo "fuzz.sh: $target ran ${t}s with no findings (corpus: $(ls "$corpus" | wc -l) inputs)"
  summary+=("$target ${t}s, $(ls "$corpus" | wc -l) inputs")
done
echo "fuzz.sh: ${#targets[@]} fuzzers ran ${secs}s in all with no findings ($(IFS=';'; echo "${summary[*]}" | sed 's/;/; /g'))"
