#!/usr/bin/env bash
# The test command (CI runs it through .ci/run): install what is missing, fetch MNIST, build,
# run every test through ctest (GPU tests are skipped, with a line saying so, where no CUDA device
# is present), then a bounded libFuzzer run of the IDX reader and the checkpoint loader (any crash
# fails it), then the CPU tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Extra arguments go to the first ctest run (e.g. -L cpu). MNIST_NO_SANITIZE=1 / MNIST_NO_FUZZ=1
# skip those passes; MNIST_FUZZ_SECONDS sets the fuzzing time per target (default 60).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Each stage's wall time, printed as it ends (where CI's minutes go).
stage_start=$SECONDS
stage_done() { echo "== tests/run.sh: $1 took $((SECONDS - stage_start)) s (total $SECONDS s) =="; stage_start=$SECONDS; }
"$root/apps/setup.sh" mnist
stage_done setup
"$root/apps/build.sh"
stage_done build
# The disassembler for the kernel_sass test (Debian's nvdisasm, into ~/.cache/mnist_cuda; the test
# is skipped, with a line saying so, if it cannot be fetched).
python3 "$root/profiling/sass.py" --have-nvdisasm 2>/dev/null || python3 "$root/profiling/sass.py" --fetch ||
  echo "tests: nvdisasm could not be fetched: kernel_sass will be skipped"
# Two at a time (the machine CI gives has 2 cores); the fault tests, which time signals, run alone.
# One thread a test process (OpenMP, OpenBLAS) unless the caller says otherwise: beside another test
# and the emulation's build, a test's second thread had no core of its own, and its teammate spun at
# every barrier waiting for it (test_training took 65 s here, 3 s alone on the same machine).
(cd "$root/build" && OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
   ctest --output-on-failure --timeout 900 --parallel 2 "$@")
stage_done ctest

if [ "${MNIST_NO_FUZZ:-0}" != 1 ]; then
  echo "== libFuzzer: IDX reader and checkpoint loader, ${MNIST_FUZZ_SECONDS:-60} s each, side by side =="
  bash "$root/tests/fuzz/run.sh" "${MNIST_FUZZ_SECONDS:-60}"
  stage_done fuzzing
fi

if [ "${MNIST_NO_SANITIZE:-0}" != 1 ]; then
  echo "== CPU tests under ASan + UBSan =="
  # (the CUDA kernels linked from build/: the sanitizers instrument host C++ only)
  # (-O0 -g1: nothing optimised away from the checks, line tables for the reports' stacks; it
  # builds in 104-124 s in CI where -O1 -g took 215, and the tests run no slower on one thread each)
  cmake -S "$root" -B "$root/build-asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMNIST_SANITIZE=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O0 -g1 -DNDEBUG" -DMNIST_KERNELS_FROM="$root/build" >/dev/null
  cmake --build "$root/build-asan" --parallel --target mnist_tests fuzz_replay
  stage_done "ASan build"
  # OpenBLAS/OpenMP thread pools are reported as leaks at exit by LeakSanitizer: not ours.
  (cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
     ctest --output-on-failure --timeout 900 --parallel 2 -L cpu)
  stage_done "ASan tests"
fi
