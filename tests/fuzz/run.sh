#!/usr/bin/env bash
# Fuzzes the loaders of untrusted input with libFuzzer + AddressSanitizer + UBSan:
#   fuzz_idx         read_idx / load_image_set (raw and gzip IDX files)
#   fuzz_checkpoint  decode_safetensors + tensors_to_params (checkpoints)
#
#   bash tests/fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 s each, both targets;
#                                                      0: build and run the seeds once)
#
# Builds with clang++ straight from the few sources the loaders need, into $MNIST_FUZZ_BUILD
# (default <repo>/build-fuzz), seeds each target from tests/fuzz/corpus/<target>/ and
# regressions/<target>/ (read only; new inputs go to <build>/corpus/<target>/), and exits non-zero
# when any target crashes, leaks, hits UB, times out, allocates more than 1.5 GB or runs out of
# memory. The input that did it is copied to
# tests/fuzz/regressions/<target>/, where the ctest test fuzz_replay_<target> replays it forever
# after: fix the bug, keep the file.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(idx checkpoint)
BUILD=${MNIST_FUZZ_BUILD:-$ROOT/build-fuzz}
CXX=${FUZZ_CXX:-clang++}
JOBS=${FUZZ_JOBS:-2}

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz: $CXX not found (Debian: apt-get install clang libclang-rt-dev)" >&2
  exit 1
fi
case "$SECS" in '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number, got '$SECS'" >&2; exit 2 ;; esac

SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
CXXFLAGS=(-std=c++17 -g -O1 "${SAN[@]}" -I"$ROOT" -DNDEBUG)
LIB_SRC=(apps/data/idx.cpp apps/data/mnist.cpp apps/io/safetensors.cpp apps/io/checkpoint.cpp
         apps/io/atomic_file.cpp layers/model.cpp runtime/huge_pages.cpp tests/fuzz/entries.cpp)

mkdir -p "$BUILD/obj"
echo "fuzz: building in $BUILD with $($CXX --version | head -1)"
pids=()
objs=()
for src in "${LIB_SRC[@]}" tests/fuzz/fuzz_idx.cpp tests/fuzz/fuzz_checkpoint.cpp; do
  obj="$BUILD/obj/$(echo "$src" | tr / _).o"
  objs+=("$obj")
  # Rebuild when the source or any header of the repository is newer than the object.
  if [ ! -f "$obj" ] || [ -n "$(find "$ROOT/$src" "$ROOT/apps" "$ROOT/layers" "$ROOT/runtime" "$ROOT/kernels" \
         -name '*.hpp' -newer "$obj" -print -quit 2>/dev/null)" ] || [ "$ROOT/$src" -nt "$obj" ]; then
    "$CXX" "${CXXFLAGS[@]}" -fsanitize=fuzzer-no-link -c "$ROOT/$src" -o "$obj" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
lib_objs=("${objs[@]:0:${#LIB_SRC[@]}}")
for t in idx checkpoint; do
  "$CXX" "${SAN[@]}" -fsanitize=fuzzer "${lib_objs[@]}" "$BUILD/obj/tests_fuzz_fuzz_$t.cpp.o" -lz -o "$BUILD/fuzz_$t"
done

# 0 seconds: build, then only run the seeds and the regressions once (a smoke test).
if [ "$SECS" -eq 0 ]; then budget=(-runs=0); else budget=(-max_total_time="$SECS"); fi

# One target, its report on stdout and stderr; exit 1 when it failed.
fuzz_one() {
  local t=$1
  local seeds="$ROOT/tests/fuzz/corpus/$t"
  local regs=()
  [ -n "$(ls "$ROOT/tests/fuzz/regressions/$t" 2>/dev/null)" ] && regs=("$ROOT/tests/fuzz/regressions/$t")
  local work="$BUILD/corpus/$t"
  local art="$BUILD/artifacts/$t"
  local scratch
  scratch=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/mnist_fuzz_$t.XXXXXX")
  mkdir -p "$work" "$art"
  rm -f "$art"/*
  echo "fuzz: $t for ${SECS}s (seeds: tests/fuzz/corpus/$t, log: $BUILD/fuzz_$t.log)"
  local rc=0
  MNIST_FUZZ_SCRATCH="$scratch" ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    "$BUILD/fuzz_$t" "${budget[@]}" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1536 \
    -print_final_stats=1 -artifact_prefix="$art/" "$work" "$seeds" "${regs[@]}" >"$BUILD/fuzz_$t.log" 2>&1 || rc=$?
  rm -rf "$scratch"
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$BUILD/fuzz_$t.log" | sed 's/^/  /' || true
  if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$art")" ]; then
    echo "fuzz: $t FAILED (exit $rc); the report:" >&2
    grep -m1 -B2 -A25 -E 'ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error:|invariant failed|terminate called' \
      "$BUILD/fuzz_$t.log" >&2 || tail -40 "$BUILD/fuzz_$t.log" >&2
    mkdir -p "$ROOT/tests/fuzz/regressions/$t"
    for f in "$art"/*; do
      [ -f "$f" ] || continue
      cp "$f" "$ROOT/tests/fuzz/regressions/$t/"
      echo "fuzz: saved $f -> tests/fuzz/regressions/$t/$(basename "$f")" >&2
    done
    return 1
  fi
  echo "fuzz: $t ok"
}

for t in "${TARGETS[@]}"; do
  [ -d "$ROOT/tests/fuzz/corpus/$t" ] || { echo "fuzz: unknown target '$t' (no $ROOT/tests/fuzz/corpus/$t)" >&2; exit 2; }
done
# The targets side by side (each libFuzzer process runs on one core: one after the other they left
# CI's second core idle for a minute), their reports printed in order.
pids=()
for t in "${TARGETS[@]}"; do
  fuzz_one "$t" >"$BUILD/fuzz_$t.out" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!TARGETS[@]}"; do
  wait "${pids[$i]}" || status=1
  cat "$BUILD/fuzz_${TARGETS[$i]}.out"
done
exit $status
