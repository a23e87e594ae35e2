#!/usr/bin/env python3
"""A mnist_cuda checkpoint, loaded by PyTorch into the tutorial's own MNISTClassifier.

  load_checkpoint.py CHECKPOINT REPORT_JSON DATA_DIR

Reads CHECKPOINT (safetensors: 8-byte little-endian header length, JSON header, raw data) with
the standard library and torch only, loads it with load_state_dict(strict=True) into the
tutorial's MNISTClassifier (profiling/pytorch_mnist.py, the class of the tutorial's Part 2),
evaluates the test set and compares with what mnist_cuda reported in REPORT_JSON for the same
weights. Exit 0 when they agree, 1 when not, 77 (skipped) when torch is not importable.

Agreement: loss within 1e-4 relative (float32 sums in another order); accuracy within one test
example (an argmax can flip only on a near-tie).
"""

import json
import os
import struct
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"SKIPPED: torch is not importable by {sys.executable} ({e})")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "profiling"))
from pytorch_mnist import MNISTClassifier, load_mnist  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors, meta = {}, header.pop("__metadata__", {})
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} has dtype {t['dtype']}, expected F32")
        begin, end = t["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32).reshape(t["shape"])
    return tensors, meta


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    ckpt, report_path, data_dir = sys.argv[1:]
    state, meta = read_safetensors(ckpt)
    with open(report_path) as f:
        report = json.load(f)
    model = MNISTClassifier()
    model.load_state_dict(state, strict=True)  # names and shapes must be exactly the tutorial's
    model.eval()
    _, _, x_test, y_test = load_mnist(data_dir)
    with torch.no_grad():
        logits = model(x_test)
        loss = F.cross_entropy(logits, y_test).item()
        acc = (logits.argmax(1) == y_test).float().mean().item()
    want_loss, want_acc = report["test_loss"], report["test_accuracy"]
    n = y_test.shape[0]
    print(f"tensors: {', '.join(f'{k} {list(v.shape)}' for k, v in state.items())}")
    print(f"PyTorch MNISTClassifier on {n} test images: loss {loss:.6f} accuracy {acc:.4f}")
    print(f"mnist_cuda report.json:                    loss {want_loss:.6f} accuracy {want_acc:.4f}")
    ok = abs(loss - want_loss) <= 1e-4 * abs(want_loss) and abs(acc - want_acc) * n <= 1.0 + 1e-6
    print("agree" if ok else "DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
