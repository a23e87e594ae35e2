#!/usr/bin/env bash
# ctest "pytorch_loads_checkpoint": trains mnist_cuda briefly on the CPU path, then loads its best
# checkpoint into the tutorial's PyTorch MNISTClassifier and checks the test loss and accuracy
# against the binary's report.json. Skipped (77) where no python3 can import torch (Debian:
# python3-torch).   run.sh MNIST_CUDA_BINARY DATA_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1 data=$2
py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then py=$cand; break; fi
done
if [ -z "$py" ]; then echo "SKIPPED: no python3 here can import torch (Debian: apt-get install python3-torch)"; exit 77; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" --device cpu --data "$data" --epochs 2 --seed 7 --out "$work/out" --quiet
"$py" "$here/load_checkpoint.py" "$work/out/best_model.safetensors" "$work/out/report.json" "$data"
