#!/usr/bin/env bash
# GPU work in one place.
#   bash scripts/device.sh pack        here (no GPU): build the release tree and gather the binaries plus the shared
#                                      libraries the GPU machine lacks into build/device/ (carried to it, < 64 MiB)
#   bash scripts/device.sh pack-variant NAME FLAGS  here, after pack: a build with CMAKE_CUDA_FLAGS=FLAGS (kernel-lab
#                                      switches such as -DSALA_GEMV_PREWAIT=1), compressed into build/device/variants
#   bash scripts/device.sh run [what]  on the GPU machine: what = all (default: tests + bench, ~8 min) | tests |
#                                      unit | sanitize | bench | sala | kernels | graphs | fuse | pdl | mma | variants |
#                                      profile | eval | sweep,
#                                      or several joined by commas (a call stops at 10 min, and only 8 files under
#                                      $OUT come back).
#                                      tests = unit (the GPU tests) + sanitize (compute-sanitizer memcheck +
#                                      racecheck on a quick subset);
#                                      sala: SALA-9B bench at 32K-1M and batch 32 (no peer); kernels: the kernel
#                                      benchmarks (bench_gemm_lightning, bench_attention, ...);
#                                      graphs: SALA-9B decode with and without CUDA graphs (A/B, batch 1 and 32);
#                                      fuse: decode A/B of programmatic dependent launch (SALA_CUDA_PDL) and
#                                      the fused op pairs (SALA_CUDA_FUSE), and the 32K batch-1 decode profile;
#                                      pdl: the GPU suite, repeats and memcheck with PDL on, then decode off/on;
#                                      variants: the GPU suite and decode for each pack-variant build;
#                                      mma: the tensor-core gemv in the GEMM race (default) or not (SALA_GEMV_MMA=0):
#                                      tests without it, decode A/B at batch 1, 4, 8, 16, 32 (SALA_MMA_AB="1 2": with
#                                      and without the 128 x 128 tile);
#                                      profile: sala bench --profile (per-op times: SALA-9B prefill 256K, decode batch
#                                      1 and 32); cpu-threads: bench_cpu decode on 1-16 host threads;
#                                      eval: sala eval passkey on SALA-9B random weights at 128K (1 sample), and 4
#                                      samples at 32K batched (throughput; random weights score nothing);
#                                      bench: sala bench (SALA-9B, the dense baselines) beside the PyTorch peer, the
#                                      kernel benchmarks, bench_cpu on the host's cores (SALA_KERNEL_BENCH=0: without);
#                                      sweep: TTFT / memory from 8K to 1M (2M for SALA) for the plot.
#                                      Logs and JSON lines go to $OUT; a short table is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
what=${2:-all}
DEV=build/device

if [[ $mode == pack ]]; then
  cmake --preset release >/dev/null
  cmake --build --preset release -j"$(nproc)"
  rm -rf "$DEV" && mkdir -p "$DEV/bin" "$DEV/lib"
  for b in build/release/sala build/release/sala_cuda_tests build/release/bench_*; do
    [[ -x $b ]] && cp "$b" "$DEV/bin/"
  done
  strip "$DEV"/bin/* 2>/dev/null || true
  # Debian-only shared libraries (fmt, gomp, pcre2, utf8proc, sentencepiece, protobuf-lite ...): carried beside.
  # CUDA's own libraries (cudart, cuBLAS/cuBLASLt, cuDNN) are on the GPU machine.
  for b in "$DEV"/bin/*; do
    ldd "$b" | awk '/=> \// {print $3}' | while read -r so; do
      case "$(basename "$so")" in
        libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread*|libdl.so*|librt.so*|libcuda.so*) ;;
        libcudart*|libcublas*|libcudnn*|libnccl*) ;;
        *) cp -Lu "$so" "$DEV/lib/" ;;
      esac
    done
  done
  # the MiniCPM tokenizer fixture for `run eval` (the GPU machine has no ../shared): staged in the build output only
  if [[ -d ../shared/fixtures/minicpm-tokenizer ]]; then
    mkdir -p "$DEV/fixtures/minicpm-tokenizer"
    find ../shared/fixtures/minicpm-tokenizer -maxdepth 1 -type f -exec cp {} "$DEV/fixtures/minicpm-tokenizer/" \;
  fi
  git rev-parse --short HEAD > "$DEV/commit" 2>/dev/null || echo unknown > "$DEV/commit"
  du -sh "$DEV"
  exit 0
fi
if [[ $mode == pack-variant ]]; then
  # a compile-time variant (kernel lab: bash scripts/device.sh pack-variant NAME "-DFLAG=1"), after pack: its own
  # build tree, sala + sala_cuda_tests xz-compressed into build/device/variants/NAME for `run variants`
  name=${2:?pack-variant NAME CUDA_FLAGS} flags=${3:?pack-variant NAME CUDA_FLAGS}
  [[ -d $DEV/bin ]] || { echo "device.sh: run 'bash scripts/device.sh pack' first"; exit 1; }
  cmake -S . -B "build/variant-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_FLAGS=$flags" >/dev/null
  cmake --build "build/variant-$name" -j"$(nproc)" --target sala sala_cuda_tests
  v=$DEV/variants/$name
  rm -rf "$v" && mkdir -p "$v"
  for b in sala sala_cuda_tests; do strip -o "$v/$b" "build/variant-$name/$b" && xz -T0 -6 "$v/$b"; done
  echo "$flags" > "$v/flags"
  du -sh "$DEV"
  exit 0
fi

[[ -d $DEV/bin ]] || { echo "device.sh: $DEV missing: run 'bash scripts/device.sh pack' here and carry build/device"; exit 1; }
export LD_LIBRARY_PATH="$PWD/$DEV/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
OUT=${OUT:-/tmp/sala-out}
mkdir -p "$OUT"
B=$DEV/bin
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
status=0
summary=()

# what: a comma-separated list of modes; all = tests,bench; tests = unit,sanitize; bench = sala,dense,kernels
what=",${what},"
what=${what//,all,/,tests,bench,}
what=${what//,tests,/,unit,sanitize,}
what=${what//,bench,/,sala,dense,kernels,}
has() { [[ $what == *",$1,"* ]]; }

if has unit; then
  # SALA_GPU_TESTS=FILTER: a subset (gtest filter) for a quick check between kernel versions
  "$B/sala_cuda_tests" ${SALA_GPU_TESTS:+--gtest_filter=$SALA_GPU_TESTS} > "$OUT/gpu_tests.log" 2>&1 || status=1
  # the decode-consistency cases again (graph replay vs eager bitwise, GPU draws, chunked prefill vs CPU): a race
  # between overlapping kernels (launch.cuh) shows as a run that differs
  "$B/sala_cuda_tests" --gtest_repeat=3 \
    --gtest_filter='CudaModel.DecodeGraphs*:CudaModel.DrawsOnTheGpu*:CudaModel.PrefillInChunks*' >> "$OUT/gpu_tests.log" 2>&1 || status=1
  summary+=("gpu tests: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/gpu_tests.log" | tr '\n' ' ')")
  mapfile -t failed < <(grep -E '^\[  FAILED  \] [A-Z]' "$OUT/gpu_tests.log" | head -20)
  for l in "${failed[@]}"; do summary+=("  $l"); done
fi
if has sanitize; then
  # the sanitizers on a quick subset (the ops harness on the GPU, the kernels' small cases, recorded decode steps and
  # GPU draws), each under a deadline so a slow tool cannot eat the session
  declare -A filt=(
    [memcheck]='Every/BackendOps.*/cuda:CudaAttention.DenseSingleSequences:CudaModel.Draws*:CudaModel.Interleaved*:CudaModel.NonFinite*:CudaModel.DecodeGraphs*:CudaSample.RowsWithNan*:CudaAttention.SelectThenAttentionSmallConfig:CudaLightning.GqaAndSmall*:CudaElementwise.*:CudaGemm.Gemv*:CudaGemm.Silu*:CudaInfllmv2Select.Ties*'
    [racecheck]='Every/BackendOps.*/cuda:CudaGemm.GemvMatchesCpu:CudaGemm.GemvTensorCoresSmallShapes:CudaAttention.DenseSingleSequences:CudaAttention.SelectThenAttentionSmallConfig:CudaInfllmv2Select.Ties*:CudaLightning.GqaAndSmall*:CudaSample.RowsWithNan*')
  for tool in memcheck racecheck; do
    if timeout 170 compute-sanitizer --tool $tool --error-exitcode 9 "$B/sala_cuda_tests" --gtest_filter="${filt[$tool]}" \
        > "$OUT/sanitizer_$tool.log" 2>&1; then
      summary+=("compute-sanitizer $tool: clean ($(grep -c '^\[       OK' "$OUT/sanitizer_$tool.log") tests)")
    else
      rc=$?
      status=1
      [[ $rc == 124 ]] && summary+=("compute-sanitizer $tool: TIMED OUT after 170 s ($(grep -c '^\[       OK' "$OUT/sanitizer_$tool.log") tests done)") \
                       || summary+=("compute-sanitizer $tool: FAILED rc $rc (see sanitizer_$tool.log)")
    fi
    tail -c 200000 "$OUT/sanitizer_$tool.log" > "$OUT/sanitizer_$tool.tail" && mv "$OUT/sanitizer_$tool.tail" "$OUT/sanitizer_$tool.log"
  done
fi

# SALA-9B decode at 32K under one switch (VAR=VALUE): batch 1 (64 tokens) into $OUT/TAG.txt, batch 32 (16 tokens)
# into $OUT/TAG_b32.txt, JSON lines into JSONL; tok_s TAG prints what a log measured
decode_32k() {  # VAR=VALUE TAG JSONL
  env "$1" "$B/sala" bench --preset minicpm-sala-9b --lengths 32k --decode 64 --out "$3" 2>&1 | tee "$OUT/$2.txt" || status=1
  env "$1" "$B/sala" bench --preset minicpm-sala-9b --lengths 32k --decode 16 --batch 32 --out "$3" 2>&1 \
    | tee "$OUT/$2_b32.txt" || status=1
}
tok_s() { grep -E '^minicpm' "$OUT/$1.txt" | awk '{printf "%s ", $7}'; }

J=$OUT/bench.jsonl
if has sala; then
  # SALA_BENCH_LENGTHS: the batch-1 contexts (default 32k,128k,256k,1m)
  "$B/sala" bench --preset minicpm-sala-9b --lengths "${SALA_BENCH_LENGTHS:-32k,128k,256k,1m}" --decode 32 --out "$J" 2>&1 \
    | tee "$OUT/bench_sala9b.txt" || status=1
  "$B/sala" bench --preset minicpm-sala-9b --lengths 32k --decode 16 --batch 32 --out "$J" 2>&1 | tee "$OUT/bench_sala9b_b32.txt" || status=1
fi
if has dense; then
  for c in minicpm4-8b qwen3-8b; do
    "$B/sala" bench --preset $c --lengths 32k,128k --decode 32 --out "$J" 2>&1 | tee "$OUT/bench_$c.txt" || status=1
    PYTHONUNBUFFERED=1 python3 bench/peers/torch_dense.py --config $c --lengths 32768,131072,262144 --decode 32 \
      --out "$J" 2>&1 | tee "$OUT/peer_$c.txt" || status=1
  done
fi
if has kernels && [[ ${SALA_KERNEL_BENCH:-1} != 0 ]]; then
  for k in "$B"/bench_*; do
    [[ $(basename "$k") == bench_cpu ]] && continue
    # SALA_KERNEL_BENCH=NAME[,NAME]: only those benchmarks (e.g. bench_gemm_lightning)
    [[ ${SALA_KERNEL_BENCH:-1} == 1 || ",$SALA_KERNEL_BENCH," == *",$(basename "$k"),"* ]] || continue
    "$k" > "$OUT/$(basename "$k").txt" 2>&1 || status=1
  done
  [[ ${SALA_KERNEL_BENCH:-1} == 1 ]] && { OMP_NUM_THREADS=16 "$B/bench_cpu" > "$OUT/bench_cpu_16t.txt" 2>&1 || true; }
fi

if has graphs; then
  for g in 1 0; do decode_32k SALA_CUDA_GRAPHS=$g bench_graphs_$g "$OUT/bench_graphs.jsonl"; done
  summary+=("decode with CUDA graphs (1) and without (0), SALA-9B at 32K:")
  for g in 1 0; do summary+=("  graphs=$g b1: $(tok_s bench_graphs_$g)tok/s b32: $(tok_s bench_graphs_${g}_b32)tok/s"); done
fi

if has fuse; then
  # A/B in one run of the decode launch tricks: SALA_CUDA_PDL=0 launches every kernel plainly (no programmatic
  # dependent launch), SALA_CUDA_FUSE=0 runs the fused op pairs (gate|up product + SwiGLU, output norm + gate) as two
  # ops each; then the eager per-op decode profile at 32K, batch 1
  J=$OUT/bench_fuse.jsonl
  for pf in 11 01 10 00; do
    p=${pf:0:1} f=${pf:1:1}
    lens=32k
    [[ $p == "$f" ]] && lens=32k,128k
    m=$p
    [[ $p == 1 ]] && m=-1  # SALA_CUDA_PDL is a group mask: -1 all
    SALA_CUDA_PDL=$m SALA_CUDA_FUSE=$f "$B/sala" bench --preset minicpm-sala-9b --lengths $lens --decode 64 --out "$J" \
      2>&1 | tee "$OUT/bench_fuse_$pf.txt" || status=1
    if [[ $p == "$f" ]]; then
      SALA_CUDA_PDL=$m SALA_CUDA_FUSE=$f "$B/sala" bench --preset minicpm-sala-9b --lengths 32k --decode 16 --batch 32 \
        --out "$J" 2>&1 | tee "$OUT/bench_fuse_b32_$pf.txt" || status=1
    fi
  done
  # the gate|up rows interleaved (SALA_CUDA_GU_PAIRS=1: the fused gemv reads a gate row and its up row side by side)
  SALA_CUDA_GU_PAIRS=1 "$B/sala" bench --preset minicpm-sala-9b --lengths 32k,128k --decode 64 --out "$J" 2>&1 \
    | tee "$OUT/bench_fuse_gupairs.txt" || status=1
  "$B/sala" bench --preset minicpm-sala-9b --lengths 32k --decode 16 --profile --out "$J" > "$OUT/profile_decode_32k.txt" 2>&1 || status=1
  summary+=("decode tok/s, SALA-9B, gate|up rows interleaved (default PDL, fused): $(grep -E '^minicpm' "$OUT/bench_fuse_gupairs.txt" | awk '{printf "%s ", $7}')")
  summary+=("decode tok/s, SALA-9B, by PDL (1st digit) and fused pairs (2nd):")
  for pf in 11 01 10 00; do
    b32=-
    [[ -f $OUT/bench_fuse_b32_$pf.txt ]] && b32=$(grep -E '^minicpm' "$OUT/bench_fuse_b32_$pf.txt" | awk '{print $7}')
    summary+=("  $pf b1 32K(/128K): $(grep -E '^minicpm' "$OUT/bench_fuse_$pf.txt" | awk '{printf "%s ", $7}') b32 32K: $b32")
  done
fi

if has pdl; then
  # programmatic dependent launch (off by default, launch.cuh) validated and timed: the whole GPU suite with it on,
  # the decode-consistency cases 5 more times, memcheck on the model cases, then decode with it off and on
  SALA_CUDA_PDL=-1 "$B/sala_cuda_tests" > "$OUT/gpu_tests_pdl.log" 2>&1 || status=1
  SALA_CUDA_PDL=-1 "$B/sala_cuda_tests" --gtest_repeat=5 \
    --gtest_filter='CudaModel.DecodeGraphs*:CudaModel.DrawsOnTheGpu*:CudaModel.PrefillInChunks*' >> "$OUT/gpu_tests_pdl.log" 2>&1 || status=1
  summary+=("gpu tests, PDL on: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/gpu_tests_pdl.log" | sort | uniq -c | tr '\n' ' ')")
  if SALA_CUDA_PDL=-1 SALA_CUDA_TEST_QUICK=1 timeout 170 compute-sanitizer --tool memcheck --error-exitcode 9 "$B/sala_cuda_tests" \
      --gtest_filter='CudaModel.DecodeGraphs*:CudaModel.DrawsOnTheGpu*:Every/BackendOps.*/cuda' > "$OUT/sanitizer_pdl.log" 2>&1; then
    summary+=("compute-sanitizer memcheck, PDL on: clean")
  else
    status=1
    summary+=("compute-sanitizer memcheck, PDL on: FAILED or timed out (sanitizer_pdl.log)")
  fi
  tail -c 100000 "$OUT/sanitizer_pdl.log" > "$OUT/sanitizer_pdl.tail" && mv "$OUT/sanitizer_pdl.tail" "$OUT/sanitizer_pdl.log"
  J=$OUT/bench_pdl.jsonl
  for p in 0 -1; do
    SALA_CUDA_PDL=$p "$B/sala" bench --preset minicpm-sala-9b --lengths 32k,128k --decode 64 --out "$J" 2>&1 \
      | tee "$OUT/bench_pdl_$p.txt" || status=1
  done
  summary+=("decode tok/s at 32K / 128K, PDL off: $(grep -E '^minicpm' "$OUT/bench_pdl_0.txt" | awk '{printf "%s ", $7}') on: $(grep -E '^minicpm' "$OUT/bench_pdl_-1.txt" | awk '{printf "%s ", $7}')")
fi

if has mma; then
  # the tensor-core gemv versions (gemv_mma.cu) in Gemm's race (level 1, the default) or not (SALA_GEMV_MMA=0): the
  # GPU tests that reach them through the model at each level of SALA_MMA_AB but the default (unit runs that one),
  # then decode at 32K and batch 1 to 32 at each level, A/B in one run (SALA_MMA_AB="1 2": the validated versions
  # against those plus the 128 x 128 tile)
  levels=${SALA_MMA_AB:-0 1}
  for m in $levels; do
    [[ $m == 1 ]] && continue
    SALA_GEMV_MMA=$m "$B/sala_cuda_tests" --gtest_filter='CudaGemm.*:CudaModel.*' > "$OUT/gpu_tests_mma_$m.log" 2>&1 \
      || status=1
    summary+=("gpu tests, SALA_GEMV_MMA=$m: $(grep -E '^\[  (PASSED|FAILED)' "$OUT/gpu_tests_mma_$m.log" | tr '\n' ' ')")
  done
  for m in $levels; do
    line="SALA_GEMV_MMA=$m decode tok/s at 32K, batch 1 4 8 16 32:"
    for b in 1 4 8 16 32; do
      SALA_GEMV_MMA=$m "$B/sala" bench --preset minicpm-sala-9b --lengths 32k --decode $((b == 1 ? 64 : 16)) --batch $b \
        --out "$OUT/bench_mma.jsonl" > "$OUT/bench_mma_${m}_b$b.txt" 2>&1 || status=1
      line+=" $(grep -E '^minicpm' "$OUT/bench_mma_${m}_b$b.txt" | awk '{printf "%s", $7}')"
    done
    summary+=("$line")
  done
fi

if has variants; then
  # each compile-time variant packed by pack-variant: the GPU suite, the decode-consistency cases 5 more times, then
  # decode at 32K / 128K beside the default build
  for v in "$DEV"/variants/*/; do
    [[ -f $v/sala.xz ]] || continue
    n=$(basename "$v") vb=/tmp/sala-variant-$n
    mkdir -p "$vb" && xz -dc "$v/sala.xz" > "$vb/sala" && xz -dc "$v/sala_cuda_tests.xz" > "$vb/sala_cuda_tests"
    chmod +x "$vb"/*
    "$vb/sala_cuda_tests" > "$OUT/gpu_tests_$n.log" 2>&1 || status=1
    "$vb/sala_cuda_tests" --gtest_repeat=5 \
      --gtest_filter='CudaModel.DecodeGraphs*:CudaModel.DrawsOnTheGpu*:CudaModel.PrefillInChunks*' >> "$OUT/gpu_tests_$n.log" 2>&1 || status=1
    summary+=("variant $n ($(cat "$v/flags")): gpu tests $(grep -E '^\[  (PASSED|FAILED)' "$OUT/gpu_tests_$n.log" | sort | uniq -c | tr '\n' ' ')")
    "$vb/sala" bench --preset minicpm-sala-9b --lengths 32k,128k --decode 64 --out "$OUT/bench_variants.jsonl" 2>&1 \
      | tee "$OUT/bench_variant_$n.txt" || status=1
    summary+=("  decode tok/s at 32K / 128K: $(grep -E '^minicpm' "$OUT/bench_variant_$n.txt" | awk '{printf "%s ", $7}')")
  done
fi

if has profile; then
  J=$OUT/profile.jsonl
  "$B/sala" bench --preset minicpm-sala-9b --lengths 256k --decode 16 --profile --out "$J" > "$OUT/profile_sala9b.txt" 2>&1 || status=1
  "$B/sala" bench --preset minicpm-sala-9b --lengths 32k --decode 8 --batch 32 --profile --out "$J" > "$OUT/profile_sala9b_b32.txt" 2>&1 || status=1
  summary+=("profile: profile_sala9b*.txt")
fi

if has cpu-threads; then
  for t in 1 2 4 8 16; do
    OMP_NUM_THREADS=$t "$B/bench_cpu" > "$OUT/bench_cpu_${t}t.txt" 2>&1 || true
  done
  OMP_NUM_THREADS=16 OMP_WAIT_POLICY=passive "$B/bench_cpu" > "$OUT/bench_cpu_16t_passive.txt" 2>&1 || true
  OMP_NUM_THREADS=8 OMP_PROC_BIND=close OMP_PLACES=cores "$B/bench_cpu" > "$OUT/bench_cpu_8t_cores.txt" 2>&1 || true
  summary+=("host CPU decode tok/s by threads (sala-tiny, sala-100m):")
  for f in "$OUT"/bench_cpu_*t*.txt; do
    summary+=("  $(basename "$f" .txt): $(awk '$2 == "decode" {printf "%s %s  ", $1, $4}' "$f")")
  done
fi

if has eval; then
  tok=$DEV/fixtures/minicpm-tokenizer  # staged by pack from ../shared
  [[ -d $tok ]] || tok=../shared/fixtures/minicpm-tokenizer
  for run in "128k 50 1" "32k 0,100 2"; do
    read -r len depths n <<< "$run"
    d=/tmp/sala-eval-$len
    "$B/sala" eval --preset minicpm-sala-9b --tokenizer "$tok" --tasks passkey --lengths "$len" --depths "$depths" \
      --samples "$n" --device cuda --out "$d" > "$OUT/eval_$len.txt" 2>&1 || status=1
    [[ -f $d/summary.md ]] && cat "$d/summary.md" >> "$OUT/eval_$len.txt"
    [[ -f $d/results.jsonl ]] && cp "$d/results.jsonl" "$OUT/eval_$len.jsonl"
    summary+=("eval passkey $len: $(grep -m1 -iE 'tok/s|wall' "$OUT/eval_$len.txt" | cut -c1-200)")
  done
fi

if has sweep; then
  J=$OUT/sweep.jsonl
  "$B/sala" bench --preset minicpm-sala-9b --lengths 8k,32k,128k,256k,512k,1m,2m --decode 8 --out "$J" || status=1
  for c in minicpm4-8b qwen3-8b; do
    "$B/sala" bench --preset $c --lengths 8k,32k,128k,256k --decode 8 --out "$J" || status=1
    python3 bench/peers/torch_dense.py --config $c --lengths 8192,32768,131072,262144 --decode 8 --out "$J" || status=1
  done
fi

echo
echo "== summary (card: $(cut -d, -f1 "$OUT/gpu.txt"), commit $(cat $DEV/commit))"
for s in "${summary[@]}"; do echo "$s"; done
for f in "$OUT"/bench_sala9b.txt "$OUT"/bench_sala9b_b32.txt "$OUT"/bench_minicpm4-8b.txt "$OUT"/bench_qwen3-8b.txt; do
  [[ -f $f ]] && grep -vE '^(bench:|prefill )' "$f" | tail -n +1
done
for f in "$OUT"/peer_*.txt; do [[ -f $f ]] && tail -4 "$f"; done
# Only 8 files under $OUT come back from a device call: past 7, every file but the JSON lines goes into one archive
# (tar xzf logs.tgz to read them).
n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
if (( n > 7 )); then
  (cd "$OUT" && find . -maxdepth 1 -type f ! -name '*.jsonl' -printf '%f\n' | tar czf logs.tgz -T - --remove-files)
  j=$(find "$OUT" -maxdepth 1 -name '*.jsonl' | wc -l)
  if (( j > 6 )); then (cd "$OUT" && tar czf jsonl.tgz --remove-files ./*.jsonl); fi
  echo "device.sh: logs in \$OUT/logs.tgz"
fi
exit $status
