#!/usr/bin/env bash
# The test suite, as CI runs it: dependencies, the HF tokenizer oracle (npm), the release build (CPU + CUDA sm_90a:
# CUDA code must compile here even though its tests run on the GPU machine), the safetensors fuzzers (header; whole load path) for a
# bounded time, the CPU tests under ASan/UBSan, then every CPU test through ctest (its summary is the last line). GPU tests: scripts/device.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${SALA_BUILD_JOBS:-$(nproc)}
bash scripts/install_deps.sh
bash scripts/oracle.sh
preset=release
command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "test.sh: no nvcc: CPU-only build"; preset=cpu; }
cmake --preset "$preset"
cmake --build --preset "$preset" -j"$jobs"
# the fuzzer's own log is long: keep it in a file and show its verdict (and the tail if it failed)
mkdir -p build
if ! bash scripts/fuzz.sh "${SALA_FUZZ_SECONDS:-60}" > build/fuzz.log 2>&1; then
  tail -40 build/fuzz.log
  echo "test.sh: a safetensors fuzzer failed (build/fuzz.log)"
  exit 1
fi
tail -1 build/fuzz.log
# the CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer (SALA_SANITIZE=0 skips)
if [[ ${SALA_SANITIZE:-1} == 1 ]]; then
  cmake --preset debug >/dev/null
  cmake --build --preset debug -j"$jobs"
  ctest --preset debug -j"$jobs" --timeout 1800 > build/sanitize.log 2>&1 || { tail -60 build/sanitize.log; exit 1; }
  grep -E "tests passed|tests failed" build/sanitize.log | sed 's/^/sanitizers: /'
fi
ctest --preset "$preset" -j"$jobs" --timeout 900
