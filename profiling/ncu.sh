#!/usr/bin/env bash
# Nsight Compute: full metric sets for the kernels of a few training steps of the engine.
#
#   profiling/ncu.sh OUTDIR [--bin PATH] [--data DIR] [--kernels REGEX] [--skip N] [--count N]
#                    [--nvtx-include EXPR] [--set full] [--batch-size 128] [-- engine args]
#
# --kernels   ncu -k regex:REGEX, the kernels to profile (default: all, ".")
# --skip      launches of matching kernels to skip first (default 60: past start-up and the first
#             steps); --count how many to profile after that (default 40, a few steps)
# --nvtx-include  an ncu NVTX filter, e.g. 'train_step/' (kernels inside the push/pop range of
#             that name) once the engine names its ranges; enables --nvtx. Default: none
# Autotuning (--autotune on, the engine's default) runs every GEMM tile candidate about 16 times at
# a GEMM's first launch, inside NVTX ranges named "autotune" / "autotune paths": at batch 128 in
# fp32 (the fused kernel) nothing is tuned; elsewhere skip past them (--skip), or pass
# "-- --autotune off" to profile the size models' tiles.
# Writes OUTDIR/engine.ncu-rep, OUTDIR/ncu-details.txt (the details page as text), OUTDIR/ncu-source.csv
# (per-SASS-instruction metrics: stall samples, executed instructions),
# OUTDIR/ncu-summary.csv and OUTDIR/ncu.log. Clock control is off (--clock-control none): the card's
# clocks are left as found, as on the lent machines. Exits 77 when ncu is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,15p' "$0"; exit 2; }
out=$1; shift
bin=build/apps/mnist_cuda data="" kernels="." skip=60 count=40 nvtx="" set_name=full batch=128 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --kernels) kernels=$2; shift 2 ;;
    --skip) skip=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --nvtx-include) nvtx=$2; shift 2 ;;
    --set) set_name=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "ncu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$root"
. "$here/common.sh"
resolve_inputs ncu.sh

ncu=$(command -v ncu 2>/dev/null || true)
if [ -z "$ncu" ]; then
  for c in /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do [ -x "$c" ] && { ncu=$c; break; }; done
fi
if [ -z "$ncu" ]; then
  echo "ncu.sh: SKIP: Nsight Compute (ncu) is not installed here (not on PATH, not under /usr/local/cuda or /opt/nvidia)"
  exit 77
fi
mkdir -p "$out"
echo "ncu.sh: using $ncu ($("$ncu" --version 2>/dev/null | tail -1 || echo 'version unknown'))"
run_dir=$(mktemp -d)
trap 'rm -rf "$run_dir"' EXIT
filters=(-k "regex:$kernels" --launch-skip "$skip" --launch-count "$count")
[ -n "$nvtx" ] && filters=(--nvtx --nvtx-include "$nvtx" "${filters[@]}")
# One epoch is plenty: only the first skip+count matching launches are looked at.
cmd=("$bin" --data "$data" --device cuda --epochs 1 --batch-size "$batch" --patience 1000 --out "$run_dir" --quiet
     "${extra[@]}")
echo "ncu.sh: ncu --set $set_name ${filters[*]} ${cmd[*]}"
set +e
"$ncu" --set "$set_name" --clock-control none --target-processes all "${filters[@]}" \
  -f -o "$out/engine" "${cmd[@]}" 2>&1 | tee "$out/ncu.log"
rc=${PIPESTATUS[0]}
set -e
if [ ! -s "$out/engine.ncu-rep" ]; then
  echo "ncu.sh: FAILED: no $out/engine.ncu-rep (exit $rc); see $out/ncu.log"
  exit 1
fi
"$ncu" -i "$out/engine.ncu-rep" --page details > "$out/ncu-details.txt" 2>&1 || true
# Per-SASS-instruction metrics (the Source page: warp stall samples, executed instructions) to
# find a kernel's hot spots without the GUI.
"$ncu" -i "$out/engine.ncu-rep" --page source --csv --print-source sass > "$out/ncu-source.csv" 2>&1 || true
"$ncu" -i "$out/engine.ncu-rep" --page raw --csv \
  --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread,sm__throughput.avg.pct_of_peak_sustained_elapsed,gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes.sum \
  > "$out/ncu-summary.csv" 2>&1 || true
# A one-line-per-kernel digest for the log: name and duration.
"$ncu" -i "$out/engine.ncu-rep" --page raw --csv --metrics gpu__time_duration.sum 2>/dev/null \
  | awk -F'","' 'NR>2 {n=$5; gsub(/\(.*/, "", n); print "  " $NF "\t" n}' | tr -d '"' | head -60 || true
echo "ncu.sh: wrote $out/engine.ncu-rep, $out/ncu-details.txt, $out/ncu-summary.csv (engine exit $rc)"
exit "$rc"
