#!/usr/bin/env python3
"""Bad-input tests of the real mnist_cuda binary (ctest label "cli"; Python standard library only).

    cli_test.py --binary PATH [--group flags|data|checkpoint|run|all] [--mnist DIR] [--keep] [-k SUBSTRING]

Every case runs the binary in a fresh temporary working directory, on tiny IDX files and
checkpoints built here (a few real MNIST files are copied and broken where --mnist has them), and
checks:
  * the exit code: 2 for bad input and for every usage error (bad values, unknown, misspelt,
    repeated or missing flags, stray arguments), 1 for other failures;
  * no crash: no signal, no core file; no hang: each run has a time limit;
  * stderr: for an error, exactly one line, "mnist_cuda: error: ...", valid UTF-8, containing the
    file or flag and what is wrong (the needles of the case);
  * nothing was damaged: the working directory's out/ (the default --out) holds a previous run's
    best_model.safetensors and history.csv that must be byte-identical afterwards, with no new
    file (no stray temporary), and the inputs given (checkpoint, data) are unchanged.
Positive controls (a valid tiny run and evaluate exit 0) prove the fixtures themselves are good,
so each failure is due to the one thing the case broke.
"""
import argparse
import array
import concurrent.futures
import gzip
import hashlib
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT_S = 60  # per run; the slowest case (real MNIST, truncated) takes well under a second
ERROR_PREFIX = "mnist_cuda: error: "

# --------------------------------------------------------------------------------------------
# Fixtures


def idx_bytes(dims, payload, type_byte=0x08, ndims=None):
    head = bytes([0, 0, type_byte, len(dims) if ndims is None else ndims])
    return head + b"".join(struct.pack(">I", d) for d in dims) + bytes(payload)


def write(path, data, gz=None):
    """Writes bytes; gzip-compressed when gz is True (default: when the name ends in .gz)."""
    if gz is None:
        gz = path.endswith(".gz")
    if gz:
        data = gzip.compress(data, compresslevel=1, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def pixels(n, rows, cols, seed):
    # Deterministic, cheap, not all zeros (an LCG; the values do not matter, only that they vary).
    out, x = bytearray(n * rows * cols), seed
    for i in range(len(out)):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


N_TRAIN, N_TEST = 60, 20  # val split 0.2 -> 48 training examples


def make_dataset(d, rows=28, cols=28, n_train=N_TRAIN, n_test=N_TEST, test_rows=None, test_cols=None):
    """A tiny valid MNIST-format directory: train files raw, test files gzipped (both paths)."""
    os.makedirs(d, exist_ok=True)
    tr, tc = test_rows or rows, test_cols or cols
    write(os.path.join(d, "train-images-idx3-ubyte"), idx_bytes([n_train, rows, cols], pixels(n_train, rows, cols, 1)))
    write(os.path.join(d, "train-labels-idx1-ubyte"), idx_bytes([n_train], [i % 10 for i in range(n_train)]))
    write(os.path.join(d, "t10k-images-idx3-ubyte.gz"), idx_bytes([n_test, tr, tc], pixels(n_test, tr, tc, 2)))
    write(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), idx_bytes([n_test], [(3 * i) % 10 for i in range(n_test)]))
    return d


def variant(base, d, name, data=None, gz=None, remove=False):
    """A copy of dataset `base` in `d` with file `name` replaced by `data` (or removed)."""
    shutil.copytree(base, d)
    p = os.path.join(d, name)
    if remove:
        os.remove(p)
    else:
        write(p, data, gz)
    return d


def safetensors(tensors, metadata=None, dtype="F32", header_len=None, raw_header=None):
    """tensors: (name, shape, array('f')) triples -> the bytes of a safetensors file."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, shape, values in tensors:
        blob = values.tobytes()
        if dtype == "F16":  # same tensor, half the bytes: what a torch .half() checkpoint holds
            blob = blob[: len(blob) // 2]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    js = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    n = len(js) if header_len is None else header_len
    return struct.pack("<Q", n) + js + b"".join(blobs)


def model_tensors(inp=784, hidden=(128, 64), classes=10, names=("fc%d.weight", "fc%d.bias")):
    out, prev = [], inp
    for i, w in enumerate(list(hidden) + [classes]):
        weights = array.array("f", [((k * 37) % 101 - 50) * 1e-4 for k in range(w * prev)])
        out.append((names[0] % (i + 1), [w, prev], weights))
        out.append((names[1] % (i + 1), [w], array.array("f", [0.0] * w)))
        prev = w
    return out


def model_meta(inp=784, hidden="128,64"):
    return {"format": "pt", "model": "MNISTClassifier", "input": str(inp), "hidden": hidden, "classes": "10"}


# --------------------------------------------------------------------------------------------
# Running and checking


class Case:
    def __init__(self, name, args, code=2, needles=(), xfail=None, timeout=TIMEOUT_S, setup=None, env=None,
                 absent=(), watch=(), skip_if=None, stdout_needles=()):
        self.name, self.args, self.code, self.needles, self.timeout = name, args, code, needles, timeout
        self.stdout_needles = stdout_needles  # strings stdout must contain (a positive case's output)
        self.xfail = xfail  # a known bug (reported, owner outside tests/): failure is XFAIL, not FAIL
        self.setup = setup  # setup(cwd) -> dict(needles=[...], cleanup=callable) or None: run in the work dir first
        self.env = env or {}  # extra environment variables
        self.absent = absent  # strings that must appear in neither stdout nor stderr
        self.watch = watch  # more paths (relative to the work dir) that must not change
        self.skip_if = skip_if  # a stderr substring that means "not testable here" (e.g. no GPU): SKIP


def snapshot(path):
    """{relative path: sha256} of every regular file under `path` (or of the file itself); other
    entries (FIFOs) are listed without being opened."""
    def digest(p):
        if os.path.islink(p):
            return "(symlink to %s)" % os.readlink(p)
        if not stat.S_ISREG(os.stat(p).st_mode):
            return "(not a regular file)"
        with open(p, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    if not os.path.isdir(path):
        return {"": digest(path)}
    out = {}
    for root, _, files in os.walk(path):
        for fn in files:
            p = os.path.join(root, fn)
            out[os.path.relpath(p, path)] = digest(p)
    return out


class Runner:
    def __init__(self, binary, tmp, sentinel_ckpt):
        self.binary, self.tmp, self.sentinel_ckpt = binary, tmp, sentinel_ckpt
        self.failed, self.xfailed, self.count = [], [], 0
        self.lock = threading.Lock()

    def workdir(self, case):
        w = os.path.join(self.tmp, "run_" + case.name)
        os.makedirs(os.path.join(w, "out"))
        # A previous run's results: the default --out (out/) must survive a failed run untouched.
        shutil.copy(self.sentinel_ckpt, os.path.join(w, "out", "best_model.safetensors"))
        write(os.path.join(w, "out", "history.csv"), b"epoch,loss\n1,0.5\n")
        return w

    def run(self, args, cwd, timeout, env=None):
        t0 = time.monotonic()
        try:
            p = subprocess.run([self.binary] + args, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=timeout, env=dict(os.environ, **(env or {})))
        except subprocess.TimeoutExpired:
            return None, "", "", time.monotonic() - t0
        return (p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"),
                time.monotonic() - t0)

    def check(self, case):
        """Runs one case; returns its report (thread-safe: cases run side by side)."""
        with self.lock:
            self.count += 1
        cwd = self.workdir(case)
        extra = case.setup(cwd) if case.setup else None
        extra = extra or {}
        # The default --out, and the files and directories given (not the scratch root: the other
        # cases, running side by side, write there).
        watched = [os.path.join(cwd, "out")] + [a for a in case.args if os.path.isabs(a) and os.path.exists(a)
                                                and os.path.normpath(a) != os.path.normpath(self.tmp)]
        watched += [os.path.join(cwd, w) for w in case.watch]
        before = {w: snapshot(w) for w in watched}
        try:
            code, out, err, secs = self.run(case.args, cwd, case.timeout, case.env)
        finally:
            if "cleanup" in extra:
                extra["cleanup"]()
        if case.skip_if and case.skip_if in err:
            return "skip  %-34s %s" % (case.name, err.strip())
        problems = []
        if code is None:
            problems.append("hung: no exit within %d s" % case.timeout)
        elif code < 0:
            problems.append("killed by signal %s" % signal.Signals(-code).name)
        else:
            if code != case.code:
                problems.append("exit code %d, expected %d" % (code, case.code))
            lines = [l for l in err.splitlines() if l.strip()]
            if case.code not in (0, 130):
                if len(lines) != 1 or not lines[0].startswith(ERROR_PREFIX):
                    problems.append("stderr is not one '%s...' line" % ERROR_PREFIX)
            if "\ufffd" in err:
                problems.append("stderr is not UTF-8 (raw bytes from a file?)")
            for needle in list(case.needles) + extra.get("needles", []):
                if needle not in err:
                    problems.append("stderr lacks %r" % needle)
            for needle in case.stdout_needles:
                if needle not in out:
                    problems.append("stdout lacks %r" % needle)
            for word in case.absent:
                if word in out or word in err:
                    problems.append("output names %r" % word)
        cores = [f for f in os.listdir(cwd) if f == "core" or f.startswith("core.")]
        if cores:
            problems.append("left a core file: %s" % ", ".join(cores))
        for w in watched:
            after = snapshot(w)
            if after != before[w]:
                changed = sorted(k for k in set(before[w]) | set(after) if before[w].get(k) != after.get(k))
                problems.append("changed %s: %s" % (os.path.relpath(w, self.tmp), ", ".join(c or "(file)" for c in changed)))
        shown = err.strip().replace("\n", " | ")
        if not problems:
            return "ok    %-34s %5.2fs  exit %s  %s" % (case.name, secs, code, shown)
        if case.xfail:
            with self.lock:
                self.xfailed.append(case.name)
            return ("XFAIL %-34s %5.2fs  exit %s  %s\n      known bug: %s; %s" %
                    (case.name, secs, code, shown, case.xfail, "; ".join(problems)))
        with self.lock:
            self.failed.append(case.name)
        return ("FAIL  %-34s %5.2fs  exit %s\n      %s\n      command: %s %s\n      stderr: %s\n      stdout tail: %s" %
              (case.name, secs, code, "; ".join(problems), self.binary, " ".join(repr(a) for a in case.args),
                shown, out.strip()[-300:].replace("\n", " | ")))


# --------------------------------------------------------------------------------------------
# The cases


def flag_cases(tiny):
    base = {"--device": "cpu", "--data": tiny, "--epochs": "1", "--batch-size": "16"}

    def bad(name, flags, needles, **kw):
        # CLI11 refuses a repeated flag: the tested flags replace those of `base`.
        args = []
        for k, v in base.items():
            if k not in flags:
                args += [k, v]
        return Case(name, args + flags, needles=needles, **kw)

    cases = [
        bad("batch_size_0", ["--batch-size", "0"], ["--batch-size", "got 0"]),
        bad("batch_size_above_train", ["--batch-size", "49"], ["--batch-size 49", "48 training examples"]),
        bad("val_split_leaves_too_few", ["--val-split", "0.99"], ["--batch-size 16", "1 training examples",
                                                                   "60 less --val-split 0.99's 59"]),
        bad("batch_size_huge", ["--batch-size", "1000000"], ["--batch-size", "got 1000000"]),
        bad("lr_0", ["--lr", "0"], ["--lr", "got 0"]),
        bad("lr_negative", ["--lr", "-0.001"], ["--lr", "got -0.001"]),
        bad("lr_nan", ["--lr", "nan"], ["--lr", "'nan' is not a number"]),
        bad("lr_inf", ["--lr", "inf"], ["--lr", "'inf' is not a number"]),
        bad("lr_overflow", ["--lr", "1e400"], ["--lr", "got inf"]),
        bad("lr_hex", ["--lr", "0x10"], ["--lr", "'0x10' is not a number"]),
        # Below the smallest normal double: strtod gives 0, which would remove the Dropout layers.
        bad("dropout_underflow", ["--dropout", "1e-400"], ["--dropout", "'1e-400' is too close to 0"]),
        bad("min_lr_underflow", ["--min-lr", "1e-310"], ["--min-lr", "'1e-310' is too close to 0"]),
        # Integers past the type's range are refused, never wrapped to 0 (or run on every core).
        bad("epochs_past_int", ["--epochs", "4294967297"], ["--epochs", "got 4294967297"]),
        bad("seed_past_uint64", ["--seed", "18446744073709551658"], ["--seed", "got 18446744073709551658"]),
        bad("threads_past_int", ["--threads", "99999999999999999999"], ["--threads", "got 99999999999999999999"]),
        bad("threads_past_int_negative", ["--threads", "-99999999999999999999"], ["--threads", "got -99999999999999999999"]),
        # A PyTorch peer the user names must exist: refused before any training.
        Case("compare_pytorch_script_missing", ["compare", "--device", "cpu", "--data", tiny, "--epochs", "1",
                                                "--pytorch-script", "/nonexistent/peer.py", "--out", "cmp_bad"],
             needles=["--pytorch-script /nonexistent/peer.py", "cannot be read"]),
        Case("compare_python_missing", ["compare", "--device", "cpu", "--data", tiny, "--epochs", "1",
                                        "--python", "/nonexistent/python3", "--out", "cmp_bad"],
             needles=["--python /nonexistent/python3", "cannot import torch"]),
        bad("usage_repeated_switch", ["--quiet", "--quiet"], ["--quiet: given more than once"]),
        bad("usage_switch_with_value", ["--quiet=foo"], ["--quiet takes no value, got 'foo'"]),
        bad("dropout_negative", ["--dropout", "-0.1"], ["--dropout", "got -0.1"]),
        bad("dropout_1", ["--dropout", "1"], ["--dropout", "got 1"]),
        bad("val_split_0", ["--val-split", "0"], ["--val-split", "got 0"]),
        bad("val_split_1", ["--val-split", "1"], ["--val-split", "got 1"]),
        bad("val_split_empty_part", ["--val-split", "0.001"], ["--val-split 0.001", "0 of 60"]),
        bad("epochs_0", ["--epochs", "0"], ["--epochs", "got 0"]),
        bad("epochs_negative", ["--epochs", "-3"], ["--epochs", "got -3"]),
        bad("hidden_0", ["--hidden", "0"], ["--hidden '0'", "not a width"]),
        bad("hidden_12x", ["--hidden", "12x"], ["--hidden '12x'", "'12x' is not a width"]),
        bad("hidden_empty", ["--hidden", ""], ["--hidden ''", "at least one hidden width"]),
        bad("hidden_trailing_comma", ["--hidden", "128,"], ["--hidden '128,'", "not a width"]),
        bad("hidden_empty_width", ["--hidden", "128,,64"], ["--hidden '128,,64'", "not a width"]),
        bad("hidden_too_wide", ["--hidden", "70000"], ["--hidden '70000'", "[1, 65536]"]),
        bad("hidden_negative", ["--hidden", "-5"], ["--hidden '-5'", "not a width"]),
        bad("device_unknown", ["--device", "tpu"], ["--device", "'tpu'"]),
        bad("dataset_unknown", ["--dataset", "cifar"], ["--dataset", "'cifar'"]),
        bad("gemm_unknown", ["--gemm", "fast"], ["--gemm", "'fast'"]),
        bad("pdl_unknown", ["--pdl", "maybe"], ["--pdl", "'maybe'"]),
        bad("carveout_unknown", ["--carveout", "half"], ["--carveout", "'half'"]),
        bad("tail_rows_unknown", ["--tail-rows", "8"], ["--tail-rows", "must be 32 or 16", "'8'"]),
        bad("tail_rows_enum_index", ["--tail-rows", "1"], ["--tail-rows", "'1'"]),  # (not the enum's number)
        bad("layer0_unknown", ["--layer0", "fused"], ["--layer0", "must be separate or inside", "'fused'"]),
        bad("layer0_enum_index", ["--layer0", "1"], ["--layer0", "'1'"]),
        bad("layer0_cluster_three", ["--layer0-cluster", "3"], ["--layer0-cluster", "must be 4, 2 or 1", "'3'"]),
        bad("layer0_cluster_word", ["--layer0-cluster", "four"], ["--layer0-cluster", "'four'"]),
        bad("graph_steps_0", ["--graph-steps", "0"], ["--graph-steps", "got 0"]),
        bad("graph_steps_too_many", ["--graph-steps", "1001"], ["--graph-steps", "got 1001"]),
        bad("init_unknown", ["--init", "he"], ["--init", "'he'"]),
        bad("split_unknown", ["--split", "first"], ["--split", "'first'"]),
        bad("min_lr_above_lr", ["--lr", "0.01", "--min-lr", "0.1"], ["--min-lr", "got 0.1"]),
        bad("min_lr_negative", ["--min-lr", "-1e-7"], ["--min-lr", "got -1e-07"]),
        bad("patience_0", ["--patience", "0"], ["--patience", "got 0"]),
        bad("lr_patience_0", ["--lr-patience", "0"], ["--lr-patience", "got 0"]),
        bad("lr_factor_1", ["--lr-factor", "1"], ["--lr-factor", "got 1"]),
        bad("lr_factor_0", ["--lr-factor", "0"], ["--lr-factor", "got 0"]),
        bad("threads_negative", ["--threads", "-1"], ["--threads", "got -1"]),
        # Usage errors CLI11 finds are one line and exit 2 like the others (issue 13, item 7).
        bad("usage_lr_not_a_number", ["--lr", "abc"], ["--lr", "'abc' is not a number"]),
        bad("usage_epochs_not_an_int", ["--epochs", "1.5"], ["--epochs", "'1.5' is not an integer"]),
        bad("usage_epochs_1e9", ["--epochs", "1e9"], ["--epochs", "'1e9' is not an integer"]),
        bad("usage_batch_size_not_a_number", ["--batch-size", "x"], ["--batch-size", "'x' is not an integer"]),
        bad("usage_batch_size_1e20", ["--batch-size", "1e20"], ["--batch-size", "1e20"]),
        bad("usage_unknown_flag", ["--bogus", "1"], ["--bogus 1"]),
        bad("usage_misspelt_flag", ["--batchsize", "16"], ["--batchsize 16"]),
        bad("usage_repeated_flag", ["--lr", "0.1", "--lr", "0.2"], ["--lr: given more than once"]),
        bad("usage_stray_argument", ["stray"], ["stray"]),
        bad("usage_missing_value", ["--lr"], ["--lr"]),
        Case("usage_evaluate_no_checkpoint", ["evaluate", "--device", "cpu", "--data", tiny], needles=["--checkpoint"]),
        Case("usage_evaluate_training_flag", ["evaluate", "--checkpoint", "x", "--epochs", "3"],
             needles=["evaluate", "--epochs 3"]),
        Case("usage_evaluate_dropout_flag", ["evaluate", "--checkpoint", "x", "--dropout", "0.5"],
             needles=["evaluate", "--dropout 0.5"]),
        Case("usage_flag_before_subcommand", ["--epochs", "3", "evaluate", "--checkpoint", "x"],
             needles=["--epochs", "before 'evaluate'"]),
        Case("usage_predict_no_images", ["predict", "--checkpoint", "x"], needles=["predict: give at least one PNG file"]),
        # Values that used to be accepted or said wrongly (issue 13, items 1, 12, 13).
        bad("seed_negative", ["--seed", "-1"], ["--seed", "got -1"]),
        bad("dropout_rounds_to_1", ["--dropout", "0.99999999"], ["--dropout 0.99999999", "rounds to 1"]),
        bad("out_empty", ["--out", ""], ["--out", "must not be empty"]),
        bad("out_under_proc", ["--out", "/proc/mnist_cuda_out"], ["--out /proc/mnist_cuda_out", "cannot create directory"]),
        bad("data_empty", ["--data", ""], ["--data", "must not be empty"]),
        Case("checkpoint_empty", ["evaluate", "--checkpoint", "", "--device", "cpu", "--data", tiny],
             needles=["--checkpoint", "must not be empty"]),
        Case("out_is_a_file", ["--device", "cpu", "--data", tiny, "--epochs", "1", "--batch-size", "16", "--out",
                               os.path.join(tiny, "train-images-idx3-ubyte")],
             needles=["--out", "is not a directory"]),
    ]
    return cases


def data_cases(tmp, tiny, mnist_dir):
    run = ["--device", "cpu", "--epochs", "1", "--batch-size", "16"]
    TI, TL = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
    EI = "t10k-images-idx3-ubyte.gz"
    n, r, c = N_TRAIN, 28, 28
    good_images = idx_bytes([n, r, c], pixels(n, r, c, 1))
    k = [0]

    def broken(name, file, data, needles, gz=None, remove=False, extra_args=()):
        k[0] += 1
        d = variant(tiny, os.path.join(tmp, "data_%02d_%s" % (k[0], name)), file, data, gz, remove)
        p = os.path.join(d, file)
        return Case(name, ["--data", d] + run + list(extra_args), needles=[p if not remove else d] + needles)

    cases = [
        Case("missing_data_dir_default", ["--device", "cpu", "--epochs", "1"],
             needles=["--data data/mnist", "no such directory"]),
        Case("missing_data_dir", ["--data", os.path.join(tmp, "nowhere")] + run,
             needles=[os.path.join(tmp, "nowhere"), "no such directory"]),
        Case("data_dir_is_a_file", ["--data", os.path.join(tiny, TI)] + run,
             needles=[os.path.join(tiny, TI), "is a file, not a directory"]),
        broken("missing_data_file", TL, None, ["missing " + TL], remove=True),
        broken("empty_file", TI, b"", ["truncated: 0 bytes"]),
        broken("wrong_magic", TI, b"\x12\x34" + good_images[2:], ["bad magic"]),
        broken("wrong_type_float", TI, idx_bytes([n, r, c], b"\0" * (n * r * c), type_byte=0x0D),
               ["unsupported IDX element type 0xd"]),
        broken("wrong_ndims_2", TI, idx_bytes([n, r * c], pixels(n, r, c, 1)), ["has 2 dimensions, expected 3"]),
        broken("wrong_ndims_0", TI, bytes([0, 0, 8, 0]), ["bad number of dimensions 0"]),
        broken("labels_with_3_dims", TL, idx_bytes([n, 1, 1], [0] * n), ["has 3 dimensions, expected 1"]),
        broken("dimension_0", TI, idx_bytes([0, r, c], b""), ["dimension 0 is 0"]),
        broken("sizes_overflow", TI, idx_bytes([0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], b""),
               ["more than 1 GiB", "4294967295"]),
        broken("sizes_claim_1GiB", TI, idx_bytes([1 << 14, 256, 256], b"\x01\x02\x03"),
               ["truncated", "1073741824 data bytes", "file has 3"]),
        broken("truncated_header", TI, good_images[:10], ["truncated in the header"]),
        broken("truncated_data", TI, good_images[:-100], ["truncated", "47040 data bytes", "file has 46940"]),
        broken("extra_bytes", TI, good_images + b"\0\0\0", ["trailing bytes after the 47040 data bytes"]),
        broken("count_mismatch", TL, idx_bytes([n - 1], [1] * (n - 1)), ["has 60 images but", "has 59 labels"]),
        broken("label_10", TL, idx_bytes([n], [3] * 7 + [10] + [3] * (n - 8)), ["label 10 at index 7"]),
        broken("label_255", TL, idx_bytes([n], [255] + [3] * (n - 1)), ["label 255 at index 0"]),
        broken("image_size_implausible", TI, idx_bytes([n, 5000, 1], b"\0" * (n * 5000)),
               ["image size 5000x1 is implausible"]),
        broken("not_gzip_in_gz", EI, idx_bytes([N_TEST, r, c], pixels(N_TEST, r, c, 2)),
               ["not gzip data"], gz=False),
        broken("corrupt_gzip", EI, gzip.compress(idx_bytes([N_TEST, r, c], pixels(N_TEST, r, c, 2)))[:-200],
               ["corrupt compressed data"], gz=False),
        broken("gzip_bad_crc", EI, gzip.compress(idx_bytes([N_TEST, r, c], pixels(N_TEST, r, c, 2)))[:-8] + b"\0" * 8,
               ["corrupt compressed data"], gz=False),
    ]
    # Something other than a file in a data file's place: say what it is (issue 13, item 9).
    def special(name, file, make, needles):
        k[0] += 1
        d = os.path.join(tmp, "data_%02d_%s" % (k[0], name))
        shutil.copytree(tiny, d)
        p = os.path.join(d, file)
        os.remove(p)
        make(p)
        return Case(name, ["--data", d] + run, needles=[d] + needles, timeout=10)

    cases += [
        special("data_file_is_a_directory", TI, os.mkdir, ["is a directory"]),
        special("data_file_is_a_fifo", TI, os.mkfifo, ["is a FIFO"]),
        special("data_file_links_to_dev_zero", TI, lambda p: os.symlink("/dev/zero", p), ["is a device"]),
        special("data_file_symlink_loop", TI, lambda p: os.symlink(os.path.basename(p), p), ["symlink loop"]),
        # Both the raw file and its .gz: which one was meant is unknown (issue 13, item 12).
        special("data_raw_and_gz", TI, lambda p: (write(p, good_images), write(p + ".gz", good_images)),
                ["both", TI + ".gz"]),
    ]
    # Train and test images of different sizes.
    mixed = make_dataset(os.path.join(tmp, "data_mixed"), test_rows=20, test_cols=20)
    cases.append(Case("train_test_sizes_differ", ["--data", mixed] + run,
                      needles=[mixed, "training images are 28x28 but test images are 20x20"]))
    # The real files, copied and broken (skipped where the data has not been fetched).
    real = [f for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    mnist_dir = os.path.abspath(mnist_dir) if mnist_dir else ""
    if mnist_dir and all(os.path.isfile(os.path.join(mnist_dir, f)) for f in real):
        d = os.path.join(tmp, "real_truncated")
        os.makedirs(d)
        for f in real:
            if f.startswith("t10k-images"):
                with open(os.path.join(mnist_dir, f), "rb") as src:
                    blob = src.read()
                write(os.path.join(d, f), blob[: len(blob) // 2], gz=False)
            else:
                os.symlink(os.path.join(mnist_dir, f), os.path.join(d, f))
        cases.append(Case("real_mnist_truncated_gz", ["--data", d] + run,
                          needles=[os.path.join(d, "t10k-images-idx3-ubyte.gz"), "corrupt compressed data"]))
        d2 = os.path.join(tmp, "real_labels_swapped")
        os.makedirs(d2)
        for f in real:
            src = "t10k-labels-idx1-ubyte.gz" if f == "train-labels-idx1-ubyte.gz" else f
            os.symlink(os.path.join(mnist_dir, src), os.path.join(d2, f))
        cases.append(Case("real_mnist_count_mismatch", ["--data", d2] + run,
                          needles=["has 60000 images but", "has 10000 labels"]))
    else:
        print("skip  real-MNIST cases: no MNIST files in %s (apps/fetch_data.sh fetches them)" % mnist_dir)
    return cases


def checkpoint_cases(tmp, tiny, good_ckpt):
    with open(good_ckpt, "rb") as f:
        good = f.read()
    tiny20 = make_dataset(os.path.join(tmp, "data20"), rows=20, cols=20)
    k = [0]

    def ck(name, data, needles, data_dir=tiny, extra=(), xfail=None, use_path_needle=True):
        k[0] += 1
        p = os.path.join(tmp, "ckpt_%02d_%s.safetensors" % (k[0], name))
        write(p, data, gz=False)
        args = ["evaluate", "--checkpoint", p, "--device", "cpu", "--data", data_dir] + list(extra)
        return Case(name, args, needles=([p] if use_path_needle else []) + needles, xfail=xfail)

    meta = model_meta()
    other = model_tensors(hidden=(32,))
    fifo = os.path.join(tmp, "fifo.safetensors")
    os.mkfifo(fifo)
    cases = [
        Case("checkpoint_missing", ["evaluate", "--checkpoint", os.path.join(tmp, "none.safetensors"), "--device",
                                    "cpu", "--data", tiny], needles=[os.path.join(tmp, "none.safetensors"), "cannot open"]),
        ck("ckpt_empty", b"", ["truncated: 0 bytes"]),
        ck("ckpt_truncated_5", good[:5], ["truncated: 5 bytes"]),
        ck("ckpt_truncated_data", good[:-1000], ["lie outside", "truncated file?"]),
        ck("ckpt_truncated_header", good[:200], ["header length", "does not fit in a file of 200 bytes"]),
        ck("ckpt_header_len_beyond_file", struct.pack("<Q", 1 << 40) + good[8:], ["header length 1099511627776"]),
        ck("ckpt_header_len_max", b"\xff" * 8 + good[8:], ["header length 18446744073709551615"]),
        ck("ckpt_garbage_json", safetensors([], raw_header=b'{"fc1.weight": {dtype: F32,,'),
           ["bad safetensors header", "parse error"]),
        ck("ckpt_header_not_object", safetensors([], raw_header=b"[1,2,3]"), ["not a JSON object"]),
        ck("ckpt_wrong_names", safetensors(model_tensors(names=("dense%d.kernel", "dense%d.bias")), meta),
           ["missing tensor 'fc1.weight'", "unexpected tensor 'dense1.kernel'"]),
        ck("ckpt_wrong_shapes", safetensors([(nm, list(reversed(sh)), v) for nm, sh, v in model_tensors()], meta),
           ["'fc1.weight' has shape [784,128], the model needs [128,784]"]),
        ck("ckpt_dtype_f16", safetensors(model_tensors(), meta, dtype="F16"),
           ["dtype \"F16\", expected \"F32\""]),
        ck("ckpt_other_arch", safetensors(other, meta),
           ["another architecture", "'fc1.weight' has shape [32,784], the model needs [128,784]",
            "'fc2.weight' has shape [10,32], the model needs [64,128]", "missing tensor 'fc3.weight'"]),
        ck("ckpt_other_arch_no_metadata", safetensors(other), ["another architecture", "missing tensor 'fc3.weight'"]),
        ck("ckpt_other_arch_hidden_flag", safetensors(model_tensors()), ["another architecture", "[64,784]"],
           extra=["--hidden", "64"]),
        ck("ckpt_trailing_bytes", good + b"\0" * 8, ["8 trailing bytes after the last tensor"]),
        # Either "the model takes 784 inputs, the images have 400 pixels" (from the metadata) or the
        # shape mismatch of fc1.weight ([128,784] vs [128,400]).
        ck("ckpt_20x20_images_784_model", good, ["784", "400"], data_dir=tiny20),
        ck("ckpt_20x20_images_784_model_no_metadata", safetensors(model_tensors()),
           ["'fc1.weight' has shape [128,784], the model needs [128,400]"], data_dir=tiny20),
        # A hostile header: a value nested a million levels deep (a recursive dump() overflowed the
        # stack: SIGSEGV), and a tensor name with a newline and 10^5 characters (one line, short).
        ck("ckpt_deeply_nested_dtype",
           safetensors([], raw_header=b'{"a":{"dtype":' + b"[" * 10**6 + b"]" * 10**6 + b',"shape":[1],"data_offsets":[0,4]}}'),
           ["tensor 'a' has dtype a JSON array, expected \"F32\""]),
        ck("ckpt_deeply_nested_shape",
           safetensors([], raw_header=b'{"a":{"dtype":"F32","shape":[' + b"[" * 10**6 + b"]" * 10**6 + b'],"data_offsets":[0,4]}}'),
           ["tensor 'a' has a bad dimension a JSON array"]),
        ck("ckpt_name_with_newline", safetensors(model_tensors() + [("evil\nname" + "x" * 10**5, [1], array.array("f", [1.0]))], meta),
           ["unexpected tensor 'evil\\x0anamexxx", "xxx...'"]),
        Case("ckpt_is_a_directory", ["evaluate", "--checkpoint", tmp, "--device", "cpu", "--data", tiny],
             needles=[tmp, "is a directory"]),
        Case("ckpt_is_a_fifo", ["evaluate", "--checkpoint", fifo, "--device", "cpu", "--data", tiny],
             needles=[fifo, "not a regular file"], timeout=5),
        Case("ckpt_is_dev_zero", ["evaluate", "--checkpoint", "/dev/zero", "--device", "cpu", "--data", tiny],
             needles=["/dev/zero", "not a regular file"], timeout=5),
        # Corrupt numbers and sharper header messages (issue 13, items 10 and 13).
        ck("ckpt_nan_weight", safetensors([(nm, sh, array.array("f", [float("nan")] + list(v[1:])) if nm == "fc2.weight"
                                            else v) for nm, sh, v in model_tensors()], meta),
           ["'fc2.weight' holds nan at index 0"]),
        ck("ckpt_inf_bias", safetensors([(nm, sh, array.array("f", list(v[:-1]) + [float("-inf")]) if nm == "fc3.bias"
                                          else v) for nm, sh, v in model_tensors()], meta),
           ["'fc3.bias' holds -inf at index 9"]),
        ck("ckpt_header_len_0", struct.pack("<Q", 0) + good[8:], ["header length 0 is too small"]),
        ck("ckpt_offsets_reversed", safetensors([], raw_header=b'{"fc1.bias":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}') + b"\0" * 4,
           ["'fc1.bias' data_offsets [4, 0] are reversed"]),
        ck("ckpt_header_not_utf8", safetensors([], raw_header=b'{"fc1.weight\xff\xfe": 1}'),
           ["bad safetensors header", "UTF-8", "\\xff"]),
        ck("ckpt_hidden_flag_contradicts_metadata", good, ["--hidden 64", "128,64"], extra=["--hidden", "64"],
           use_path_needle=True),
        ck("ckpt_metadata_hidden_garbage", safetensors(model_tensors(), model_meta(hidden="abc")),
           ["metadata \"hidden\"", "'abc'"]),
        ck("ckpt_metadata_hidden_huge", safetensors(model_tensors(), model_meta(hidden="65536,65536,65536")),
           ["metadata \"hidden\"", "parameters"]),
        # "input" that is not a count: named as such, not echoed as "takes abc inputs".
        ck("ckpt_metadata_input_garbage", safetensors(model_tensors(), model_meta(inp="abc")),
           ["metadata \"input\" is not a pixel count", "'abc'"]),
        ck("ckpt_metadata_input_huge", safetensors(model_tensors(), model_meta(inp="9" * 20)),
           ["metadata \"input\" is not a pixel count", "20 characters"]),
        ck("ckpt_metadata_input_other", safetensors(model_tensors(), model_meta(inp=400)),
           ["the model takes 400 inputs, the images have 784 pixels"]),
    ]
    return cases


def written_checkpoint_cases(tmp, tiny, ours):
    """Checkpoints this binary wrote (they carry a CRC-32 per tensor), with one bit flipped."""
    with open(ours, "rb") as f:
        good = f.read()
    n = struct.unpack("<Q", good[:8])[0]
    cases = []
    for name, offset, bit in (("ckpt_mantissa_bit_flip", 8 + n + 4 * 1000, 3),
                              ("ckpt_exponent_bit_flip", 8 + n + 4 * 2000 + 3, 5)):
        data = bytearray(good)
        data[offset] ^= 1 << bit
        p = os.path.join(tmp, name + ".safetensors")
        write(p, bytes(data), gz=False)
        cases.append(Case(name, ["evaluate", "--checkpoint", p, "--device", "cpu", "--data", tiny],
                          needles=[p, "'fc1.weight' fails its checksum", "corrupt"]))
    cases.append(Case("control_evaluate_written_ok", ["evaluate", "--checkpoint", ours, "--device", "cpu", "--data",
                                                      tiny], code=0))
    return cases


HOLD_LOCK = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.truncate(0); f.write("%d\\n" % os.getpid()); f.flush()
print("ready", flush=True)
time.sleep(120)
"""


def run_cases(tmp, tiny, fixture_run):
    """Whole runs against an output folder: resume, the folder's lock, the final listing, GPU memory."""
    base = ["--device", "cpu", "--data", tiny, "--epochs", "2", "--batch-size", "16", "--seed", "3"]
    resume = base + ["--out", "run", "--resume"]
    small = make_dataset(os.path.join(tmp, "data_small"), n_train=40)
    other = os.path.join(tmp, "data_other")  # same sizes, other pixels
    shutil.copytree(tiny, other)
    write(os.path.join(other, "train-images-idx3-ubyte"), idx_bytes([N_TRAIN, 28, 28], pixels(N_TRAIN, 28, 28, 7)))

    def copy_run(drop=()):
        def setup(cwd):
            shutil.copytree(fixture_run, os.path.join(cwd, "run"))
            for f in drop:
                os.remove(os.path.join(cwd, "run", f))
        return setup

    def hold_lock(cwd):
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, os.path.join(cwd, "out", "mnist_cuda.lock")],
                                  stdout=subprocess.PIPE, text=True)
        holder.stdout.readline()

        def cleanup():
            holder.kill()
            holder.wait()
        return {"needles": ["pid %d" % holder.pid], "cleanup": cleanup}

    def plant_lock_link(cwd):  # the lock's name as a link to a file the run must not touch
        os.makedirs(os.path.join(cwd, "out"), exist_ok=True)
        write(os.path.join(cwd, "victim"), b"precious")
        os.symlink(os.path.join(cwd, "victim"), os.path.join(cwd, "out", "mnist_cuda.lock"))

    def swap(args, flag, value):
        args = list(args)
        args[args.index(flag) + 1] = value
        return args

    return [
        Case("resume_changed_lr", resume + ["--lr", "0.01"], needles=["--resume", "lr was 0.001, now 0.01"],
             setup=copy_run(), watch=["run"]),
        # Another architecture is named as the flag that differs (it was "'params' has N values").
        Case("resume_other_hidden", resume + ["--hidden", "64"], needles=["--resume", "hidden was 128,64, now 64"],
             setup=copy_run(), watch=["run"]),
        Case("resume_fewer_images", swap(resume, "--data", small), needles=["--resume", "--data " + small, "other data"],
             setup=copy_run(), watch=["run"]),
        Case("resume_same_size_other_data", swap(resume, "--data", other),
             needles=["--resume", "--data " + other, "other data"], setup=copy_run(), watch=["run"]),
        Case("resume_without_state", base + ["--resume"], needles=["--resume", "out/resume.safetensors", "does not exist"]),
        Case("resume_listing_without_best_model", resume, code=0, setup=copy_run(["best_model.safetensors"]),
             absent=["best_model.safetensors"]),
        Case("out_locked_by_another_run", base, needles=["--out out", "in use by another mnist_cuda run"],
             setup=hold_lock),
        Case("out_lock_is_a_link", base, needles=["--out out", "mnist_cuda.lock is a symbolic link"],
             setup=plant_lock_link, watch=["victim"]),
        Case("gpu_out_of_memory", swap(base, "--device", "cuda"), code=1, env={"MNIST_GPU_MEM_LIMIT": "65536"},
             needles=["out of GPU memory", "--batch-size", "--hidden"], skip_if="--device cuda:"),
    ]


def positive_cases(tiny, ckpt):
    return [
        Case("control_train_ok", ["--device", "cpu", "--data", tiny, "--epochs", "1", "--batch-size", "16",
                                  "--out", "fresh_out", "--quiet"], code=0),
        Case("control_evaluate_ok", ["evaluate", "--checkpoint", ckpt, "--device", "cpu", "--data", tiny], code=0),
        # A CPU run on every core (--threads at least the cores) renders the architecture after training,
        # not beside the engine's team (apps/pipeline/train.cpp): the files are there all the same.
        Case("control_train_every_core_ok", ["--device", "cpu", "--data", tiny, "--epochs", "1", "--batch-size", "16",
                                             "--threads", "1024", "--out", "every_core"], code=0,
             stdout_needles=["model.dot, model.svg, model.png"]),
        # The comparison table: the CPU row's device named whole (the column as wide as the longest
        # name: "CPU (2 threads, OpenBLAS Haswell)" ends right at its separator, never cut short).
        # CUDA-only flags on the CPU path: a notice names them, the run goes on.
        Case("control_cpu_names_cuda_flags", ["--device", "cpu", "--data", tiny, "--epochs", "1", "--batch-size", "16",
                                              "--kernels", "tail", "--gemm", "cublas", "--tail-rows", "16", "--layer0",
                                              "inside", "--layer0-cluster", "2", "--out", "cuda_flags"], code=0,
             stdout_needles=["notice: the CPU path has no use for --gemm cublas --kernels tail --tail-rows 16 --layer0 inside "
                             "--layer0-cluster 2 (CUDA only)"]),
        Case("control_compare_ok", ["compare", "--device", "cpu", "--data", tiny, "--epochs", "1", "--batch-size", "16",
                                    "--out", "cmp_out"], code=0,
             stdout_needles=["FRAMEWORK COMPARISON", "| mnist_cuda cpu ", " threads", ") | cpu "]),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--group", default="all", choices=["flags", "data", "checkpoint", "run", "all"])
    ap.add_argument("--mnist", default="", help="directory of the real MNIST .gz files (optional)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-j", "--jobs", type=int, default=0, help="parallel runs (default: CPU count, at most 8)")
    ap.add_argument("-k", default="", help="run only the cases whose name contains this")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    if not os.access(binary, os.X_OK):
        print("cli_test: %s is not an executable" % binary)
        return 1
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="mnist_cli_%s_" % a.group)
    try:
        tiny = make_dataset(os.path.join(tmp, "tiny"))
        ckpt = os.path.join(tmp, "model.safetensors")
        write(ckpt, safetensors(model_tensors(), model_meta()), gz=False)
        runner = Runner(binary, tmp, ckpt)
        cases = positive_cases(tiny, ckpt)
        if a.group in ("checkpoint", "run", "all"):
            # A finished run of this binary: its checkpoints carry checksums, its folder is resumable.
            fixture_run = os.path.join(tmp, "fixture_run")
            subprocess.run([binary, "--device", "cpu", "--data", tiny, "--epochs", "2", "--batch-size", "16",
                            "--seed", "3", "--out", fixture_run, "--quiet"], check=True, stdout=subprocess.DEVNULL)
        if a.group in ("flags", "all"):
            cases += flag_cases(tiny)
        if a.group in ("data", "all"):
            cases += data_cases(tmp, tiny, a.mnist)
        if a.group in ("checkpoint", "all"):
            cases += checkpoint_cases(tmp, tiny, ckpt)
            cases += written_checkpoint_cases(tmp, tiny, os.path.join(fixture_run, "best_model.safetensors"))
        if a.group in ("run", "all"):
            cases += run_cases(tmp, tiny, fixture_run)
        cases = [c for c in cases if a.k in c.name]
        # Each run is a separate process in its own directory: run them side by side (most of a
        # run's time is the loading of the CUDA libraries the binary links).
        jobs = max(1, min(a.jobs or (os.cpu_count() or 1), 8))
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            for report in pool.map(runner.check, cases):
                print(report, flush=True)
        print("cli_test %s: %d cases, %d failed, %d known bugs (XFAIL), %.1f s" %
              (a.group, runner.count, len(runner.failed), len(runner.xfailed), time.monotonic() - t0))
        if runner.failed:
            print("failed: " + ", ".join(runner.failed))
        return 1 if runner.failed else 0
    finally:
        if a.keep:
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
