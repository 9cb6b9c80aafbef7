#!/usr/bin/env bash
# sala's main job on the model bundled in the repo (models/sala-tiny: the SALA architecture at tiny size, random
# weights, a 512-piece tokenizer): build, describe the model, generate text from a prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
cmake --preset cpu >/dev/null
cmake --build --preset cpu -j"$(nproc)" --target sala
./build/cpu/sala info models/sala-tiny --context 4096
echo
echo "# models/sala-tiny has random weights: the continuation below is noise until a trained model is bundled"
./build/cpu/sala generate models/sala-tiny --prompt "${1:-Once upon a time}" -n 48 --temperature 0.8 --seed 1
