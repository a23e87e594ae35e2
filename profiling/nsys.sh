#!/usr/bin/env bash
# Nsight Systems timeline of the engine's CUDA training: CUDA API, kernels, NVTX ranges, cuBLAS.
#
#   profiling/nsys.sh OUTDIR [--bin PATH] [--data DIR] [--epochs 2] [--batch-size 128] [-- engine args]
#
# Writes OUTDIR/engine.nsys-rep, OUTDIR/nsys-stats.txt (kernel, API, NVTX and memcpy summaries)
# and OUTDIR/nsys.log. Exits 77 (ctest's "skipped") when no nsys is found: the lent GPU machines
# were seen without nsys on PATH (ncu.sh is the route that works there); CUDA's and Nsight's
# install directories are searched first, and a copy found beside Nsight Compute may only leave a
# .qdstrm file that needs the full Nsight Systems to be read. The first epoch's GEMM tile tuning
# (--autotune on, the default) shows as NVTX ranges "autotune" / "autotune paths"; the summaries
# count its launches too (pass "-- --autotune off" to leave it out).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { sed -n '2,9p' "$0"; exit 2; }
out=$1; shift
bin=build/apps/mnist_cuda data="" epochs=2 batch=128 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "nsys.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$root"
. "$here/common.sh"
resolve_inputs nsys.sh

# Not on PATH on the lent machines (H200, 2026-11-26): look where CUDA and Nsight installs put it,
# including next to the Nsight Compute that ncu belongs to.
nsys=$(command -v nsys 2>/dev/null || true)
searched="PATH"
if [ -z "$nsys" ]; then
  dirs=(/usr/local/cuda*/bin /usr/local/cuda*/nsight-systems-* /opt/nvidia/nsight-systems* /usr/local/cuda*/nsight-compute-*
        /opt/nvidia/nsight-compute/*)
  ncu_bin=$(command -v ncu 2>/dev/null || true)
  [ -n "$ncu_bin" ] && dirs+=("$(dirname "$(readlink -f "$ncu_bin")")")
  for d in "${dirs[@]}"; do
    [ -d "$d" ] || continue
    searched+=", $d"
    c=$(find "$d" -maxdepth 4 -type f -name nsys -perm -u+x 2>/dev/null | head -1)
    [ -n "$c" ] && { nsys=$c; break; }
  done
fi
if [ -z "$nsys" ]; then
  echo "nsys.sh: SKIP: Nsight Systems (nsys) is not installed here (searched: $searched);" \
       "profiling/ncu.sh gives the kernel times inside the graph instead"
  exit 77
fi
mkdir -p "$out"
echo "nsys.sh: using $nsys ($("$nsys" --version 2>/dev/null | head -1 || echo 'version unknown'))"
run_dir=$(mktemp -d)
trap 'rm -rf "$run_dir"' EXIT
cmd=("$bin" --data "$data" --device cuda --epochs "$epochs" --batch-size "$batch" --patience 1000
     --out "$run_dir" --quiet "${extra[@]}")
echo "nsys.sh: ${cmd[*]}"
set +e
"$nsys" profile --trace=cuda,nvtx,cublas --cuda-graph-trace=node --sample=none --cpuctxsw=none \
  --force-overwrite=true -o "$out/engine" "${cmd[@]}" 2>&1 | tee "$out/nsys.log"
rc=${PIPESTATUS[0]}
set -e
if [ ! -s "$out/engine.nsys-rep" ]; then
  echo "nsys.sh: FAILED: no $out/engine.nsys-rep (exit $rc); see $out/nsys.log$(ls "$out"/*.qdstrm >/dev/null 2>&1 && echo '; only a .qdstrm was written, which this nsys cannot turn into a report')"
  exit 1
fi
# Summaries: report names changed in 2023 (gpukernsum -> cuda_gpu_kern_sum, ...); try both.
if ! "$nsys" stats --force-export=true --report cuda_gpu_kern_sum,cuda_api_sum,nvtx_sum,cuda_gpu_mem_time_sum \
      "$out/engine.nsys-rep" > "$out/nsys-stats.txt" 2>&1; then
  "$nsys" stats --force-export=true --report gpukernsum,cudaapisum,nvtxsum,gpumemtimesum \
    "$out/engine.nsys-rep" > "$out/nsys-stats.txt" 2>&1 || echo "nsys.sh: nsys stats failed; see $out/nsys-stats.txt"
fi
head -60 "$out/nsys-stats.txt"
[ -f "$run_dir/report.json" ] && cp "$run_dir/report.json" "$out/nsys-run-report.json"
echo "nsys.sh: wrote $out/engine.nsys-rep and $out/nsys-stats.txt (engine exit $rc)"
exit "$rc"
