#!/usr/bin/env python3
"""Predicted against measured: every open prediction of profiling/NOTES.md (profiling/predictions.json)
next to the row of a GPU suite run that measures it.

  python3 profiling/check_predictions.py OUT            # a gpu_suite.sh output folder (or its files_at copy)
  python3 profiling/check_predictions.py --bench B.json --race R.json --fused-log bench.log [--md FILE]

A prediction is a range for one row: bench_kernels (op, shape, impl regexes; µs), the race (contender,
batch, precision; ms/epoch) or bench_fused's table (a line regex under a precision's header; µs/step, or µs/eval on its eval rows).
Verdicts: "within", "faster" (below the range: the model was pessimistic), "MISSED" (above it: the
model was optimistic, as six sessions of predictions were), "no row" (not measured by this run; a
wgmma row labelled "unavailable" counts as not measured). Exit status 0 whatever the verdicts: this
reports, it does not gate; the GPU tests gate.
"""
import argparse
import glob
import json
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_bench(path):
    if not path or not Path(path).is_file():
        return None
    d = json.loads(Path(path).read_text())
    return d.get("device", "?"), d.get("results", [])


def load_race(path):
    if not path or not Path(path).is_file():
        return None
    d = json.loads(Path(path).read_text())
    return d.get("gpu", "?"), list(d.get("contenders", {}).values())


def fused_tables(text):
    """[(precision, line)] of bench_fused's output: each table line with the precision of its header."""
    rows, prec = [], None
    for line in text.splitlines():
        if line.startswith("bench_fused on "):  # (headers before --precision existed name none: fp32)
            m = re.search(r" GEMMs (\w+)", line)
            prec = m.group(1) if m else "fp32"
            continue
        if prec and re.match(r"^\s*batch\s+\d+", line):
            rows.append((prec, line))
    return rows


def find_inputs(out):
    out = Path(out)
    bench = out / "bench_kernels.json"
    race = [p for p in glob.glob(str(out / "*.json")) if re.search(r"\d{4}-\d\d-\d\d-.*\.json$", p)
            and "report" not in p and "bench_kernels" not in p]
    fused = ""
    logs = sorted(glob.glob(str(out / "logs" / "*bench*.log")))
    if logs:
        fused = "\n".join(Path(p).read_text(errors="replace") for p in logs)
    elif (out / "logs.tar.gz").is_file():
        with tarfile.open(out / "logs.tar.gz") as t:
            for m in t.getmembers():
                if m.isfile() and re.search(r"bench[^/]*\.log$", m.name):
                    fused += t.extractfile(m).read().decode(errors="replace") + "\n"
    return str(bench), (race[0] if race else ""), fused


def measure(p, bench, race, fused):
    src = p["source"]
    if src == "bench_kernels" and bench:
        hits = [r for r in bench[1] if r["op"] == p["op"] and re.search(p["shape"], r["shape"])
                and re.search(p["impl"], r["impl"])]
        return (min(r["us"] for r in hits), hits[0]["impl"]) if hits else None
    if src == "race" and race:
        hits = [c for c in race[1] if c.get("contender") == p["contender"] and c.get("batch_size") == p["batch_size"]
                and c.get("precision", "fp32") == p["precision"]]
        return (hits[0]["ms_per_epoch"], f"{p['contender']} @{p['batch_size']} {p['precision']}") if hits else None
    if src == "bench_fused" and fused:
        for prec, line in fused_tables(fused):
            if prec == p["precision"] and re.search(p["line"], line):
                m = re.search(r"([\d.]+) us/(?:step|eval)", line)
                if m:
                    return float(m.group(1)), line.strip()
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", help="a gpu_suite.sh output folder")
    ap.add_argument("--bench", default="")
    ap.add_argument("--race", default="")
    ap.add_argument("--fused-log", default="")
    ap.add_argument("--predictions", default=str(HERE / "predictions.json"))
    ap.add_argument("--md", default="")
    a = ap.parse_args()
    bench_path, race_path, fused = a.bench, a.race, ""
    if a.out:
        bench_path, race_path, fused = find_inputs(a.out)
    if a.fused_log:
        fused = Path(a.fused_log).read_text(errors="replace")
    try:
        preds = json.loads(Path(a.predictions).read_text())["predictions"]
        bench, race = load_bench(bench_path), load_race(race_path)
    except (OSError, ValueError, KeyError) as e:
        print(f"check_predictions.py: {e}", file=sys.stderr)
        return 2
    devices = {x[0] for x in (bench, race) if x}
    lines = [f"Predictions (profiling/predictions.json, made for an H100) against this run ({', '.join(sorted(devices)) or 'no results'})", "",
             "| prediction | predicted | measured | verdict | before | row |", "| --- | ---: | ---: | --- | ---: | --- |"]
    counts = {}
    for p in preds:
        lo, hi = p["predicted"]
        got = measure(p, bench, race, fused)
        if got is None:
            verdict, value, row = "no row", "—", ""
        else:
            v, row = got
            verdict = "within" if lo <= v <= hi else ("faster" if v < lo else "MISSED")
            if "target" in p:
                verdict += f", target {p['target']} {'met' if v <= p['target'] else 'not met'}"
            value = f"{v:.3g}"
        counts[verdict.split(",")[0]] = counts.get(verdict.split(",")[0], 0) + 1
        before = f"{p['baseline']} ({p.get('baseline_at', '')})" if "baseline" in p else "—"
        lines.append(f"| {p['id']} | {lo}–{hi} {p['unit']} | {value} | {verdict} | {before} | {row[:70]} |")
    lines += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.md:
        Path(a.md).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
