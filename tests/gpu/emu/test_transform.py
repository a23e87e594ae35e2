#!/usr/bin/env python3
"""transform.py's static __shared__ rewrite (the emulation's per-block shared memory): each form the
kernels use becomes a per-block emu::shared_obj, and a declaration it cannot rewrite (two declarators
in one statement) stops it with the declaration's text, never left as one process-wide static that
the blocks running at once would race on."""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
failures = 0


def transform(src):
    with tempfile.TemporaryDirectory() as d:
        cu, out = os.path.join(d, "k.cu"), os.path.join(d, "k.cpp")
        open(cu, "w").write(src)
        r = subprocess.run([sys.executable, os.path.join(here, "transform.py"), cu, out], capture_output=True, text=True)
        return r.returncode, r.stderr, open(out).read() if r.returncode == 0 else ""


def expect(ok, what):
    global failures
    if not ok:
        failures += 1
        print("FAIL", what)


rc, err, out = transform("__global__ void k() {\n  __shared__ unsigned long long a[4];\n  __shared__ float b[2][8];\n"
                         "  __shared__ typename T::Smem s;\n}\n")
expect(rc == 0, f"the kernels' forms are rewritten (rc {rc}: {err.strip()})")
for name, t in (("a", "unsigned long long[4]"), ("b", "float[2][8]"), ("s", "typename T::Smem")):
    expect(f"auto& {name} = emu::shared_obj<{t}," in out, f"{name} rewritten per block: {out!r}")
expect("__shared__" not in out.replace("emu::", ""), "no __shared__ left")

rc, err, _ = transform("__global__ void k() {\n  __shared__ float a[4], b[4];\n}\n")
expect(rc != 0 and "__shared__ float a[4], b[4];" in err and "one declarator" in err,
       f"two declarators refused, naming the declaration (rc {rc}: {err.strip()})")
rc, err, _ = transform("__global__ void k() {\n  // __shared__ float a[4], b[4]; (a comment)\n}\n")
expect(rc == 0, f"a comment is not a declaration (rc {rc}: {err.strip()})")
print(f"transform.py's __shared__ rewrite: {failures} failures")
sys.exit(1 if failures else 0)
