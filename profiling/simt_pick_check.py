#!/usr/bin/env python3
"""Checks kernels/dense.cu's FP32 tile model (pick_simt) against a bench_kernels JSON.

For every large FP32 GEMM of the bench (M·N·K >= 2^25) that has each SimtVecTile forced (and, for a
forward GEMM with a K split, folded and split), prints the measured fastest tile and the one the
model picks, with the pick's measured time, for the constants now in dense.cu ("new") and the first
guess ("old"). A mirror of the C++ model: change both together.

  python3 profiling/simt_pick_check.py profiling/results/2026-11-26-nvidia-h100-fc62aa1-bench-kernels.json
"""
import collections
import json
import math
import re
import sys

SMS = 132
# tile: (BM, BN, threads, resident blocks an SM, K slice)
TILES = {"vec128": (128, 128, 256, 1, 16), "vec64": (64, 64, 256, 3, 32), "vec32": (32, 32, 64, 8, 32)}
EFF = {"old": {"vec128": (0.85, 0.85), "vec64": (0.7, 0.7), "vec32": (0.6, 0.6)},
       "new": {"vec128": (0.55, 0.55), "vec64": (0.29, 0.45), "vec32": (0.30, 0.37)}}


def forward_split_cols(k):
    if k < 512:
        return 0
    s = (k + 255) // 256
    return ((k + s - 1) // s + 31) // 32 * 32


def weight_split_rows(b, k, n):
    t = ((n + 31) // 32) * ((k + 1 + 31) // 32)
    s = min((528 + t - 1) // t, b // 256)
    return 0 if s < 2 else ((b + s - 1) // s + 31) // 32 * 32


def predict(model, tile, m, n, k, split, fold):
    bm, bn, threads, resident, _ = TILES[tile]
    pieces = (k + split - 1) // split if split else 1
    blocks = ((m + bm - 1) // bm) * ((n + bn - 1) // bn) * (1 if fold else pieces)
    chain = k if fold or not split else min(split, k)
    per_sm = math.ceil(blocks / SMS)
    warps = min(per_sm, resident) * threads / 32
    e8, e16 = EFF[model][tile]
    eff = e8 + (e16 - e8) * min(1.0, max(0.0, (warps - 8) / 8))
    clocks = per_sm * bm * bn * chain / (128 * eff * min(1.0, warps / 8))
    if split and not fold:
        clocks += (2 * pieces + 1) * m * n * 4 / 1750 + 3000
    return clocks


def main(path):
    results = json.load(open(path))["results"]
    measured = collections.defaultdict(dict)
    for r in results:
        shape = re.match(r"(\d+)x(\d+)->(\d+)", r["shape"])
        impl = re.search(r"fp32 (?:\(\+db\) )?(vec128|vec64|vec32)( ws split| ws folded| split-K)?$", r["impl"])
        if shape and impl:
            measured[(r["op"], r["shape"])][(impl.group(1), "folded" in (impl.group(2) or ""))] = r["us"]
    hits = collections.Counter()
    total = 0
    for (op, shape), cands in sorted(measured.items()):
        b, kin, nout = map(int, re.match(r"(\d+)x(\d+)->(\d+)", shape).groups())
        if op == "gemm_forward":
            m, n, k, split = b, nout, kin, forward_split_cols(kin)
        elif op == "gemm_weight":
            m, n, k, split = nout, kin + 1, b, weight_split_rows(b, kin, nout)
        else:
            m, n, k, split = b, kin, nout, 0
        if m * n * k < 2 ** 25:
            continue
        total += 1
        best = min(cands, key=cands.get)
        line = f"{op:12s} {shape:16s} fastest {best[0]}{' fold' if best[1] else ''} {cands[best]:6.1f} µs"
        for model in ("old", "new"):
            ok = {c: predict(model, c[0], m, n, k, split, c[1]) for c in cands
                  if not (c[1] and (not split or split % TILES[c[0]][4]))}
            pick = min(ok, key=ok.get)
            hits[model] += pick == best
            line += f" | {model}: {pick[0]}{' fold' if pick[1] else ''} {cands[pick]:6.1f}"
        print(line)
    print(f"model picks the fastest: old {hits['old']}/{total}, new {hits['new']}/{total}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
