#!/usr/bin/env bash
# Host emulation of the CUDA kernels and engine, for machines without a GPU: ctest runs it as
# gpu_emulated_<part> (label emu), one entry per part so that `ctest -j2` runs two at once, after
# gpu_emulated_build has built the programs (tests/gpu/emu/CMakeLists.txt, target emu). See README.md.
#   tests/gpu/emu/run.sh [--full] [kernels|engine|gpu_tests|fused|tc|engine_tc|banks ...]
# (--full: all row counts and the 4096-row 64x64-tile cases, and banks' full set as a report; no
# part named: all seven, in order). It builds the parts' programs in the project's build directory
# (EMU_BUILD, default build/, configured by apps/build.sh) and runs them; EMU_PREBUILT=DIR (ctest)
# runs the programs in DIR and builds nothing.
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
if [[ -n ${EMU_PREBUILT:-} ]]; then
  bin=$EMU_PREBUILT
else
  build=${EMU_BUILD:-$root/build}
  [[ -f $build/CMakeCache.txt ]] || { echo "run.sh: $build is not a configured build directory (run apps/build.sh, or set EMU_BUILD)" >&2; exit 2; }
  targets=()
  for part in "${parts[@]}"; do
    case "$part" in
      tc) targets+=(emu_tc emu_dense_tc) ;;
      *) targets+=("emu_$part") ;;
    esac
  done
  cmake --build "$build" --target "${targets[@]}"
  bin=$build/tests/gpu/emu
fi
need() { [[ -x $bin/$1 ]] || { echo "run.sh: $bin/$1 is not built (cmake --build <build> --target emu)" >&2; exit 2; }; }
for part in "${parts[@]}"; do
  case "$part" in
    kernels)
      need emu_kernels
      if [[ $full == 1 ]]; then "$bin/emu_kernels"; else "$bin/emu_kernels" quick; fi ;;
    engine)
      need emu_engine
      "$bin/emu_engine" ;;
    gpu_tests)
      # The GPU test files themselves (their cases, data and tolerances), quick selection, without
      # the cases that need cuBLAS/cuDNN or 4096 x 784 shapes (emu_gpu_tests.cpp).
      need emu_gpu_tests
      MNIST_GPU_TEST_QUICK=1 "$bin/emu_gpu_tests" --no-intro \
        --test-case-exclude='*cuBLAS*,*does not depend on its batch*,*64x64 tiles (large batch)*,*adam_update with TrainCounters*' ;;
    fused)
      need emu_fused
      "$bin/emu_fused" ;;
    tc)  # tensor-core GEMMs (TF32/BF16): mma fragment layouts, rounding, split-K
      need emu_tc
      need emu_dense_tc
      if [[ $full == 1 ]]; then "$bin/emu_tc"; else "$bin/emu_tc" quick; fi
      # test_dense_tc.cu's wgmma cases themselves (their shapes, references, tolerances, quick
      # selection), its cases of the operands written rounded by their producers (a skipped
      # rounding pass must change no bit) and its clustered split; its launches rewritten as the kernels' are (the file has
      # a test kernel)
      MNIST_GPU_TEST_QUICK=1 "$bin/emu_dense_tc" --no-intro \
        --test-case='wgmma*,dense_weight_partials: inputs rounded*,dense_forward / dense_backward_data: W rounded*,clustered split-K*' ;;
    engine_tc)  # the CUDA engine at tf32/bf16 against the CPU engine with the same rounding
      need emu_engine_tc
      "$bin/emu_engine_tc" ;;
    banks)  # the shared-memory bank model (banks.cpp) against tests/resources/bank_conflicts.txt
      # the ci set against the budgets (ctest gpu_emulated_banks); --full: the full set with global
      # sectors too, a report
      need emu_banks
      if [[ $full == 1 ]]; then EMU_BANK_GLOBAL=1 "$bin/emu_banks" full --top 60; else "$bin/emu_banks" ci --budgets "$root/tests/resources/bank_conflicts.txt"; fi ;;
  esac
done
