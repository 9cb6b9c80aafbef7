#!/usr/bin/env bash
# Installs the Debian packages sala builds against (run as root on Debian 12 bookworm).
# Idempotent: skips apt when every package is already installed.
set -euo pipefail
PKGS=(cmake ninja-build g++ pkg-config libgtest-dev libgmock-dev
      nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev
      libpcre2-dev libutf8proc-dev libsentencepiece-dev sentencepiece
      libcpp-httplib-dev libxxhash-dev clang libclang-rt-14-dev python3-torch python3-numpy
      python3-matplotlib)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Node.js (with npm) runs the tokenizer oracles; the machine image ships it, Debian's nodejs is the fallback.
if ! command -v npm >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
fi
