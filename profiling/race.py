#!/usr/bin/env python3
"""The race: mnist_cuda against its PyTorch peers, on one device, in one run.

Each contender trains the tutorial's MLP for --epochs epochs (early stopping off, so all run the
same number) at each batch size of --batches, --repeats times; a run's figure is its median epoch
time with the first epoch left out as warm-up, and the table shows the median over the repeats.

  contenders   engine            build/apps/mnist_cuda (--bin), its defaults (CUDA: the fused kernel up to batch
                                 512 in fp32; elsewhere the fastest of graph and tail, tiles autotuned: --autotune on)
               engine-untuned    the same with --autotune off: the launchers' size models pick every tile, and
                                 auto the graph path where the fused kernel does not run (CUDA only)
               engine-graph      the same with --kernels graph: separate kernels per step, CUDA graphs (CUDA only)
               engine-cublas     the same with --gemm cublas (CUDA only; skipped when --help lacks --gemm)
               engine-tail       the same with --kernels tail: the large-batch launches (layers after the first
                                 in one kernel, Adam fused with the gradient sums; CUDA only)
               engine-tail-nopdl the same with --pdl off: ordinary launches, each kernel after the one before
                                 has ended (what the tail path's programmatic launches buy; CUDA only)
               engine-tail-driver the same with --carveout driver: the driver's shared-memory carveout per
                                 launch instead of one for the step (what that one buys; CUDA only)
               engine-tail-half  engine-tail with --tail-rows 16: the tail kernel in 16-row blocks, up to 256,
                                 two an SM (what they buy over 32-row groups; CUDA only)
               engine-tail-l0    engine-tail with --layer0 inside: layer 0's forward inside the tail kernel
                                 (what one launch fewer buys; CUDA, tf32/bf16 only: skipped at fp32), its
                                 blocks sharing it across clusters of up to 4 (--layer0-cluster's default)
               engine-tail-l0-alone the same with --layer0-cluster 1: each block computes its own rows'
                                 layer 0 alone (what the clusters buy; the same bits)
               engine-graph1     the same with --graph-steps 1: one graph replay per step (CUDA only)
               pytorch-tutorial  profiling/pytorch_mnist.py --mode tutorial (DataLoader, .item() per step)
               pytorch-resident  ... --mode resident (data on the device, metrics read once per epoch)
               pytorch-graph     ... --mode graph (one CUDA graph replay per step; CUDA only)
               jax               profiling/jax_mnist.py: data resident, one jitted epoch (lax.scan), default
                                 matmul precision (skipped, with a note, where jax does not import)
               jax-highest       the same at jax_default_matmul_precision "highest" (true float32)

--precisions fp32,tf32,bf16 runs each engine contender (not engine-cublas, which is float32 only)
at each GEMM precision (mnist_cuda --precision); every row shows its precision (PyTorch rows: fp32).

An epoch's time is training + validation wall time, as mnist_cuda's report.json "seconds".
µs/step is that time over the training steps of an epoch (ceil(48000 / batch)); samples/s is
48000 over it; "× engine" is the contender's epoch time over the engine's (2.0 = half as fast).

The engine is run as
  mnist_cuda --data DIR --device D --epochs E --batch-size B --seed S --patience 1000 --out TMP --quiet
and must write TMP/report.json with {"history": [{"seconds": ...}, ...], "test_accuracy": <0..1>, ...}.

Results: profiling/results/<date>-<slug>.md (the table, date, device, commit, command) and .json
({"gpu", "commit", "date", "command", "contenders": {name: {...}}}); <slug> is the GPU's name from
nvidia-smi in lower case (cpu-<host> with --device cpu).

  python3 profiling/race.py                                  # CUDA, batches 128,512,4096, 3 repeats
  python3 profiling/race.py --batches 128 --epochs 5
  python3 profiling/race.py --device cpu --contenders engine,pytorch-tutorial --threads 2
"""

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ALL = ["engine", "engine-untuned", "engine-graph", "engine-tail", "engine-tail-nopdl", "engine-tail-driver", "engine-tail-half",
       "engine-tail-l0", "engine-tail-l0-alone",
       "engine-cublas", "engine-graph1", "pytorch-tutorial", "pytorch-resident",
       "pytorch-graph", "jax", "jax-highest"]


def log(msg):
    print(msg, flush=True)


def run(cmd, timeout, env=None, cwd=ROOT):
    """(returncode, stdout+stderr text); returncode None on timeout, -1 when it cannot start."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out
    except OSError as e:
        return -1, str(e)


def tail(text, n=6):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return "\n".join("    | " + l for l in lines[-n:])


def gpu_name():
    if not shutil.which("nvidia-smi"):
        return None
    rc, out = run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], 30)
    if rc != 0 or not out.strip():
        return None
    return out.strip().splitlines()[0].strip()


def git_commit():
    if os.environ.get("MNIST_COMMIT"):  # set by whoever runs a copy without .git (the device machine)
        return os.environ["MNIST_COMMIT"]
    rc, out = run(["git", "rev-parse", "--short", "HEAD"], 30)
    if rc != 0:
        return "unknown"
    commit = out.strip()
    rc, st = run(["git", "status", "--porcelain", "--untracked-files=no"], 30)
    return commit + ("+dirty" if rc == 0 and st.strip() else "")


def slugify(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "unknown"


def default_data():
    for d in ("data/mnist", ".deps/data/mnist"):
        if os.path.isdir(os.path.join(ROOT, d)):
            return d
    return "data/mnist"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", choices=["cuda", "cpu"], default=None,
                   help="default: cuda when nvidia-smi finds a GPU, else cpu")
    p.add_argument("--bin", default="build/apps/mnist_cuda", help="the engine binary")
    p.add_argument("--data", default=None, help="MNIST IDX directory (default: data/mnist or .deps/data/mnist)")
    p.add_argument("--contenders", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL))
    p.add_argument("--batches", default="128,512,4096", help="comma-separated batch sizes")
    p.add_argument("--precisions", default="fp32",
                   help="comma-separated GEMM precisions of the engine contenders: fp32,tf32,bf16")
    p.add_argument("--epochs", type=int, default=5, help="epochs per run (the first is warm-up)")
    p.add_argument("--repeats", type=int, default=3, help="runs per contender and batch size (median)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads: torch.set_num_threads and OMP/OPENBLAS_NUM_THREADS for the engine")
    p.add_argument("--python", default=None,
                   help="interpreter that runs pytorch_mnist.py (default: the first of this one, python3 on "
                        "PATH and /usr/bin/python3 that imports torch)")
    p.add_argument("--engine-args", default="", help="extra arguments for the engine (one shell-quoted string)")
    p.add_argument("--pytorch-args", default="", help="extra arguments for pytorch_mnist.py")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed for one run")
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    p.add_argument("--tag", default=None, help="file-name slug instead of the GPU's (e.g. cpu-myhost)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--keep-logs", metavar="DIR", help="keep every run's output and report.json under DIR")
    a = p.parse_args(argv)
    a.contenders = [c.strip() for c in a.contenders.split(",") if c.strip()]
    bad = [c for c in a.contenders if c not in ALL]
    if bad:
        p.error(f"unknown contender(s) {bad}; choose from {ALL}")
    try:
        a.batches = [int(b) for b in a.batches.split(",") if b.strip()]
    except ValueError:
        p.error("--batches takes comma-separated integers")
    if not a.batches or min(a.batches) < 1 or a.epochs < 1 or a.repeats < 1:
        p.error("--batches, --epochs and --repeats must be >= 1")
    a.precisions = [x.strip() for x in a.precisions.split(",") if x.strip()]
    if not a.precisions or any(x not in ("fp32", "tf32", "bf16") for x in a.precisions):
        p.error("--precisions takes comma-separated values among fp32, tf32, bf16")
    return a


def median_epoch_seconds(secs):
    measured = secs[1:] if len(secs) > 1 else secs
    return statistics.median(measured)


class Race:
    def __init__(self, a):
        self.a = a
        self.skips = []  # (contender, why)
        self.failures = []  # (contender@batch, why)
        self.env = dict(os.environ)
        if a.threads > 0:
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                self.env[k] = str(a.threads)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.torch_info = None
        self.jax_info = None
        self.jax_why = None
        self.engine_drop = set()
        self.engine_help = None
        self.on_result = None  # called after each contender finishes, to write partial results

    # -- availability --------------------------------------------------------------------------
    def probe_torch(self):
        if self.a.python is None:
            cands = [sys.executable, shutil.which("python3"), "/usr/bin/python3"]
            cands = [c for i, c in enumerate(cands) if c and os.path.exists(c) and c not in cands[:i]]
            for c in cands:
                self.a.python = c
                info, why = self.probe_torch()
                if info is not None:
                    return info, None
            self.a.python = cands[0]
            return None, "torch is not importable by " + ", ".join(cands)
        code = ("import json,torch;print(json.dumps({'v':torch.__version__,'cuda':torch.cuda.is_available(),"
                "'name':torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))")
        rc, out = run([self.a.python, "-c", code], 120, env=self.env)
        if rc != 0:
            return None, f"torch is not importable by {self.a.python}" + ("\n" + tail(out, 2) if out else "")
        try:
            return json.loads(out.strip().splitlines()[-1]), None
        except (ValueError, IndexError):
            return None, "could not read torch's version from " + self.a.python

    def available(self):
        a, ok = self.a, []
        for c in a.contenders:
            if c.startswith("engine"):
                binp = a.bin if os.path.isabs(a.bin) else os.path.join(ROOT, a.bin)
                if not (os.path.isfile(binp) and os.access(binp, os.X_OK)):
                    self.skip(c, f"binary {a.bin} not found (build it: cmake -S . -B build -G Ninja && "
                                 f"cmake --build build), or pass --bin")
                    continue
                self.probe_engine_flags(binp)
                if c == "engine-cublas" and a.device != "cuda":
                    self.skip(c, "--gemm cublas applies to --device cuda only")
                    continue
                if c == "engine-graph1" and a.device != "cuda":
                    self.skip(c, "--graph-steps applies to --device cuda only")
                    continue
                if c in ("engine-graph", "engine-tail", "engine-tail-nopdl", "engine-tail-driver", "engine-tail-half",
                         "engine-tail-l0", "engine-tail-l0-alone") and a.device != "cuda":
                    self.skip(c, "--kernels applies to --device cuda only")
                    continue
                if c == "engine-tail-nopdl" and "--pdl" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --pdl")
                    continue
                if c == "engine-tail-driver" and "--carveout" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --carveout")
                    continue
                if c == "engine-tail-half" and "--tail-rows" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --tail-rows")
                    continue
                if c == "engine-tail-l0" and "--layer0" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --layer0")
                    continue
                if c == "engine-tail-l0-alone" and "--layer0-cluster" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --layer0-cluster")
                    continue
                if c in ("engine-tail", "engine-tail-nopdl", "engine-tail-driver", "engine-tail-half", "engine-tail-l0",
                         "engine-tail-l0-alone") and not re.search(r"\btail\b", self.engine_help):
                    self.skip(c, f"{a.bin} --help does not offer --kernels tail")
                    continue
                if c in ("engine-graph", "engine-tail") and "--kernels" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --kernels")
                    continue
                if c == "engine-untuned" and a.device != "cuda":
                    self.skip(c, "--autotune applies to --device cuda only")
                    continue
                if c == "engine-untuned" and "--autotune" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --autotune")
                    continue
                if c == "engine-graph1" and "--graph-steps" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --graph-steps")
                    continue
                if c == "engine-cublas" and "--gemm" not in self.engine_help:
                    self.skip(c, f"{a.bin} --help does not list --gemm")
                    continue
                ok.append(c)
                continue
            if c.startswith("jax"):
                if self.jax_info is None and self.jax_why is None:
                    self.jax_info, self.jax_why = self.probe_jax()
                if self.jax_info is None:
                    self.skip(c, self.jax_why)
                    continue
                if a.device == "cuda" and "gpu" not in self.jax_info["platforms"]:
                    self.skip(c, f"jax {self.jax_info['v']} sees no GPU (platforms {self.jax_info['platforms']})")
                    continue
                ok.append(c)
                continue
            if self.torch_info is None:
                self.torch_info, why = self.probe_torch()
                if self.torch_info is None:
                    self.torch_why = why
            if self.torch_info is None:
                self.skip(c, self.torch_why)
                continue
            if a.device == "cuda" and not self.torch_info["cuda"]:
                self.skip(c, f"torch {self.torch_info['v']} sees no CUDA device")
                continue
            if c == "pytorch-graph" and a.device != "cuda":
                self.skip(c, "CUDA graphs need --device cuda")
                continue
            ok.append(c)
        return ok

    def probe_jax(self):
        """({'v', 'platforms'}, None) when the interpreter imports jax, else (None, why). jax is
        imported only in that child process (and in jax_mnist.py), never here."""
        py = self.a.python or sys.executable
        code = "import json,jax;print(json.dumps({'v':jax.__version__,'platforms':sorted({d.platform for d in jax.devices()})}))"
        rc, out = run([py, "-c", code], 120, env=self.env)
        if rc != 0:
            return None, f"jax is not importable by {py} (it is installed on the GPU machines)"
        try:
            return json.loads(out.strip().splitlines()[-1]), None
        except (ValueError, IndexError):
            return None, "could not read jax's version from " + py

    def probe_engine_flags(self, binp):
        """Optional flags the engine may not have yet (--quiet, --patience): dropped, with a note,
        when its --help does not mention them. Without --patience early stopping stays on."""
        if self.engine_help is not None:
            return
        rc, out = run([binp, "--help"], 60, env=self.env)
        self.engine_help = out or ""
        self.engine_drop = set()
        if rc not in (0, None) and not out:
            return
        for flag in ("--quiet", "--patience"):
            if flag not in (out or ""):
                self.engine_drop.add(flag)
                log(f"note: {binp} --help does not list {flag}; running the engine without it")

    def skip(self, c, why):
        self.skips.append((c, why))
        log(f"skip {c}: {why}")

    # -- one run of one contender --------------------------------------------------------------
    def run_logged(self, cmd, logname):
        """Runs cmd under the timeout, keeps its command line and output as logname; returns
        (output, wall seconds, None) or (output, wall seconds, a failure line with the output's tail)."""
        t0 = time.perf_counter()
        rc, text = run(cmd, self.a.timeout, env=self.env)
        wall = time.perf_counter() - t0
        shown = " ".join(map(shlex.quote, cmd))
        self.keep(logname, shown + "\n" + (text or ""))
        if rc != 0:
            return text, wall, f"exit {rc if rc is not None else 'timeout'}: {shown}\n" + tail(text)
        return text, wall, None

    def run_engine(self, c, batch, rep, tmp, prec="fp32"):
        a = self.a
        tag = f"{c}-{prec}-b{batch}-r{rep}"
        out = os.path.join(tmp, tag)
        os.makedirs(out, exist_ok=True)
        cmd = [a.bin if os.path.isabs(a.bin) else os.path.join(ROOT, a.bin), "--data", a.data,
               "--device", a.device, "--epochs", str(a.epochs), "--batch-size", str(batch), "--seed", str(a.seed),
               "--patience", "1000", "--out", out, "--quiet"]
        if "--patience" in self.engine_drop:
            i = cmd.index("--patience")
            del cmd[i:i + 2]
        if "--quiet" in self.engine_drop:
            cmd.remove("--quiet")
        if a.threads > 0 and "--threads" in self.engine_help:
            cmd += ["--threads", str(a.threads)]
        if c == "engine-cublas":
            cmd += ["--gemm", "cublas"]
        if c == "engine-graph1":
            cmd += ["--graph-steps", "1"]
        if c == "engine-graph":
            cmd += ["--kernels", "graph"]
        if c == "engine-tail":
            cmd += ["--kernels", "tail"]
        if c == "engine-tail-nopdl":
            cmd += ["--kernels", "tail", "--pdl", "off"]
        if c == "engine-tail-driver":
            cmd += ["--kernels", "tail", "--carveout", "driver"]
        if c == "engine-tail-half":
            cmd += ["--kernels", "tail", "--tail-rows", "16"]
        if c == "engine-tail-l0":
            cmd += ["--kernels", "tail", "--layer0", "inside"]
        if c == "engine-tail-l0-alone":
            cmd += ["--kernels", "tail", "--layer0", "inside", "--layer0-cluster", "1"]
        if c == "engine-untuned":
            cmd += ["--autotune", "off"]
        if prec != "fp32":
            cmd += ["--precision", prec]
        cmd += shlex.split(a.engine_args)
        text, wall, err = self.run_logged(cmd, f"{tag}.log")
        if err:
            return None, err
        rpath = os.path.join(out, "report.json")
        try:
            if os.path.isfile(rpath):
                with open(rpath) as f:
                    rep_json = json.load(f)
            else:
                rep_json = self.report_from_csv(out, text)
            self.keep(f"{tag}.report.json", json.dumps(rep_json, indent=1))
            secs = [float(h["seconds"]) for h in rep_json["history"]]
            if not secs:
                raise ValueError("empty history")
        except (OSError, ValueError, KeyError, TypeError) as e:
            return None, f"cannot read {rpath} (needs history[].seconds): {e}"
        train_n = int(rep_json.get("train_samples", 48000))
        steps = -(-train_n // batch)
        s = median_epoch_seconds(secs)
        acc = rep_json.get("test_accuracy")
        if rep_json.get("params") not in (None, 109386):
            log(f"  warning: engine reports {rep_json.get('params')} parameters, expected 109386")
        return {
            "ms_per_epoch": s * 1e3, "us_per_step": s * 1e6 / steps, "samples_per_s": train_n / s,
            "test_acc": float(acc) if acc is not None else None,
            "test_loss": rep_json.get("test_loss"), "epochs": len(secs), "batch_size": batch,
            "device": rep_json.get("device"), "wall_s": wall, "epoch_seconds": secs,
            "kernels": rep_json.get("kernels"), "autotune": rep_json.get("autotune", []),
        }, None

    @staticmethod
    def report_from_csv(out, text):
        """Stand-in for an engine that writes no report.json yet: history.csv (epoch,...,seconds)
        and the "Test Accuracy:"/"Test Loss:" lines of its output."""
        import csv
        with open(os.path.join(out, "history.csv")) as f:
            hist = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        rep = {"history": hist, "source": "history.csv + stdout (no report.json)"}
        for key, pat in (("test_accuracy", r"Test Accuracy:\s*([0-9.]+)"), ("test_loss", r"Test Loss:\s*([0-9.]+)")):
            m = re.search(pat, text or "")
            if m:
                v = float(m.group(1))
                rep[key] = v / 100.0 if key == "test_accuracy" and v > 1.0 else v
        return rep

    def run_pytorch(self, mode, batch, rep, tmp):
        a = self.a
        jpath = os.path.join(tmp, f"pytorch-{mode}-b{batch}-r{rep}.json")
        cmd = [a.python, os.path.join(HERE, "pytorch_mnist.py"), "--data", a.data, "--device", a.device,
               "--mode", mode, "--epochs", str(a.epochs), "--batch-size", str(batch), "--seed", str(a.seed),
               "--no-early-stop", "--quiet", "--json", jpath] + shlex.split(a.pytorch_args)
        if a.threads > 0:
            cmd += ["--threads", str(a.threads)]
        return self.run_peer(cmd, jpath, f"pytorch-{mode}-b{batch}-r{rep}")

    def run_jax(self, c, batch, rep, tmp):
        a = self.a
        precision = "highest" if c == "jax-highest" else "default"
        jpath = os.path.join(tmp, f"{c}-b{batch}-r{rep}.json")
        cmd = [a.python or sys.executable, os.path.join(HERE, "jax_mnist.py"), "--data", a.data,
               "--epochs", str(a.epochs), "--batch-size", str(batch), "--seed", str(a.seed),
               "--precision", precision, "--quiet", "--json", jpath]
        return self.run_peer(cmd, jpath, f"{c}-b{batch}-r{rep}")

    def run_peer(self, cmd, jpath, tag):
        """Runs a Python peer that writes its epoch timings to jpath; (result, None) or (None, why)."""
        text, wall, err = self.run_logged(cmd, f"{tag}.log")
        if err:
            return None, err
        try:
            with open(jpath) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            return None, f"cannot read {jpath}: {e}"
        self.keep(f"{tag}.json", json.dumps(r, indent=1))
        r["wall_s"] = wall
        return r, None

    def keep(self, name, text):
        if self.a.keep_logs:
            os.makedirs(self.a.keep_logs, exist_ok=True)
            with open(os.path.join(self.a.keep_logs, name), "w") as f:
                f.write(text)

    # -- the whole race ------------------------------------------------------------------------
    def go(self):
        a = self.a
        contenders = self.available()
        results = {}  # key -> aggregated record
        order = []
        with tempfile.TemporaryDirectory(prefix="race-") as tmp:
            for batch in a.batches:
                for c, prec in self.with_precisions(contenders):
                    name = self.name(c, batch, prec)
                    runs = []
                    for rep in range(a.repeats):
                        log(f"run {name} [{rep + 1}/{a.repeats}]")
                        if c.startswith("engine"):
                            r, err = self.run_engine(c, batch, rep, tmp, prec)
                        elif c.startswith("jax"):
                            r, err = self.run_jax(c, batch, rep, tmp)
                        else:
                            r, err = self.run_pytorch(c.split("-", 1)[1], batch, rep, tmp)
                        if r is None:
                            log(f"  FAILED {name}: {err}")
                            self.failures.append((name, err.splitlines()[0]))
                            break
                        log(f"  {r['ms_per_epoch']:.1f} ms/epoch, test acc "
                            f"{'-' if r.get('test_acc') is None else '%.4f' % r['test_acc']}, wall {r['wall_s']:.1f} s")
                        runs.append(r)
                    if not runs:
                        continue
                    results[name] = self.aggregate(c, batch, runs)
                    results[name]["precision"] = prec
                    order.append(name)
                    if self.on_result:
                        self.on_result(results, order)
        return results, order

    def with_precisions(self, contenders):
        """(contender, precision) pairs: engine contenders at every --precisions value that they and
        the binary support (engine-cublas is float32 only, engine-tail-l0(-alone) tf32/bf16 only), the others
        at fp32."""
        pairs = []
        for c in contenders:
            for prec in self.a.precisions:
                if prec != "fp32" and (not c.startswith("engine") or c == "engine-cublas"):
                    continue
                if prec == "fp32" and c in ("engine-tail-l0", "engine-tail-l0-alone"):  # (layer 0 inside: tensor cores only)
                    continue
                if prec != "fp32" and "--precision" not in (self.engine_help or ""):
                    self.skip(f"{c}[{prec}]", f"{self.a.bin} --help does not list --precision")
                    continue
                pairs.append((c, prec))
        return pairs

    def name(self, c, batch, prec="fp32"):
        return f"{c}{'' if prec == 'fp32' else '[' + prec + ']'}-{self.a.device}@b{batch}"

    @staticmethod
    def aggregate(c, batch, runs):
        med = lambda k: statistics.median([r[k] for r in runs if r.get(k) is not None]) \
            if any(r.get(k) is not None for r in runs) else None
        rec = {
            "contender": c, "batch_size": batch,
            "ms_per_epoch": med("ms_per_epoch"), "us_per_step": med("us_per_step"),
            "samples_per_s": med("samples_per_s"), "test_acc": med("test_acc"),
            "repeats": len(runs), "ms_per_epoch_runs": [r["ms_per_epoch"] for r in runs],
            "epochs": runs[0].get("epochs"),
        }
        for k in ("torch", "jax", "device", "train_ms_per_epoch", "kernels", "autotune"):
            if runs[0].get(k) is not None:
                rec[k] = runs[0][k] if k != "train_ms_per_epoch" else med(k)
        paths = sorted({r["kernels"] for r in runs if r.get("kernels")})
        if len(paths) > 1:  # autotuning kept different paths in different repeats
            rec["kernels"] = " / ".join(paths)
        return rec


def table(results, order, batches):
    rows = ["| contender | precision | path | batch | ms/epoch | µs/step | samples/s | test acc | × engine |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for b in batches:
        eng = next((results[n] for n in order if results[n]["batch_size"] == b and results[n]["contender"] == "engine"
                    and results[n].get("precision", "fp32") == "fp32"), None)
        for n in order:
            r = results[n]
            if r["batch_size"] != b:
                continue
            ratio = "—" if not eng else f"{r['ms_per_epoch'] / eng['ms_per_epoch']:.2f}"
            acc = "—" if r["test_acc"] is None else f"{100 * r['test_acc']:.2f}%"
            rows.append(f"| {n.split('@')[0]} | {r.get('precision', 'fp32')} | {r.get('kernels') or '—'} | {b} | "
                        f"{r['ms_per_epoch']:.1f} | {r['us_per_step']:.1f} | "
                        f"{r['samples_per_s']:.0f} | {acc} | {ratio} |")
    return "\n".join(rows)


def unique_path(base, ext):
    p, i = base + ext, 2
    while os.path.exists(p):
        p, i = f"{base}-{i}{ext}", i + 1
    return p


def render(a, race, results, order, meta):
    """(markdown text, json document) for the results so far."""
    tbl = table(results, order, a.batches) if results else "(no contender ran)"
    notes = [f"- skipped {c}: {why.splitlines()[0]}" for c, why in race.skips] + \
            [f"- failed {n}: {why}" for n, why in race.failures] + \
            [f"- engine run without {f} (its --help does not list it)" for f in sorted(race.engine_drop)]
    torch_v = race.torch_info["v"] if race.torch_info else None
    md = "\n".join([
        f"# Race: mnist_cuda vs PyTorch — {meta['label']}", "",
        f"- date: {meta['date']}",
        f"- device: {meta['label']} ({a.device})" + (f", host {meta['host']}" if a.device == "cpu" else ""),
        f"- commit: {meta['commit']}",
        f"- torch: {torch_v or 'n/a'}",
        f"- command: `{meta['command']}`",
        f"- epochs per run: {a.epochs} (first excluded), repeats: {a.repeats} (median), seed {a.seed}, "
        f"threads {a.threads or 'default'}",
        "- ms/epoch = training + validation wall time of one epoch; µs/step = that over ceil(48000/batch) steps; "
        "× engine = epoch time over the engine's (> 1: the engine is faster)", "", tbl, ""]
        + (["Notes:"] + notes + [""] if notes else []))
    doc = {"gpu": meta["label"], "device_type": a.device, "commit": meta["commit"], "date": meta["date"],
           "command": meta["command"], "torch": torch_v, "epochs": a.epochs, "repeats": a.repeats,
           "threads": a.threads, "seed": a.seed, "contenders": results,
           "skipped": {c: w for c, w in race.skips}, "failed": {n: w for n, w in race.failures}}
    return md, doc, tbl, notes


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    gpu = gpu_name()
    if a.device is None:
        a.device = "cuda" if gpu else "cpu"
    if a.device == "cuda" and not gpu:
        log("race: --device cuda but nvidia-smi finds no GPU; use --device cpu")
        return 2
    a.data = a.data or default_data()
    if not os.path.isdir(a.data if os.path.isabs(a.data) else os.path.join(ROOT, a.data)):
        log(f"race: data directory {a.data} not found (apps/fetch_data.sh fetches MNIST into data/mnist)")
        return 2
    a.data = os.path.abspath(os.path.join(ROOT, a.data))
    host = socket.gethostname().split(".")[0]
    meta = {
        "date": datetime.date.today().isoformat(), "host": host,
        "label": gpu if a.device == "cuda" else "cpu",
        "commit": git_commit(),
        "command": " ".join(shlex.quote(x) for x in ["python3", os.path.relpath(os.path.abspath(__file__), ROOT)]
                            + (sys.argv[1:] if argv is None else list(argv))),
    }
    slug = a.tag or (slugify(gpu) if a.device == "cuda" else "cpu-" + slugify(host))
    log(f"race on {meta['label']} ({a.device}), commit {meta['commit']}, {a.epochs} epochs x {a.repeats} repeats, "
        f"batches {a.batches}, threads {a.threads or 'default'}")

    race = Race(a)
    paths = {}
    if not a.no_write:
        os.makedirs(a.results_dir, exist_ok=True)
        mdp = unique_path(os.path.join(a.results_dir, f"{meta['date']}-{slug}"), ".md")
        paths = {"md": mdp, "json": mdp[:-3] + ".json"}

        def write(results, order):  # after every contender, so a run cut short keeps what it measured
            md, doc, _, _ = render(a, race, results, order, meta)
            for key, text in (("md", md), ("json", json.dumps(doc, indent=2))):
                with open(paths[key] + ".part", "w") as f:
                    f.write(text)
                os.replace(paths[key] + ".part", paths[key])
        race.on_result = write

    results, order = race.go()
    md, doc, tbl, notes = render(a, race, results, order, meta)
    print()
    print(tbl)
    for n in notes:
        print(n)
    if paths and results:
        race.on_result(results, order)
        log(f"\nwrote {os.path.relpath(paths['md'], ROOT)} and {os.path.relpath(paths['json'], ROOT)}")
    return 1 if race.failures or not results else 0


if __name__ == "__main__":
    sys.exit(main())
