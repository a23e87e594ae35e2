#!/usr/bin/env bash
# CUDA compiler launcher (CMAKE_CUDA_COMPILER_LAUNCHER, option MNIST_KERNEL_RESOURCES): runs the
# compile command unchanged and keeps ptxas's resource report (-Xptxas=-v, added by CMakeLists.txt)
# in <object>.ptxas beside the object, where tests/resources/check_ptxas.py reads every kernel's
# registers, stack frame and spills. Everything else the compiler prints goes to stderr as before.
set -uo pipefail
out=""
prev=""
for a in "$@"; do
  [ "$prev" = "-o" ] && out=$a
  prev=$a
done
log=$(mktemp)
"$@" 2>"$log"
rc=$?
if [ -n "$out" ]; then
  grep -E '^ptxas (info|warning) *:|bytes stack frame' "$log" >"$out.ptxas.tmp" || true
  mv -f "$out.ptxas.tmp" "$out.ptxas"
fi
grep -vE '^ptxas info *:|^ *[0-9]+ bytes stack frame' "$log" >&2 || true
rm -f "$log"
exit $rc
