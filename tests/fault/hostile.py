#!/usr/bin/env python3
"""Fault tests of the real binary that need timing, signals or a terminal (ctest label "fault").

    hostile.py MNIST_CUDA DATA_DIR [-k SUBSTRING]

  * ctrl_c_after_last_epoch: SIGINT while the final results are being computed exits 130 (the
    README's promise), saying so; --resume then finishes the run.
  * quiet_interrupt: SIGINT under --quiet prints one line on stderr naming the resume state.
  * second_run_on_one_out: a second run on a folder a live run holds is refused (exit 2, one line
    naming the folder and the holder's pid), and the first run is not disturbed.
  * progress_bar: on a terminal (a pty) a live bar (steps, ETA, running loss and accuracy) is
    redrawn at most ~10 times a second and erased before each epoch line; through a pipe, and
    under --quiet, the output has no bar at all.
Each test runs on a subset of MNIST cut into a temporary folder, removed at the end.
"""
import argparse
import gzip
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time


def cut_mnist(src, dst, n_train, n_test, test_from_train=False):
    """The first n images of each set as raw IDX files (the test set may be cut from the training set)."""
    os.makedirs(dst)

    def rd(name):
        p = os.path.join(src, name)
        return gzip.open(p + ".gz").read() if os.path.exists(p + ".gz") else open(p, "rb").read()

    for kind, n in (("train", n_train), ("t10k", n_test)):
        src_kind = "train" if test_from_train else kind
        img, lab = rd("%s-images-idx3-ubyte" % src_kind), rd("%s-labels-idx1-ubyte" % src_kind)
        with open(os.path.join(dst, "%s-images-idx3-ubyte" % kind), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + img[16:16 + n * 784])
        with open(os.path.join(dst, "%s-labels-idx1-ubyte" % kind), "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + lab[8:8 + n])
    return dst


def wait_for(pred, what, timeout=60):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Tests:
    def __init__(self, binary, data, tmp):
        self.binary, self.tmp = binary, tmp
        self.small = cut_mnist(data, os.path.join(tmp, "small"), 12000, 2000)
        # A long evaluation after the last epoch: 30,000 test images.
        self.big_test = cut_mnist(data, os.path.join(tmp, "big_test"), 3000, 30000, test_from_train=True)
        self.args = ["--device", "cpu", "--batch-size", "96", "--seed", "5", "--threads", "1"]

    def start(self, out, extra, data=None, **kw):
        cmd = [self.binary] + self.args + ["--data", data or self.small, "--out", out] + extra
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, text=True, **kw)

    def ctrl_c_after_last_epoch(self):
        out = os.path.join(self.tmp, "after_last")
        p = self.start(out, ["--epochs", "1"], data=self.big_test, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if line.startswith("Epoch 1/1 "):
                p.send_signal(signal.SIGINT)
                break
        rest, err = p.communicate(timeout=120)
        text = "".join(lines) + rest
        check(p.returncode == 130, "exit %s after SIGINT past the last epoch, expected 130; stderr %r" %
              (p.returncode, err))
        check("Interrupted after the last epoch" in text, "no 'Interrupted after the last epoch' line")
        r = subprocess.run([self.binary] + self.args + ["--data", self.big_test, "--out", out, "--epochs", "1",
                                                         "--resume", "--quiet"], capture_output=True, text=True)
        check(r.returncode == 0, "--resume after it: exit %d (%s)" % (r.returncode, r.stderr.strip()))
        check(os.path.exists(os.path.join(out, "report.json")), "--resume after it wrote no report.json")

    def quiet_interrupt(self):
        out = os.path.join(self.tmp, "quiet")
        p = self.start(out, ["--epochs", "6", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: os.path.exists(os.path.join(out, "resume.safetensors")), "the first resume state")
        p.send_signal(signal.SIGINT)
        stdout, err = p.communicate(timeout=120)
        check(p.returncode == 130, "exit %s, expected 130" % p.returncode)
        lines = err.strip().splitlines()
        check(len(lines) == 1 and "interrupted" in lines[0] and os.path.join(out, "resume.safetensors") in lines[0],
              "stderr under --quiet should be one line naming the resume state, got %r" % err)
        check(stdout == "", "--quiet printed %r" % stdout)

    def second_run_on_one_out(self):
        out = os.path.join(self.tmp, "shared")
        first = self.start(out, ["--epochs", "6", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: os.path.exists(os.path.join(out, "resume.safetensors")), "the first run's resume state")
            # Graphviz renders the first run's architecture beside its training (model.png last):
            # on a busy machine that can end after the first epoch.
            if shutil.which("dot"):
                wait_for(lambda: os.path.exists(os.path.join(out, "model.png")), "the first run's model.png")
            # The first run is stopped (SIGSTOP) while the second one runs: it still holds the folder,
            # but writes nothing, so that any change is the second run's. (Running, it ended an epoch
            # between the two listings on a busy CI machine and wrote its history files there: the
            # test failed on the first run's doing.) Its temporary files (<file>.tmp.<its pid>) of a
            # write cut by the stop are its own too.
            own_tmp = ".tmp.%d" % first.pid
            listing = lambda: sorted(f for f in os.listdir(out) if not f.endswith(own_tmp))
            first.send_signal(signal.SIGSTOP)
            try:
                before = listing()
                r = subprocess.run([self.binary] + self.args + ["--data", self.small, "--out", out, "--epochs", "1"],
                                   capture_output=True, text=True, timeout=120)
                after = listing()
            finally:
                first.send_signal(signal.SIGCONT)
            lines = r.stderr.strip().splitlines()
            check(r.returncode == 2, "second run: exit %d, expected 2" % r.returncode)
            check(len(lines) == 1 and out in lines[0] and "pid %d" % first.pid in lines[0],
                  "second run: stderr should be one line naming %s and pid %d, got %r" % (out, first.pid, r.stderr))
            check(after == before, "the second run changed the folder: %s" % sorted(set(before) ^ set(after)))
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=120)
        check(first.returncode == 130, "the first run ended with %s, expected 130 after SIGINT" % first.returncode)

    def run_on_pty(self, extra):
        """Runs the binary with stdout on a pseudo-terminal; returns (exit code, bytes written, seconds)."""
        master, slave = pty.openpty()
        t0 = time.monotonic()
        p = subprocess.Popen([self.binary] + self.args + ["--data", self.small, "--out",
                                                          os.path.join(self.tmp, "pty")] + extra,
                             stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        data = b""
        while True:
            r, _, _ = select.select([master], [], [], 120)
            if not r:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
        err = p.communicate(timeout=120)[1].decode()
        os.close(master)
        check(err == "", "stderr on a terminal: %r" % err)
        return p.returncode, data, time.monotonic() - t0

    def progress_bar(self):
        extra = ["--epochs", "2"]  # 9,600 training images in batches of 96: 100 steps
        code, data, secs = self.run_on_pty(extra)
        text = data.decode()
        check(code == 0, "exit %d on a terminal" % code)
        draws = re.findall(r"\r *(\d+)/100 \[[=>.]{30}\] - \d+s(?: - ETA: \d+s)? - loss: (\S+) - accuracy: (\S+)\x1b\[K",
                           text)
        check(len(draws) >= 2, "no live progress bar on a terminal: %r" % text[:600])
        check(len(draws) <= secs * 10 + 4, "%d redraws in %.1f s: more than ~10 a second" % (len(draws), secs))
        check("ETA: " in text, "the bar shows no ETA")
        check(any(int(d[0]) < 100 for d in draws), "the bar never showed a step inside the epoch")
        for n, loss, acc in draws:
            check(0 < float(loss) < 10 and 0 <= float(acc) <= 1, "implausible running metrics %s %s" % (loss, acc))
        # Each epoch line starts on a cleared line: what stays on screen is today's output.
        for epoch in (1, 2):
            check(re.search(r"\r\x1b\[KEpoch %d/2 - 100/100 - " % epoch, text), "epoch %d line not after an erased bar" % epoch)
        # Not a terminal, or --quiet: no bar, no carriage return.
        r = subprocess.run([self.binary] + self.args + ["--data", self.small, "--out", os.path.join(self.tmp, "pipe"),
                                                         "--epochs", "1"], capture_output=True, text=True)
        check(r.returncode == 0 and "\r" not in r.stdout and "Epoch 1/1 - 100/100 - " in r.stdout,
              "through a pipe the output must be today's lines, without a bar")
        code, data, _ = self.run_on_pty(["--epochs", "1", "--quiet"])
        check(code == 0 and b"\r" not in data.replace(b"\r\n", b"\n"), "--quiet on a terminal drew a bar")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("data")
    ap.add_argument("-k", default="")
    a = ap.parse_args()
    failed = []
    with tempfile.TemporaryDirectory(prefix="mnist_hostile_") as tmp:
        t = Tests(os.path.abspath(a.binary), a.data, tmp)
        for name in ("ctrl_c_after_last_epoch", "quiet_interrupt", "second_run_on_one_out", "progress_bar"):
            if a.k not in name:
                continue
            t0 = time.monotonic()
            try:
                getattr(t, name)()
                print("ok    %-26s %.1fs" % (name, time.monotonic() - t0), flush=True)
            except AssertionError as e:
                failed.append(name)
                print("FAIL  %-26s %s" % (name, e), flush=True)
    print("hostile: %d failed" % len(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
