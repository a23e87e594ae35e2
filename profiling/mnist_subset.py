#!/usr/bin/env python3
"""Writes the first N training and M test images (and labels) of an MNIST directory as raw IDX.

    python3 profiling/mnist_subset.py SRC DST [N=300] [M=100]

SRC holds the four IDX files, raw or .gz; DST receives them raw. For runs that must be short and
still go through the whole pipeline (the sanitizer passes of gpu_suite.sh).
"""
import gzip
import os
import struct
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    n_train = int(argv[3]) if len(argv) > 3 else 300
    n_test = int(argv[4]) if len(argv) > 4 else 100
    os.makedirs(dst, exist_ok=True)
    for name, n in [("train-images-idx3-ubyte", n_train), ("train-labels-idx1-ubyte", n_train),
                    ("t10k-images-idx3-ubyte", n_test), ("t10k-labels-idx1-ubyte", n_test)]:
        path = os.path.join(src, name)
        if os.path.exists(path):
            data = open(path, "rb").read()
        elif os.path.exists(path + ".gz"):
            data = gzip.open(path + ".gz").read()
        else:
            print(f"mnist_subset.py: {path}(.gz) not found", file=sys.stderr)
            return 2
        dims = data[3]
        shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
        if n > shape[0]:
            print(f"mnist_subset.py: {name} has {shape[0]} items, fewer than {n}", file=sys.stderr)
            return 2
        item = 1
        for d in shape[1:]:
            item *= d
        body = 4 + 4 * dims
        with open(os.path.join(dst, name), "wb") as f:
            f.write(data[:4] + struct.pack(">I", n) + data[8:body] + data[body:body + n * item])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
