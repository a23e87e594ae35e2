#!/usr/bin/env python3
"""Machine-code budgets of the hot kernels (ctest kernel_sass, label build; no GPU needed).

  check_sass.py BUDGETS [BUILD]

Each budget line of BUDGETS is
  MAX METRIC SOURCE PATTERN
with SOURCE a kernel source (relative to the repository; a glob takes every file it matches), PATTERN a regex on the demangled kernel
name as profiling/sass.py prints it, and METRIC one of
  generic   plain generic loads and stores (LD/ST: the compiler did not know the address space) in
            the kernel, counted exactly (the .STRONG ones are the spin-waits' acquire polls:
            cooperative groups' grid sync and kernels/dep_wait.cuh, generic by their own asm);
  per_mma   instructions per mma instruction (HMMA) in the kernel's worst innermost loop that has one,
            the static issue cost of a tensor-core k-step, to within 0.5;
  serial    global loads issued behind a global store that used an earlier load's value
            (profiling/sass.py serial_loads: each one global round trip more, in sequence, where
            the loads could have gone out together), counted exactly;
  waited    global loads issued after an instruction that read the load before's result
            (profiling/sass.py waited_loads: the warp waited for that load first, so the two are
            round trips in sequence), counted exactly over the kernel's code.
Every matching kernel must be within MAX, and the budget must be tight: a line looser than its
kernels need (generic: by any; per_mma: by more than 0.5) fails too, so that a gain is kept.
The machine code is the build's own where BUILD (the build directory) holds an object of the source
that is not older than it (profiling/sass.py cubin_from_object: the .nv_fatbin's sm_90 image, the
code nvcc made with the same flags), else the source is compiled with the project's nvcc; either
way it is disassembled by profiling/sass.py. (Compiling them again took ~400 CPU-s of CI's test
time: the dense GEMM sources are the build's largest compiles.) Without
nvdisasm (profiling/sass.py --fetch; tests/run.sh fetches it) the test is skipped (exit 77) with a
line saying so.
"""
import concurrent.futures
import glob
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "profiling"))
import sass  # noqa: E402


def metrics(ins, labels):
    generic = sum(1 for _, t, _ in ins if sass.is_plain_generic(t))
    loops = sass.loops_of(ins, labels)
    worst = 0.0
    for s, e in loops:
        if not sass.is_innermost((s, e), loops):
            continue
        body = [t for a, t, _ in ins if s <= a <= e]
        mma = sum(1 for t in body if sass.opcode(t).startswith("HMMA"))
        if mma:
            worst = max(worst, len(body) / mma)
    return {"generic": generic, "per_mma": worst, "serial": sass.serial_loads(ins), "waited": sass.waited_loads(ins)}


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    build = sys.argv[2] if len(sys.argv) == 3 else None
    budgets = []
    for n, line in enumerate(open(sys.argv[1]), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        mx, metric, src, pattern = line.split(None, 3)
        if metric not in ("generic", "per_mma", "serial", "waited"):
            sys.exit(f"{sys.argv[1]}:{n}: unknown metric {metric}")
        budgets.append((n, float(mx), metric, src, pattern))
    nvdisasm = sass.find_nvdisasm()
    if not nvdisasm:
        print("kernel_sass: SKIPPED: no nvdisasm (profiling/sass.py --fetch puts Debian's in ~/.cache/mnist_cuda)")
        return 77
    # A budget's SOURCE may be a glob (kernels/dense_*.cu: every precision's GEMM tiles); each file is
    # compiled once, all of them at the same time.
    files = {spec: sorted(os.path.relpath(f, ROOT) for f in glob.glob(os.path.join(ROOT, spec)))
             for spec in {b[3] for b in budgets}}
    for spec, found in files.items():
        if not found:
            sys.exit(f"{sys.argv[1]}: no source matches {spec}")

    def read(src, tmp):
        cubin = os.path.join(tmp, os.path.basename(src) + ".cubin")
        obj = sass.build_object(build, src) if build else None
        if not (obj and sass.cubin_from_object(obj, cubin)):
            sass.compile_cubin(os.path.join(ROOT, src), sass.arch_of(src), cubin)
            obj = None
        origin[src] = obj or "compiled"
        parsed = sass.parse(sass.disassemble(nvdisasm, cubin))
        names = sass.demangle([k[0] for k in parsed])
        return [(name, metrics(ins, labels)) for (_, ins, labels), name in zip(parsed, names)]

    origin = {}
    with tempfile.TemporaryDirectory() as tmp:
        every = sorted({f for found in files.values() for f in found})
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            per_file = dict(zip(every, pool.map(lambda f: read(f, tmp), every)))
    for f in sorted(origin):
        print(f"  {f}: {'compiled here' if origin[f] == 'compiled' else 'the build object ' + os.path.relpath(origin[f], build)}")
    kernels = {spec: [k for f in found for k in per_file[f]] for spec, found in files.items()}
    failed = []
    for n, mx, metric, src, pattern in budgets:
        hits = [(name, m[metric]) for name, m in kernels[src] if re.search(pattern, name)]
        if not hits:
            failed.append(f"line {n}: no kernel of {src} matches {pattern}")
            continue
        top = max(v for _, v in hits)
        for name, v in hits:
            print(f"  {metric:8} {v:6.1f} (budget {mx:g})  {src}  {name}")
            if v > mx + 1e-9:
                failed.append(f"line {n}: {name}: {metric} {v:.1f} over its budget {mx:g}")
        slack = 0.5 if metric == "per_mma" else 0.0
        if top < mx - slack - 1e-9:
            failed.append(f"line {n} ({pattern}): budget {mx:g} but its kernels need at most {top:.1f}: tighten it")
    if failed:
        print("FAILED:\n" + "\n".join(failed))
        return 1
    print(f"kernel_sass: {len(budgets)} budgets hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
