#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, fetch MNIST, build, then train and
# evaluate the tutorial's model (arguments go to mnist_cuda, e.g. --device cpu --epochs 5).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dataset=mnist
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--dataset" ]; then j=$((i + 1)); dataset=${!j}; fi
done
"$root/apps/setup.sh" "$dataset"
# The binary alone: the tests and benchmarks are tests/run.sh's to build (a third of the build).
MNIST_BUILD_TARGETS=mnist_cuda "$root/apps/build.sh"
cd "$root"
exec "$root/build/apps/mnist_cuda" "$@"
