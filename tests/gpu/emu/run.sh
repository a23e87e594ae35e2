#!/usr/bin/env bash
# Host emulation of the CUDA kernels and engine, for machines without a GPU: ctest runs it as
# gpu_emulated_<part> (label emu), one entry per part so that `ctest -j2` runs two at once. See
# README.md.
#   tests/gpu/emu/run.sh [--full] [kernels|engine|gpu_tests|fused|tc|engine_tc|banks ...]
# (--full: all row counts and the 4096-row 64x64-tile cases, and banks' full set as a report; no
# part named: all seven, in order; EMU_KEEP=DIR keeps the build in DIR)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
full=0
parts=()
for a in "$@"; do
  case "$a" in
    --full) full=1 ;;
    kernels | engine | gpu_tests | fused | tc | engine_tc | banks) parts+=("$a") ;;
    *) echo "run.sh: unknown argument '$a' (expected --full, kernels, engine, gpu_tests, fused, tc, engine_tc or banks)" >&2; exit 2 ;;
  esac
done
[[ ${#parts[@]} -gt 0 ]] || parts=(kernels engine gpu_tests fused tc engine_tc banks)
work=${EMU_KEEP:-$(mktemp -d)}
[[ -n ${EMU_KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gen"
# The device's FMA contraction needs the host's FMA instruction; without it (old x86) the kernels
# run uncontracted and the line below says so.
fma=--fma
grep -qw fma /proc/cpuinfo 2>/dev/null || { fma=; echo "emu: this CPU has no FMA: kernels run without nvcc's contraction"; }
for f in autotune dense gather dropout adam train_counters softmax_xent head tail fused_step; do
  python3 "$here/transform.py" "$root/kernels/$f.cu" "$work/gen/$f.cpp" $fma
done
cp "$root/layers/cuda_engine.cu" "$work/gen/cuda_engine.cpp"
# UBSan's alignment check: a vector access (float4, float2, double) at an address its type does not
# guarantee stops the run (static __shared__ objects are placed minimally aligned: ov/cuda_runtime.h).
flags=(-std=c++17 -O2 -fopenmp -pthread -fsanitize=alignment -fno-sanitize-recover=alignment -I"$here/ov" -I"$root")
kernels=("$work"/gen/{autotune,dense,gather,dropout,adam,train_counters,softmax_xent,head,tail,fused_step}.cpp "$root/layers/cpu_ops.cpp"
         "$here/emu_runtime.cpp")
engine=("$work/gen/cuda_engine.cpp" "$root/layers/cpu_engine.cpp" "$root/layers/model.cpp")
for part in "${parts[@]}"; do
  case "$part" in
    kernels)
      g++ "${flags[@]}" "$here/emu_kernels.cpp" "${kernels[@]}" -o "$work/emu_kernels"
      if [[ $full == 1 ]]; then "$work/emu_kernels"; else "$work/emu_kernels" quick; fi ;;
    engine)
      g++ "${flags[@]}" "$here/emu_engine.cpp" "${engine[@]}" "${kernels[@]}" -o "$work/emu_engine"
      "$work/emu_engine" ;;
    gpu_tests)
      # The GPU test files themselves (their cases, data and tolerances), quick selection, without
      # the cases that need cuBLAS/cuDNN or 4096 x 784 shapes (emu_gpu_tests.cpp).
      g++ "${flags[@]}" "$here/emu_gpu_tests.cpp" -x c++ "$root"/tests/gpu/test_{dense,softmax,head,tail,adam,dense_images,autotune}.cu -x none \
          "${kernels[@]}" "$root/layers/model.cpp" -o "$work/emu_gpu_tests"
      MNIST_GPU_TEST_QUICK=1 "$work/emu_gpu_tests" --no-intro \
        --test-case-exclude='*cuBLAS*,*does not depend on its batch*,*64x64 tiles (large batch)*,*adam_update with TrainCounters*' ;;
    fused)
      g++ "${flags[@]}" "$here/emu_fused.cpp" "${engine[@]}" "${kernels[@]}" -o "$work/emu_fused"
      "$work/emu_fused" ;;
    tc)  # tensor-core GEMMs (TF32/BF16): mma fragment layouts, rounding, split-K
      g++ "${flags[@]}" "$here/emu_tc.cpp" "${kernels[@]}" -o "$work/emu_tc"
      if [[ $full == 1 ]]; then "$work/emu_tc"; else "$work/emu_tc" quick; fi
      # test_dense_tc.cu's wgmma case itself (its shapes, references, tolerances, quick selection);
      # its launches rewritten as the kernels' are (the file has a test kernel)
      python3 "$here/transform.py" "$root/tests/gpu/test_dense_tc.cu" "$work/gen/test_dense_tc.cpp" $fma
      g++ "${flags[@]}" "$here/emu_gpu_tests.cpp" "$work/gen/test_dense_tc.cpp" "${kernels[@]}" "$root/layers/model.cpp" \
          -o "$work/emu_dense_tc"
      MNIST_GPU_TEST_QUICK=1 "$work/emu_dense_tc" --no-intro --test-case='wgmma*' ;;
    engine_tc)  # the CUDA engine at tf32/bf16 against the CPU engine with the same rounding
      g++ "${flags[@]}" "$here/emu_engine_tc.cpp" "${engine[@]}" "${kernels[@]}" -o "$work/emu_engine_tc"
      "$work/emu_engine_tc" ;;
    banks)  # the shared-memory bank model (banks.cpp) against tests/resources/bank_conflicts.txt
      # The kernels compiled with ThreadSanitizer's instrumentation only (its runtime is not linked:
      # banks.cpp is), -g for the source lines, -fno-tree-sra to keep vector copies whole.
      bflags=(-std=c++17 -O2 -g -fno-tree-sra -Wno-tsan -fopenmp -pthread -I"$here/ov" -I"$root")
      objs=()
      mkdir -p "$work/obj"
      max_jobs=$(nproc 2>/dev/null || echo 2)
      for src in "${kernels[@]}" "$work/gen/cuda_engine.cpp"; do
        obj="$work/obj/$(basename "$src").o"
        tsan=()
        [[ $src == "$work"/gen/* ]] && tsan=(-fsanitize=thread)
        while (( $(jobs -rp | wc -l) >= max_jobs )); do wait -n; done  # the objects, nproc at a time
        g++ "${bflags[@]}" "${tsan[@]}" -c "$src" -o "$obj" &
        objs+=("$obj")
      done
      while (( $(jobs -rp | wc -l) > 0 )); do wait -n; done  # (a failed compile stops the run here or at the link)
      g++ "${bflags[@]}" "$here/emu_banks.cpp" "$here/banks.cpp" "$root/layers/cpu_engine.cpp" "$root/layers/model.cpp" \
          "${objs[@]}" -ldl -o "$work/emu_banks"
      # the ci set against the budgets (ctest gpu_emulated_banks); --full: the full set with global
      # sectors too, a report
      if [[ $full == 1 ]]; then EMU_BANK_GLOBAL=1 "$work/emu_banks" full --top 60; else "$work/emu_banks" ci --budgets "$root/tests/resources/bank_conflicts.txt"; fi ;;
  esac
done
