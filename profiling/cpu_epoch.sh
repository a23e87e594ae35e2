#!/usr/bin/env bash
# CPU epoch time on this machine: mnist_cuda --device cpu against the tutorial's PyTorch loop, both
# on the same number of threads (default 2), median s/epoch of EPOCHS epochs with the first left
# out. A thin wrapper over race.py, which prints the table and writes
# profiling/results/<date>-cpu-<host>.md/.json.
#
#   profiling/cpu_epoch.sh [--epochs 3] [--threads 2] [--repeats 1] [--batches 128] [--bin PATH]
#                          [--data DIR] [--contenders engine,pytorch-tutorial] [-- extra race.py args]
#
# The figures only mean something on an otherwise idle machine: the script prints the load average
# before it starts and says so when something else is using the cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
epochs=3 threads=2 repeats=1 batches=128 bin=build/apps/mnist_cuda data="" contenders=engine,pytorch-tutorial
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) epochs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --contenders) contenders=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "cpu_epoch: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# The interpreter that has torch: the first python3 on PATH, else Debian's (python3-torch).
py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then py=$(command -v "$cand"); break; fi
done
if [ -z "$py" ]; then
  echo "cpu_epoch: no python3 here can import torch (Debian: apt-get install python3-torch); the PyTorch side is skipped" >&2
  py=$(command -v python3 || echo /usr/bin/python3)
fi

ncpu=$(nproc 2>/dev/null || echo '?')
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
echo "cpu_epoch: $ncpu cores, load average $load, python $py, $threads threads, $epochs epochs x $repeats"
if [ "$load" != '?' ] && awk -v l="$load" -v n="$ncpu" 'BEGIN{exit !(l > 0.5 * n)}'; then
  echo "cpu_epoch: WARNING: the machine is busy (load $load on $ncpu cores); the timings will be inflated"
fi

args=(--device cpu --bin "$bin" --contenders "$contenders" --epochs "$epochs" --repeats "$repeats"
      --batches "$batches" --threads "$threads" --python "$py"
      --tag "cpu-$(hostname -s 2>/dev/null | tr '[:upper:]' '[:lower:]' | tr -c '[:alnum:]\n' '-' || echo host)")
[ -n "$data" ] && args+=(--data "$data")
cd "$root"
exec "$py" "$here/race.py" "${args[@]}" "${extra[@]}"
