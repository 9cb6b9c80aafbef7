#!/usr/bin/env bash
# GPU work in one place.
#   bash scripts/device.sh pack   here (no GPU): build the release tree and gather the binaries plus the shared
#                                 libraries the GPU machine lacks into build/device/ (carried to the device, < 64 MiB)
#   bash scripts/device.sh run    on the GPU machine: GPU tests, CPU tests, benchmarks; a short table last.
#                                 Writes logs and results into $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
DEV=build/device

if [[ $mode == pack ]]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j"$(nproc)"
  rm -rf "$DEV" && mkdir -p "$DEV/bin" "$DEV/lib"
  for b in sala sala_tests sala_cuda_tests bench_lightning_decode bench_cpu; do
    [[ -x build/release/$b ]] && cp build/release/$b "$DEV/bin/"
  done
  # Debian-only shared libraries (fmt, gomp, pcre2, utf8proc, sentencepiece, protobuf-lite ...): carried beside.
  for b in "$DEV"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}' | while read -r so; do
      case "$(basename "$so")" in
        libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread*|libdl.so*|librt.so*|libcuda.so*) ;;
        *) cp -Lu "$so" "$DEV/lib/" ;;
      esac
    done
  done
  git rev-parse --short HEAD > "$DEV/commit" 2>/dev/null || echo unknown > "$DEV/commit"
  du -sh "$DEV"
  exit 0
fi

[[ -d $DEV/bin ]] || { echo "device.sh: $DEV missing: run 'bash scripts/device.sh pack' here and carry build/device"; exit 1; }
export LD_LIBRARY_PATH="$PWD/$DEV/lib:${LD_LIBRARY_PATH:-}"
OUT=${OUT:-/tmp/sala-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
status=0
"$DEV/bin/sala_cuda_tests" 2>&1 | tee "$OUT/gpu_tests.log" | tail -5 || status=1
"$DEV/bin/bench_lightning_decode" 2>&1 | tee "$OUT/bench_lightning_decode.txt" || status=1
echo
echo "== summary (card: $(cut -d, -f1 "$OUT/gpu.txt"), commit $(cat $DEV/commit))"
printf '%-24s %s\n' "gpu tests" "$(grep -E '^\[  (PASSED|FAILED)' "$OUT/gpu_tests.log" | tr '\n' ' ')"
tail -2 "$OUT/bench_lightning_decode.txt"
exit $status
