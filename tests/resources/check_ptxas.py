#!/usr/bin/env python3
"""Every kernel of the product keeps its accumulators in registers.

Reads ptxas's resource report of each CUDA object of kernels/ and layers/ (the <object>.ptxas files
cmake/ptxas_log.sh keeps at build time) and fails where a kernel uses local memory, a stack frame or
register spills, beyond what tests/resources/local_memory.txt allows it, with the reason written
there. A budget that matches no kernel, or is looser than what the kernels use, also fails: the
budgets stay exact, so every change in local memory is seen and argued.

Why: a local array the compiler cannot keep in registers is invisible to every correctness test and
costs a load/store per element per use. (PipeTile's forward once selected its result array by
pointer, `fold ? sum : acc`: ptxas then kept both in local memory and stored every accumulator to it
after each K slice, 512 bytes a thread on the 128 x 128 tile.)

usage: check_ptxas.py BUILD_DIR BUDGET_FILE
"""
import pathlib
import re
import subprocess
import sys

PRODUCT_DIRS = ("kernels", "layers")
ENTRY = re.compile(r"ptxas info\s*: Compiling entry function '(\S+)' for '(\S+)'")
PROPS = re.compile(r"ptxas info\s*: Function properties for (\S+)")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"ptxas info\s*: Used (\d+) registers")


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    pretty = out.splitlines()
    return {n: re.sub(r"mnist::cuda::\(anonymous namespace\)::|mnist::cuda::dense_impl::|mnist::cuda::|mnist::", "", p)
            for n, p in zip(names, pretty)}


def parse(path):
    """{(arch, mangled kernel): {"regs", "stack", "stores", "loads"}} of one object's report."""
    kernels, arch, current = {}, "?", None
    for line in path.read_text().splitlines():
        m = ENTRY.search(line)
        if m:
            current, arch = m.group(1), m.group(2)
            kernels[(arch, current)] = {"regs": 0, "stack": 0, "stores": 0, "loads": 0}
            continue
        m = PROPS.search(line)
        if m:
            current = m.group(1) if (arch, m.group(1)) in kernels else None  # device functions: not kernels
            continue
        m = FRAME.search(line)
        if m and current:
            k = kernels[(arch, current)]
            k["stack"], k["stores"], k["loads"] = map(int, m.groups())
            continue
        m = USED.search(line)
        if m and current:
            kernels[(arch, current)]["regs"] = int(m.group(1))
    return kernels


def read_budgets(path):
    """Lines `STACK STORES LOADS PATTERN`; the comment lines above a budget are its reason."""
    budgets, reason = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            reason = []
            continue
        if line.startswith("#"):
            reason.append(line.lstrip("# "))
            continue
        fields = line.split(None, 3)
        if len(fields) < 4 or not all(f.isdigit() for f in fields[:3]):
            sys.exit(f"{path}:{n}: expected `STACK STORES LOADS PATTERN`, got: {line}")
        if not reason:
            sys.exit(f"{path}:{n}: a budget needs its reason in the comment lines above it")
        budgets.append({"line": n, "pattern": re.compile(fields[3]), "text": fields[3],
                        "limit": tuple(int(x) for x in fields[:3]), "reason": " ".join(reason),
                        "max": (0, 0, 0), "hits": 0})
    return budgets


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build, budget_file = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    reports = sorted(p for d in PRODUCT_DIRS for p in (build / d).rglob("*.ptxas"))
    # every CUDA source of the product must have its report (else the check would pass on nothing)
    root = budget_file.resolve().parents[2]
    sources = sorted(p for d in PRODUCT_DIRS for p in (root / d).glob("*.cu"))
    missing = [s.name for s in sources if not any(r.name == s.name + ".o.ptxas" for r in reports)]
    if missing:
        sys.exit(f"no ptxas report for {', '.join(missing)} under {build}: build with -DMNIST_KERNEL_RESOURCES=ON")

    kernels = {}
    for r in reports:
        for key, k in parse(r).items():
            kernels[(r.name.replace(".o.ptxas", ""),) + key] = k
    if not kernels:
        sys.exit("the ptxas reports name no kernel: was the build compiled with -Xptxas=-v?")
    pretty = demangle(sorted({key[2] for key in kernels}))
    budgets = read_budgets(budget_file)

    failures = []
    for (src, arch, name), k in sorted(kernels.items()):
        use = (k["stack"], k["stores"], k["loads"])
        label = f"{src} {arch} {pretty[name]}"
        matched = [b for b in budgets if b["pattern"].search(pretty[name])]
        if len(matched) > 1:
            failures.append(f"{label}: matches {len(matched)} budgets (lines {[b['line'] for b in matched]})")
            continue
        if not matched:
            if any(use):
                failures.append(f"{label}: {use[0]} bytes stack frame, {use[1]}/{use[2]} bytes spill stores/loads "
                                f"({k['regs']} registers), no budget in {budget_file.name}")
            continue
        b = matched[0]
        b["hits"] += 1
        b["max"] = tuple(max(x, y) for x, y in zip(b["max"], use))
        if any(u > l for u, l in zip(use, b["limit"])):
            failures.append(f"{label}: uses {use} (stack, spill stores, spill loads; {k['regs']} registers) "
                            f"above its budget {b['limit']} (line {b['line']})")
            b["over"] = True
    for b in budgets:
        if not b["hits"]:
            failures.append(f"budget line {b['line']} ({b['text']}) matches no kernel: remove it")
        elif b["max"] != b["limit"] and not b.get("over"):
            failures.append(f"budget line {b['line']} ({b['text']}) allows {b['limit']} but its kernels use at most "
                            f"{b['max']}: tighten it")

    with_local = sum(1 for k in kernels.values() if k["stack"] or k["stores"] or k["loads"])
    print(f"{len(kernels)} kernels in {len(reports)} objects ({', '.join(PRODUCT_DIRS)}); "
          f"{with_local} with local memory, each within its budget" if not failures else "")
    for (src, arch, name), k in sorted(kernels.items(), key=lambda kv: -kv[1]["regs"])[:12]:
        print(f"  {k['regs']:3d} regs  stack {k['stack']:4d}  spill {k['stores']}/{k['loads']}  {src} {pretty[name][:110]}")
    if failures:
        print("\n".join(["FAILED:"] + failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
