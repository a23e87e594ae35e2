#!/usr/bin/env bash
# Fault tests of the real binary (ctest label "fault"):
#   1. SIGINT mid-run: exit 130 after writing a resume checkpoint; --resume then finishes the run
#      with a best checkpoint and history identical to an uninterrupted run.
#   2. kill -9 mid-epoch: --resume continues from the last resume checkpoint on disk (written in
#      the background, so possibly an epoch older than the last epoch line), same end result.
# Usage: signals.sh MNIST_CUDA DATA_DIR
set -euo pipefail
bin=$1
data=$2
work=$(mktemp -d /tmp/mnist_signals_XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A 12,000-image subset keeps each epoch short while leaving ~100 steps per epoch to interrupt.
args=(--device cpu --epochs 8 --patience 100 --batch-size 96 --seed 5 --threads 1)
small="$work/data"
mkdir -p "$small"
python3 - "$data" "$small" <<'PY'
import gzip, os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
def rd(name):
    p = os.path.join(src, name)
    return gzip.open(p + ".gz").read() if os.path.exists(p + ".gz") else open(p, "rb").read()
for kind, n in (("train", 12000), ("t10k", 2000)):
    img, lab = rd(f"{kind}-images-idx3-ubyte"), rd(f"{kind}-labels-idx1-ubyte")
    open(os.path.join(dst, f"{kind}-images-idx3-ubyte"), "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + img[16:16 + n * 784])
    open(os.path.join(dst, f"{kind}-labels-idx1-ubyte"), "wb").write(struct.pack(">II", 0x801, n) + lab[8:8 + n])
PY

"$bin" "${args[@]}" --data "$small" --out "$work/ref" --quiet > "$work/ref.log"
cut -d, -f1-6 "$work/ref/history.csv" > "$work/ref.hist"

wait_for() {  # wait until file $1 exists (max 60 s)
  for _ in $(seq 600); do [ -s "$1" ] && return 0; sleep 0.1; done
  fail "timed out waiting for $1"
}

# 1. SIGINT
"$bin" "${args[@]}" --data "$small" --out "$work/int" > "$work/int.log" 2>&1 &
pid=$!
wait_for "$work/int/resume.safetensors"
# Right after the first epoch's resume state: an idle machine runs an epoch of this subset in
# well under 0.1 s, so a longer wait could see the run end before the signal.
sleep 0.02
kill -INT $pid
set +e; wait $pid; rc=$?; set -e
[ $rc -eq 130 ] || { cat "$work/int.log"; fail "SIGINT: exit code $rc, expected 130"; }
grep -q "Interrupted in epoch" "$work/int.log" || fail "SIGINT: no 'Interrupted' line"
"$bin" "${args[@]}" --data "$small" --out "$work/int" --resume --quiet > "$work/int2.log"
cmp "$work/ref/best_model.safetensors" "$work/int/best_model.safetensors" || fail "SIGINT+resume: best checkpoint differs"
cut -d, -f1-6 "$work/int/history.csv" | cmp - "$work/ref.hist" || fail "SIGINT+resume: history differs"
echo "ok: SIGINT -> exit 130, resume -> identical result"

# 2. kill -9 after the second epoch's resume checkpoint, i.e. mid-epoch 3
"$bin" "${args[@]}" --data "$small" --out "$work/kill" > "$work/kill.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "^Epoch 2/" "$work/kill.log" 2>/dev/null && break; sleep 0.05; done
# The files are written in the background: the state on disk may be an epoch older than the last
# line printed, but there is one once resume.safetensors exists (it only ever changes atomically).
wait_for "$work/kill/resume.safetensors"
sleep 0.2
kill -9 $pid
set +e; wait $pid; set -e
"$bin" "${args[@]}" --data "$small" --out "$work/kill" --resume --quiet > "$work/kill2.log"
cmp "$work/ref/best_model.safetensors" "$work/kill/best_model.safetensors" || fail "kill -9+resume: best checkpoint differs"
cut -d, -f1-6 "$work/kill/history.csv" | cmp - "$work/ref.hist" || fail "kill -9+resume: history differs"
echo "ok: kill -9 -> resume -> identical result"
