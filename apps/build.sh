#!/usr/bin/env bash
# Configures and builds mnist_cuda into build/ (Release). Extra arguments go to CMake's configure
# step. MNIST_BUILD_TARGETS (space-separated): build only those targets (apps/run.sh: the binary
# alone, without the tests and benchmarks); unset: everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$root/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
targets=()
for t in ${MNIST_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$root/build" --parallel "${targets[@]}"
