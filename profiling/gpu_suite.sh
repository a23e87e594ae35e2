#!/usr/bin/env bash
# Everything that needs the GPU, in one call on a bare lent machine (see ../shared/device/README.md):
#
#   ../shared/device/stage.sh doctest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libpng-dev \
#       libpng16-16 libprotobuf-dev libprotobuf-lite32 libprotobuf32 libprotoc32 protobuf-compiler
#                                                  # here, once: the Debian packages the build needs
#                                                  # (headers, libraries, protoc) + MNIST into .deps/
#   device run, carry [".deps"]:  profiling/gpu_suite.sh $OUT
#
# Steps, in this default order (each under `timeout`, each logged; a failing step does not stop
# the next; the measurements come before the sanitizers so that a slow build squeezes the latter):
#   env        nvidia-smi, nvcc, cmake, torch (+ CUDA, cuDNN) versions
#   configure  cmake into build-gpu (-DCMAKE_PREFIX_PATH=.deps/root/usr, arch 90, no OpenBLAS)
#   build      cmake --build build-gpu
#   ctest-gpu  ctest -L gpu;  ctest-all  every test but the host emulation of the kernels (label emu)
#   bench      build-gpu/profiling/bench_kernels --json (when it exists); bench_fused (fused vs graph
#              step, grid sizes; its table in the step's log)
#   race       profiling/race.py (engine, engine-graph, engine-cublas, engine-graph1, PyTorch
#              tutorial/resident/graph, JAX default/highest)
#   train20    a full 20-epoch CUDA training with the tutorial's callbacks
#   memcheck / racecheck / initcheck   compute-sanitizer over build-gpu/tests/gpu/mnist_gpu_tests
#   san-train  compute-sanitizer memcheck over one short training run (1 epoch, batch 4096)
#   ncu, nsys  profiling/ncu.sh, profiling/nsys.sh, with the time that is left
#
# OUTDIR receives at most 8 files: summary.txt, logs.tar.gz (every step's log), the race's
# <date>-<gpu>.md/.json, bench_kernels.json, train20-report.json, profiles.tar.gz.
#
# Knobs (environment): SUITE_BUDGET_S (default 540: the whole suite's seconds), SUITE_STEPS
# (space-separated steps, run in the order given), SUITE_RACE_BATCHES (128,512,4096),
# SUITE_RACE_EPOCHS (4), SUITE_RACE_REPEATS (2), SUITE_JOBS (build parallelism, default nproc),
# SUITE_BUILD_DIR (build-gpu), SUITE_PYTHON (python3), SUITE_RACE_DEVICE (cuda; cpu to try the
# plumbing on a machine without a GPU), MNIST_COMMIT (the commit to record when the copy on the
# device machine has no .git: MNIST_COMMIT=$(git rev-parse --short HEAD) in the device command).
set -uo pipefail
[ $# -eq 1 ] || { sed -n '2,30p' "$0"; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
logs="$out/logs"
mkdir -p "$logs"
export PATH="/usr/local/cuda/bin:$PATH" PYTHONUNBUFFERED=1
t_start=$(date +%s)
budget=${SUITE_BUDGET_S:-540}
all_steps="env configure build ctest-gpu ctest-all bench race train20 memcheck racecheck initcheck san-train ncu nsys"
steps=${SUITE_STEPS:-$all_steps}
jobs=${SUITE_JOBS:-$(nproc 2>/dev/null || echo 8)}
build=${SUITE_BUILD_DIR:-build-gpu}
bin=$build/apps/mnist_cuda
gpu_tests=$build/tests/gpu/mnist_gpu_tests
data=""
for d in .deps/data/mnist data/mnist; do [ -d "$d" ] && { data=$PWD/$d; break; }; done
py=${SUITE_PYTHON:-python3}

declare -a summary=()
n=0
left() { echo $(( budget - ($(date +%s) - t_start) )); }

# step NAME CAP_SECONDS COMMAND...: runs COMMAND under timeout (the smaller of CAP and the time left,
# keeping 20 s for packing), tees its output to logs/NN-NAME.log, records PASS/FAIL/SKIP/TIMEOUT.
step() {
  local name=$1 cap=$2; shift 2
  n=$((n + 1))
  local log; log=$(printf '%s/%02d-%s.log' "$logs" "$n" "$name")
  local t=$(( $(left) - 20 ))
  [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -lt 10 ]; then
    summary+=("$(printf '%-10s SKIP     (no time left in the %ss budget)' "$name" "$budget")")
    echo "== $name: skipped, no time left" | tee "$log"
    return 0
  fi
  echo "== $name (timeout ${t}s): $*" | tee "$log"
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$t" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  local dt=$(( $(date +%s) - t0 )) verdict
  case $rc in
    0) verdict=PASS ;;
    77) verdict=SKIP ;;
    124|137) verdict=TIMEOUT ;;
    *) verdict="FAIL($rc)" ;;
  esac
  summary+=("$(printf '%-10s %-8s %4ss  %s' "$name" "$verdict" "$dt" "$(basename "$log")")")
  echo "== $name: $verdict in ${dt}s" | tee -a "$log"
  return 0
}

need() {  # need FILE WHAT: exit 77 (skip) with a line when FILE is missing
  [ -e "$1" ] || { echo "skip: $1 not found ($2)"; exit 77; }
}
export -f need

env_info() {
  echo "date: $(date -u +%FT%TZ)  host: $(hostname)  commit: ${MNIST_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}"
  nvidia-smi || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit \
    --format=csv 2>/dev/null || true
  nvcc --version || echo "nvcc: not found"
  cmake --version | head -1; ninja --version 2>/dev/null | sed 's/^/ninja /' || echo "ninja: not found"
  ls /usr/local/cuda/lib64 2>/dev/null | grep -E '^lib(cublas|cublasLt|curand|cudnn)\.so' | sed 's/^/cuda lib: /'
  $py -c 'import torch,sys;print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)' \
    || echo "torch: not importable by $py"
  $py -c 'import nvidia.cudnn,os;print("cudnn wheel:", os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true
  for t in ncu nsys compute-sanitizer; do printf '%s: %s\n' "$t" "$(command -v $t || echo missing)"; done
  echo "data: ${data:-none found (.deps/data/mnist or data/mnist)}"
  [ -d .deps/root/usr ] || echo "warning: .deps/root/usr is missing: run ../shared/device/stage.sh here and carry .deps"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Staged Debian libraries and protoc (unpacked, not installed) must be found at build and run time.
if [ -d .deps/root/usr ]; then
  export PATH="$PWD/.deps/root/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$PWD/.deps/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# The steps, one function each; SUITE_STEPS picks which run and in what order.
s_env() { step env 30 bash -c "$(declare -f env_info); py=$py data='$data'; env_info"; }
s_configure() {
  step configure 90 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$PWD/.deps/root/usr" -DCMAKE_CUDA_ARCHITECTURES=90 -DMNIST_USE_OPENBLAS=OFF \
    ${data:+-DMNIST_TEST_DATA_DIR="$data"}
}
s_build() { step build 300 cmake --build "$build" -j "$jobs"; }
s_ctest-gpu() { step ctest-gpu 90 ctest --test-dir "$build" -L gpu --output-on-failure --timeout 80; }
s_ctest-all() { step ctest-all 150 ctest --test-dir "$build" --output-on-failure -j 8 --timeout 120 -LE emu; }  # the real GPU replaces the emulation
sanitize() {  # sanitize TOOL [EXTRA FLAGS]
  local tool=$1; shift
  step "$tool" 120 bash -c "need $gpu_tests 'no GPU test binary'; command -v compute-sanitizer >/dev/null || { echo 'skip: compute-sanitizer missing'; exit 77; }; compute-sanitizer --tool $tool $* --error-exitcode 1 $gpu_tests"
}
s_memcheck() { sanitize memcheck --leak-check full; }
s_racecheck() { sanitize racecheck; }
s_initcheck() { sanitize initcheck; }
s_san-train() {
  step san-train 150 bash -c "need $bin 'engine not built'; command -v compute-sanitizer >/dev/null || { echo 'skip: compute-sanitizer missing'; exit 77; }; compute-sanitizer --tool memcheck --error-exitcode 1 $bin --data '$data' --device cuda --epochs 1 --batch-size 4096 --out $tmp/san --quiet"
}
s_bench() {
  step bench 150 bash -c "need $build/profiling/bench_kernels 'no kernel benchmark built'; $build/profiling/bench_kernels --json $out/bench_kernels.json; if [ -x $build/profiling/bench_fused ]; then $build/profiling/bench_fused --epochs 3; fi"
}
s_race() {
  step race 240 "$py" profiling/race.py --device "${SUITE_RACE_DEVICE:-cuda}" --bin "$bin" ${data:+--data "$data"} \
    --python "$py" --batches "${SUITE_RACE_BATCHES:-128,512,4096}" --epochs "${SUITE_RACE_EPOCHS:-4}" \
    --repeats "${SUITE_RACE_REPEATS:-2}" --timeout 120 --results-dir "$out" --keep-logs "$logs/race"
}
s_train20() {
  step train20 120 bash -c "need $bin 'engine not built'; $bin --data '$data' --device cuda --epochs 20 --batch-size 128 --out $tmp/train20 && cp $tmp/train20/report.json $out/train20-report.json"
}
s_ncu() { mkdir -p "$tmp/prof"; step ncu 120 bash profiling/ncu.sh "$tmp/prof/ncu" --bin "$bin" ${data:+--data "$data"} --count 30; }
s_nsys() { mkdir -p "$tmp/prof"; step nsys 60 bash profiling/nsys.sh "$tmp/prof/nsys" --bin "$bin" ${data:+--data "$data"} --epochs 2; }

for s in $steps; do
  if declare -F "s_$s" >/dev/null; then "s_$s"; else summary+=("$(printf '%-10s UNKNOWN  (not a step: %s)' "$s" "$all_steps")"); fi
done

# Pack: the device tool returns at most 8 files, 16 MiB each.
if [ -d "$tmp/prof" ] && [ -n "$(ls -A "$tmp/prof")" ]; then
  tar czf "$out/profiles.tar.gz" -C "$tmp" prof 2>/dev/null
  if [ "$(stat -c %s "$out/profiles.tar.gz")" -gt 15000000 ]; then
    echo "profiles.tar.gz is over 15 MB: keeping the text summaries only"
    tar czf "$out/profiles.tar.gz" -C "$tmp" --exclude='*.ncu-rep' --exclude='*.nsys-rep' --exclude='*.sqlite' prof
  fi
fi
{
  echo "gpu_suite on $(hostname) at $(date -u +%FT%TZ), commit ${MNIST_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo '?')}, $(( $(date +%s) - t_start ))s of ${budget}s"
  printf '%s\n' "${summary[@]}"
} > "$out/summary.txt"
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"

echo
echo "================ race ================"
for f in "$out"/*.md; do [ -f "$f" ] && sed -n '/^| contender/,/^$/p;/^Notes:/,$p' "$f"; done
echo "================ summary ================"
cat "$out/summary.txt"
echo "files: $(cd "$out" && ls | tr '\n' ' ')"
