#!/usr/bin/env bash
# Host emulation of the CUDA kernels and engine, for machines without a GPU: ctest runs it as
# gpu_emulated (label emu, a few minutes on two cores). See README.md.
#   tests/gpu/emu/run.sh [--full]      (--full: all row counts and the 4096-row 64x64-tile cases)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gen"
# The device's FMA contraction needs the host's FMA instruction; without it (old x86) the kernels
# run uncontracted and the line below says so.
fma=--fma
grep -qw fma /proc/cpuinfo 2>/dev/null || { fma=; echo "emu: this CPU has no FMA: kernels run without nvcc's contraction"; }
for f in dense gather dropout adam softmax_xent fused_step; do
  python3 "$here/transform.py" "$root/kernels/$f.cu" "$work/gen/$f.cpp" $fma
done
cp "$root/layers/cuda_engine.cu" "$work/gen/cuda_engine.cpp"
flags=(-std=c++17 -O2 -fopenmp -pthread -I"$here/ov" -I"$root")
kernels=("$work"/gen/{dense,gather,dropout,adam,softmax_xent,fused_step}.cpp "$root/layers/cpu_ops.cpp")
g++ "${flags[@]}" "$here/emu_kernels.cpp" "${kernels[@]}" -o "$work/emu_kernels"
g++ "${flags[@]}" "$here/emu_engine.cpp" "$work/gen/cuda_engine.cpp" "${kernels[@]}" \
    "$root/layers/cpu_engine.cpp" "$root/layers/model.cpp" -o "$work/emu_engine"
# The GPU test files themselves (their cases, data and tolerances), quick selection, without the
# cases that need cuBLAS/cuDNN or 4096 x 784 shapes (emu_gpu_tests.cpp).
g++ "${flags[@]}" "$here/emu_gpu_tests.cpp" -x c++ "$root"/tests/gpu/test_{dense,softmax}.cu -x none \
    "${kernels[@]}" "$root/layers/model.cpp" -o "$work/emu_gpu_tests"
g++ "${flags[@]}" "$here/emu_fused.cpp" "$work/gen/cuda_engine.cpp" "${kernels[@]}" \
    "$root/layers/cpu_engine.cpp" "$root/layers/model.cpp" -o "$work/emu_fused"
if [[ "${1:-}" == "--full" ]]; then "$work/emu_kernels"; else "$work/emu_kernels" quick; fi
"$work/emu_engine"
MNIST_GPU_TEST_QUICK=1 "$work/emu_gpu_tests" --no-intro \
  --test-case-exclude='*cuBLAS*,*does not depend on its batch*,*64x64 tiles (large batch)*'
"$work/emu_fused"
