#!/usr/bin/env python3
"""Issue 12's GEMM scoreboard from a bench_kernels --json file: for every gemm_* shape, the engine's
time per precision (the row the engine runs: "engine ws" where the bench has it, else the plain
native row) against cuBLAS sgemm fp32 and tf32, and the ratio (< 1: the engine is faster).

  python3 profiling/gemm_scoreboard.py profiling/results/<...>-bench-kernels.json [--md OUT]
"""
import argparse
import json
import re
import sys
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench_json")
    ap.add_argument("--md", default="")
    a = ap.parse_args()
    try:
        d = json.loads(Path(a.bench_json).read_text())
        rows = d["results"]
    except (OSError, ValueError, KeyError) as e:
        print(f"gemm_scoreboard.py: {a.bench_json}: not a bench_kernels --json file ({e})", file=sys.stderr)
        return 2
    shapes = {}
    for r in rows:
        if not r["op"].startswith("gemm_"):
            continue
        shapes.setdefault((r["op"], r["shape"]), []).append(r)

    def pick(rs, pattern):
        hits = [r for r in rs if re.search(pattern, r["impl"])]
        return min(hits, key=lambda r: r["us"]) if hits else None

    out = [f"GEMM scoreboard from {a.bench_json} ({d.get('device', '?')}), µs per launch; ratio = engine / cuBLAS "
           "(≤ 1.00: at least as fast)", "",
           "| GEMM | shape | fp32 | tf32 | bf16 | cuBLAS fp32 | cuBLAS tf32 | fp32 / cuBLAS fp32 | tf32 / cuBLAS tf32 | bf16 / cuBLAS tf32 |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (op, shape), rs in shapes.items():
        eng = {}
        for p in ("fp32", "tf32", "bf16"):
            e = pick(rs, rf"^native {p} engine") or pick(rs, rf"^native {p}( \(\+db\)( split-K)?)?$")
            eng[p] = e["us"] if e else None
        cf = pick(rs, r"^cuBLAS sgemm fp32")
        ct = pick(rs, r"^cuBLAS sgemm tf32")
        cf = cf["us"] if cf else None
        ct = ct["us"] if ct else None
        f = lambda v: f"{v:.1f}" if v is not None else "—"
        q = lambda x, y: (f"**{x / y:.2f}**" if x / y <= 1.0 else f"{x / y:.2f}") if x and y else "—"
        out.append(f"| {op[5:]} | {shape} | {f(eng['fp32'])} | {f(eng['tf32'])} | {f(eng['bf16'])} | {f(cf)} | {f(ct)} | "
                   f"{q(eng['fp32'], cf)} | {q(eng['tf32'], ct)} | {q(eng['bf16'], ct)} |")
    text = "\n".join(out) + "\n"
    print(text)
    if a.md:
        Path(a.md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
