#!/usr/bin/env python3
"""Per-epoch bookkeeping of a run (checkpoint, resume state, TensorBoard files) against its epochs.

    profiling/bookkeeping.py LABEL=BINARY [LABEL=BINARY ...] [--epochs 5] [--batch-size 4096]
                             [--repeats 5] [--data DIR] [--threads 0]

For each binary, `repeats` runs of `mnist_cuda --device cpu --epochs E --batch-size B --quiet`
(the binaries interleaved, so that a busy machine slows them alike), then one run under
`strace -f -c -e trace=fsync`. From each run's report.json:
  fit       total_seconds: the call of fit() alone, bookkeeping included (fit() returns only once
            every file is on disk); not phase_seconds.fit, which also holds the set-up before it
            (samples.png, the TensorBoard files' creation, the lock)
  epochs    the sum of history[].seconds: training + validation of each epoch, no bookkeeping
  rest      (fit - epochs) / E: the time per epoch the training loop spends on anything else
Prints a Markdown table of medians (and every run) on stdout.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile


def run(binary, args, out, strace=None):
    cmd = [binary, "--device", "cpu", "--out", out, "--quiet"] + args
    if strace:
        cmd = ["strace", "-f", "-c", "-e", "trace=fsync", "-o", strace] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rep = json.load(open(os.path.join(out, "report.json")))
    epochs = sum(h["seconds"] for h in rep["history"])
    return rep["total_seconds"], epochs, len(rep["history"])


def fsyncs(path):
    """(calls, seconds) of fsync from strace -c's summary."""
    for line in open(path):
        f = line.split()
        if f and f[-1] == "fsync":
            # % time, seconds, usecs/call, calls, [errors,] syscall
            return int(f[3]), float(f[1])
    return 0, 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", help="LABEL=PATH")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data", default="data/mnist")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.binaries]
    args = ["--epochs", str(a.epochs), "--patience", "1000", "--batch-size", str(a.batch_size),
            "--threads", str(a.threads), "--data", a.data]
    res = {label: [] for label, _ in bins}
    with tempfile.TemporaryDirectory(prefix="mnist_bookkeeping_") as tmp:
        for r in range(a.repeats):
            for label, path in bins:
                res[label].append(run(path, args, os.path.join(tmp, "%s_%d" % (label, r))))
        calls = {}
        for label, path in bins:
            trace = os.path.join(tmp, label + ".strace")
            run(path, args, os.path.join(tmp, label + "_strace"), strace=trace)
            calls[label] = fsyncs(trace)
    print("| binary | fit s (median) | epochs s (median) | rest per epoch ms (median) | fsync calls, whole run (per epoch) | fsync s, whole run (strace -c) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, _ in bins:
        rows = res[label]
        n = rows[0][2]
        fit = statistics.median(x[0] for x in rows)
        ep = statistics.median(x[1] for x in rows)
        rest = statistics.median((x[0] - x[1]) / x[2] * 1e3 for x in rows)
        c, s = calls[label]
        print("| %s | %.3f | %.3f | %.1f | %d (%.1f/epoch) | %.3f |" % (label, fit, ep, rest, c, c / n, s))
    print()
    for label, _ in bins:
        print("%s runs (fit, epochs, rest ms/epoch): %s" % (label, "; ".join(
            "%.3f, %.3f, %.1f" % (f, e, (f - e) / n * 1e3) for f, e, n in res[label])))


if __name__ == "__main__":
    main()
