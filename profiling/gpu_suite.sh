#!/usr/bin/env bash
# Everything that needs the GPU, in one call on a bare lent machine (see ../shared/device/README.md):
#
#   ../shared/device/stage.sh doctest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libpng-dev \
#       libpng16-16 libprotobuf-dev libprotobuf-lite32 libprotobuf32 libprotoc32 protobuf-compiler \
#       libcairo2-dev libcairo2 libpixman-1-0 libfontconfig1 libfreetype6 libx11-6 libxcb1 \
#       libxcb-render0 libxcb-shm0 libxext6 libxrender1 libxau6 libxdmcp6 libbsd0 libmd0 libexpat1 \
#       libbrotli1 fonts-dejavu-core libdeflate-dev libdeflate0
#                                                  # here, once: the Debian packages the build needs
#                                                  # (headers, libraries, protoc) + MNIST into .deps/
#   device run, carry [".deps"]:  profiling/gpu_suite.sh $OUT
#
# Steps, in this default order (each with a time cap, each logged; a failing step does not stop
# the next). The sanitizers come right after the tests, before the measurements, so that every one
# of them reaches a verdict inside the budget:
#   env        nvidia-smi, nvcc, cmake, torch (+ CUDA, cuDNN) versions
#   configure  cmake into build-gpu (-DCMAKE_PREFIX_PATH=.deps/root/usr, arch 90, no OpenBLAS)
#   build      cmake --build build-gpu
#   ctest-gpu  ctest -L gpu;  ctest-all  every test but the host emulation of the kernels (label emu)
#   memcheck / initcheck   compute-sanitizer over build-gpu/tests/gpu/mnist_gpu_tests (all of it)
#   racecheck / synccheck  compute-sanitizer over training runs of a small model (784-32-16-10)
#              on a 300-image subset of MNIST (profiling/mnist_subset.py; 2 steps, one a partial
#              batch, validation, test), one per kernel path (fused; graph fp32, tf32, bf16; tail
#              fp32, tf32; auto tf32: the graph/tail race), each with --autotune check, so that
#              every tile candidate of layer 0's GEMMs (wgmma included) and the tail path run once
#              under the tool: 72 s in all for racecheck on the H200 (a018989), 0 hazards
#   racecheck-tests / synccheck-tests  the same tools over the sanitizer selection of the GPU
#              tests (MNIST_GPU_TEST_QUICK=1: rows 1 and 129, the odd widths, no 4096 x 784 or
#              cuBLAS case; tests/gpu/gpu_test.cuh); racecheck did not finish it in 90 s on the H200
#   san-train  compute-sanitizer memcheck over one short training run (1 epoch, batch 4096, the
#              size models' tiles: --autotune off; the candidates are memchecked by the GPU tests)
#   bench      build-gpu/profiling/bench_kernels --json (when it exists); bench_fused (fused vs graph
#              vs tail step, grid sizes, autotuned paths and their reports; its table in the step's
#              log) at each of SUITE_FUSED_PRECISIONS (default "fp32 tf32")
#   train20    a full 20-epoch CUDA training with the tutorial's callbacks
#   race       profiling/race.py (engine, engine-graph, engine-tail, engine-cublas, engine-graph1, PyTorch
#              tutorial/resident/graph, JAX default/highest)
#   race2      a second race.py run (SUITE_RACE2_CONTENDERS, default jax,jax-highest, at SUITE_RACE2_BATCHES,
#              default 4096), its table in logs/race2: the slow-to-start contenders at fewer batches
#   accuracy   profiling/precision_accuracy.py: the tutorial's 20-epoch run per seed (1,2,3) and
#              --precision (fp32, tf32, bf16), test accuracy and the gap to fp32 (issue 12: 0.15 pp)
#   ncu, nsys  profiling/ncu.sh, profiling/nsys.sh, with the time that is left
# A step that runs out of time is stopped with its whole process group (and every process it
# started): compute-sanitizer's target must not keep the GPU busy for the next step.
#
# OUTDIR receives at most 8 files: summary.txt (with the open predictions of profiling/predictions.json
# against this run's rows, profiling/check_predictions.py), logs.tar.gz (every step's log), the race's
# <date>-<gpu>.md/.json, bench_kernels.json, train20-report.json, accuracy.md, profiles.tar.gz. The printed
# summary (and summary.txt) ends with the last lines of every step that failed or timed out.
#
# Knobs (environment): SUITE_BUDGET_S (default 470: the whole suite's seconds; with the device
# machine's start and the file transfer, one call stays under 8 minutes), SUITE_STEPS
# (space-separated steps, run in the order given), SUITE_RACE_BATCHES (128,512,4096),
# SUITE_RACE_EPOCHS (4), SUITE_RACE_REPEATS (2), SUITE_RACE_CONTENDERS (race.py's default: all),
# SUITE_RACE_PRECISIONS (fp32), SUITE_ACC_SEEDS (1,2,3), SUITE_ACC_EPOCHS (20), SUITE_RACE_TIMEOUT (60: seconds for one run), SUITE_FUSED_BATCHES
# (bench_fused's batches, 128,256,512,4096), SUITE_NCU_ARGS (ncu.sh's filter, default "--count 30"; several filters separated by ';' run one after another;
# e.g. "--kernels fused_step --skip 2 --count 1" for one launch of the fused kernel), SUITE_JOBS (build parallelism, default nproc),
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
budget=${SUITE_BUDGET_S:-470}
all_steps="env configure build ctest-gpu ctest-all memcheck racecheck synccheck initcheck san-train bench train20 race race2 accuracy racecheck-tests synccheck-tests ncu nsys"
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

descendants() {  # descendants PID: every process below PID (children first listed, recursively)
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}

# alive PGID [PID...]: true while a process of group PGID, or one of the PIDs, still runs
alive() {
  local p
  kill -0 -- -"$1" 2>/dev/null && return 0
  shift
  for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
  return 1
}

# stop_group PGID: TERM to the process group PGID and to every process below its leader (the
# target of compute-sanitizer may run in a group of its own), KILL 10 s later to what is left.
stop_group() {
  local pgid=$1 pids i
  pids=$(descendants "$pgid" | tr '\n' ' ')
  echo "(limit reached: stopping process group $pgid and its processes ${pids:-none})"
  kill -TERM -- -"$pgid" $pids 2>/dev/null
  for i in 1 2 3 4 5 6 7 8 9 10; do
    alive "$pgid" $pids || return 0
    sleep 1
  done
  kill -KILL -- -"$pgid" $pids 2>/dev/null
  echo "(killed what was still running after 10 s)"
}

declare -a tails=()

# step NAME CAP_SECONDS COMMAND...: runs COMMAND in a process group of its own (setsid) for at most
# the smaller of CAP and the time left (keeping 20 s for packing), tees its output to
# logs/NN-NAME.log, records PASS/FAIL/SKIP/TIMEOUT; at the limit the whole group is stopped.
# A failing or timed-out step's last 25 log lines go to the summary.
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
  echo "== $name (limit ${t}s): $*" | tee "$log"
  local t0; t0=$(date +%s)
  setsid --wait bash -o pipefail -c '"$@" 2>&1 | tee -a "$0"' "$log" "$@" &
  local pid=$! rc
  while kill -0 "$pid" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt "$t" ]; do sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then
    stop_group "$pid" | tee -a "$log"
    wait "$pid" 2>/dev/null
    rc=124
  else
    wait "$pid"
    rc=$?
  fi
  local dt=$(( $(date +%s) - t0 )) verdict
  case $rc in
    0) verdict=PASS ;;
    77) verdict=SKIP ;;
    124|137) verdict=TIMEOUT ;;
    *) verdict="FAIL($rc)" ;;
  esac
  summary+=("$(printf '%-10s %-8s %4ss  %s' "$name" "$verdict" "$dt" "$(basename "$log")")")
  echo "== $name: $verdict in ${dt}s" | tee -a "$log"
  case $verdict in
    PASS|SKIP) ;;
    *) tails+=("---- $name ($verdict), last lines of $(basename "$log"):" "$(tail -n 25 "$log")") ;;
  esac
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
sanitize() {  # sanitize TOOL [EXTRA FLAGS]: over every GPU test
  local tool=$1; shift
  step "$tool" 120 bash -c "need $gpu_tests 'no GPU test binary'; command -v compute-sanitizer >/dev/null || { echo 'skip: compute-sanitizer missing'; exit 77; }; compute-sanitizer --tool $tool $* --error-exitcode 1 $gpu_tests"
}
# The sanitizer selection of the GPU tests (see the header) and the run on the MNIST subset.
san_exclude='*cuBLAS*,*cublas*,*does not depend on its batch*,*64x64 tiles (large batch)*,*default 784-128-64-10*,*multi-step graphs*,*two runs with one seed*,*keep rate and scaling*,*masks are deterministic*'
sanitize_quick() {  # sanitize_quick TOOL: 2 training steps of a small model on each kernel path
  local tool=$1
  step "$tool" 90 bash -c "need $bin 'engine not built'; command -v compute-sanitizer >/dev/null || { echo 'skip: compute-sanitizer missing'; exit 77; }
    $py profiling/mnist_subset.py '$data' $tmp/mnist300 300 100 || exit 1
    rc=0
    for path in 'fused' 'graph' 'graph --precision tf32' 'graph --precision bf16' 'tail' 'tail --precision tf32' 'auto --precision tf32'; do
      t0=\$(date +%s)
      compute-sanitizer --tool $tool --error-exitcode 1 $bin --data $tmp/mnist300 --device cuda --epochs 1 --batch-size 128 --hidden 32,16 --graph-steps 2 --autotune check --kernels \$path --out $tmp/san-$tool --quiet --seed 3
      b=\$?; [ \$b != 0 ] && rc=\$b
      echo \"== $tool over 2 training steps (784-32-16-10, --kernels \$path) on 240 images, validation and test: exit \$b in \$(( \$(date +%s) - t0 ))s\"
      rm -rf $tmp/san-$tool
    done
    exit \$rc"
}
sanitize_tests() {  # sanitize_tests TOOL: the sanitizer selection of the GPU tests (may not finish: its own step)
  local tool=$1
  step "$tool-tests" 90 bash -c "need $gpu_tests 'no GPU test binary'; command -v compute-sanitizer >/dev/null || { echo 'skip: compute-sanitizer missing'; exit 77; }
    MNIST_GPU_TEST_QUICK=1 compute-sanitizer --tool $tool --error-exitcode 1 $gpu_tests --no-intro --test-case-exclude='$san_exclude'"
}
s_memcheck() { sanitize memcheck --leak-check full; }
s_racecheck() { sanitize_quick racecheck; }
s_synccheck() { sanitize_quick synccheck; }
s_racecheck-tests() { sanitize_tests racecheck; }
s_synccheck-tests() { sanitize_tests synccheck; }
s_initcheck() { sanitize initcheck; }
s_san-train() {
  step san-train 150 bash -c "need $bin 'engine not built'; command -v compute-sanitizer >/dev/null || { echo 'skip: compute-sanitizer missing'; exit 77; }; compute-sanitizer --tool memcheck --error-exitcode 1 $bin --data '$data' --device cuda --epochs 1 --batch-size 4096 --autotune off --out $tmp/san --quiet"
}
s_bench() {
  step bench 150 bash -c "need $build/profiling/bench_kernels 'no kernel benchmark built'; $build/profiling/bench_kernels --json $out/bench_kernels.json; if [ -x $build/profiling/bench_fused ]; then for prec in ${SUITE_FUSED_PRECISIONS:-fp32 tf32}; do $build/profiling/bench_fused --epochs 3 --precision \$prec --batches ${SUITE_FUSED_BATCHES:-128,256,512,4096}; done; fi"
}
s_race() {
  step race 240 "$py" profiling/race.py --device "${SUITE_RACE_DEVICE:-cuda}" --bin "$bin" ${data:+--data "$data"} \
    --python "$py" --batches "${SUITE_RACE_BATCHES:-128,512,4096}" --epochs "${SUITE_RACE_EPOCHS:-4}" \
    --repeats "${SUITE_RACE_REPEATS:-2}" --timeout "${SUITE_RACE_TIMEOUT:-60}" --results-dir "$out" --keep-logs "$logs/race" \
    ${SUITE_RACE_CONTENDERS:+--contenders "$SUITE_RACE_CONTENDERS"} ${SUITE_RACE_PRECISIONS:+--precisions "$SUITE_RACE_PRECISIONS"}
}
s_race2() {  # a second race with its own contenders and batches (e.g. JAX at one batch only), into logs/race2
  step race2 150 "$py" profiling/race.py --device "${SUITE_RACE_DEVICE:-cuda}" --bin "$bin" ${data:+--data "$data"} \
    --python "$py" --batches "${SUITE_RACE2_BATCHES:-4096}" --epochs "${SUITE_RACE_EPOCHS:-4}" \
    --repeats "${SUITE_RACE_REPEATS:-2}" --timeout "${SUITE_RACE_TIMEOUT:-60}" --results-dir "$logs/race2" \
    --keep-logs "$logs/race2" --contenders "${SUITE_RACE2_CONTENDERS:-jax,jax-highest}"
}
s_train20() {
  step train20 120 bash -c "need $bin 'engine not built'; $bin --data '$data' --device cuda --epochs 20 --batch-size 128 --out $tmp/train20 && cp $tmp/train20/report.json $out/train20-report.json"
}
s_accuracy() {
  step accuracy 150 "$py" profiling/precision_accuracy.py --bin "$bin" --device "${SUITE_RACE_DEVICE:-cuda}" ${data:+--data "$data"} \
    --seeds "${SUITE_ACC_SEEDS:-1,2,3}" --epochs "${SUITE_ACC_EPOCHS:-20}" --out-md "$out/accuracy.md" --out-json "$logs/accuracy.json"
}
s_ncu() {  # one ncu.sh run per ';'-separated filter of SUITE_NCU_ARGS, into prof/ncu, prof/ncu-2, ...
  local i=0 f dir
  IFS=';' read -ra filters <<< "${SUITE_NCU_ARGS:---count 30}"
  for f in "${filters[@]}"; do
    i=$((i + 1)); dir=$tmp/prof/ncu; [ $i -gt 1 ] && dir=$tmp/prof/ncu-$i
    mkdir -p "$tmp/prof"
    # shellcheck disable=SC2086  # f is a list of ncu.sh arguments
    step ncu 120 bash profiling/ncu.sh "$dir" --bin "$bin" ${data:+--data "$data"} $f
  done
}
s_nsys() { mkdir -p "$tmp/prof"; step nsys 60 bash profiling/nsys.sh "$tmp/prof/nsys" --bin "$bin" ${data:+--data "$data"} --epochs 2; }

for s in $steps; do
  if declare -F "s_$s" >/dev/null; then "s_$s"; else summary+=("$(printf '%-10s UNKNOWN  (not a step: %s)' "$s" "$all_steps")"); fi
done

# The open predictions of profiling/NOTES.md against this run's rows (profiling/predictions.json),
# into the summary: the first thing to read after a run.
"$py" profiling/check_predictions.py "$out" > "$logs/predictions.md" 2>&1 || true

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
  [ ${#tails[@]} -gt 0 ] && printf '%s\n' "${tails[@]}"
  [ -s "$logs/predictions.md" ] && { echo; cat "$logs/predictions.md"; }
} > "$out/summary.txt"
tar czf "$out/logs.tar.gz" -C "$out" logs && rm -rf "$logs"

echo
echo "================ race ================"
for f in "$out"/*.md; do [ -f "$f" ] && sed -n '/^| contender/,/^$/p;/^Notes:/,$p' "$f"; done
echo "================ summary ================"
cat "$out/summary.txt"
echo "files: $(cd "$out" && ls | tr '\n' ' ')"
