#!/usr/bin/env bash
# Host emulation of the CUDA kernels and engine, for machines without a GPU. ctest runs it as
# gpu_emulated (label "emu"; minutes on two cores: `ctest -LE emu` leaves it out). See README.md.
#   tests/gpu/emu/run.sh [--full]      (--full: all row counts and the 4096-row 64x64-tile cases)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gen"
for f in dense gather dropout adam softmax_xent; do
  python3 "$here/transform.py" "$root/kernels/$f.cu" "$work/gen/$f.cpp"
done
cp "$root/layers/cuda_engine.cu" "$work/gen/cuda_engine.cpp"
flags=(-std=c++17 -O2 -fopenmp -pthread -I"$here/ov" -I"$root")
kernels=("$work"/gen/{dense,gather,dropout,adam,softmax_xent}.cpp "$root/layers/cpu_ops.cpp")
g++ "${flags[@]}" "$here/emu_kernels.cpp" "${kernels[@]}" -o "$work/emu_kernels"
g++ "${flags[@]}" "$here/emu_engine.cpp" "$work/gen/cuda_engine.cpp" "${kernels[@]}" \
    "$root/layers/cpu_engine.cpp" "$root/layers/model.cpp" -o "$work/emu_engine"
if [[ "${1:-}" == "--full" ]]; then "$work/emu_kernels"; else "$work/emu_kernels" quick; fi
"$work/emu_engine"
