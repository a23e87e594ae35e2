#!/usr/bin/env python3
"""The tutorial's MLP in JAX, the way JAX runs it fastest: a race contender (profiling/race.py).

784-128-64-10, ReLU, dropout 0.2, softmax cross-entropy, Adam (lr 1e-3, β 0.9/0.999, ε 1e-7 as
Keras), Glorot-uniform weights and zero biases, the Keras split (the last 20 % of the training
set held out), reshuffled every epoch. Data resident on the device as uint8. ONE jitted function
per epoch: the epoch's permutation, a lax.scan over its full-batch steps (gather, forward with
dropout, loss, gradient, Adam) and the last, partial batch; ONE jitted function for validation
(all 12,000 rows at once) and one for the test set. Metrics stay on the device until the epoch's
end. --precision sets jax_default_matmul_precision: "default" (on NVIDIA GPUs XLA may then run
float32 matmuls with TF32 tensor cores) or "highest" (true float32, as the engine computes).

An epoch's time is training + validation wall time, as mnist_cuda's report.json "seconds"; the
record (--json) has race.py's schema: ms_per_epoch (median, first epoch excluded), us_per_step,
samples_per_s, test_acc, test_loss, epochs, batch_size, device.

  python3 profiling/jax_mnist.py --data data/mnist --batch-size 128 --epochs 5 --precision highest
"""

import argparse
import gzip
import json
import os
import statistics
import struct
import sys
import time


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path}: not a uint8 IDX file")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return raw[4 + 4 * ndim:], dims


def find(data_dir, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"--data {data_dir}: no {stem}[.gz]")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-split", type=float, default=0.2)
    p.add_argument("--precision", choices=["default", "high", "highest"], default="default")
    p.add_argument("--json", metavar="FILE", help="write the result record here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.batch_size < 1 or not 0 < a.val_split < 1:
        p.error("--epochs and --batch-size must be >= 1, --val-split in (0, 1)")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import jax
        import jax.numpy as jnp
        import numpy as np
    except ImportError as e:
        print(f"jax_mnist: jax is not importable ({e}); it runs on the GPU machines", file=sys.stderr)
        return 3
    if a.precision != "default":
        jax.config.update("jax_default_matmul_precision", a.precision)

    def load(kind):
        img, d = read_idx(find(a.data, f"{kind}-images-idx3-ubyte"))
        lab, _ = read_idx(find(a.data, f"{kind}-labels-idx1-ubyte"))
        return np.frombuffer(img, np.uint8).reshape(d[0], d[1] * d[2]), np.frombuffer(lab, np.uint8).astype(np.int32)

    x_all, y_all = load("train")
    x_test, y_test = load("t10k")
    n_train = int(round(len(x_all) * (1 - a.val_split)))
    B = min(a.batch_size, n_train)
    full, rem = n_train // B, n_train % B
    steps = full + (1 if rem else 0)
    dev = jax.devices()[0]
    xs, ys = jax.device_put(x_all[:n_train], dev), jax.device_put(y_all[:n_train], dev)
    xv, yv = jax.device_put(x_all[n_train:], dev), jax.device_put(y_all[n_train:], dev)
    xt, yt = jax.device_put(x_test, dev), jax.device_put(y_test, dev)

    sizes = [784, 128, 64, 10]
    key = jax.random.PRNGKey(a.seed)
    params = []
    for i in range(3):
        key, k = jax.random.split(key)
        lim = (6.0 / (sizes[i] + sizes[i + 1])) ** 0.5
        params.append((jax.random.uniform(k, (sizes[i], sizes[i + 1]), jnp.float32, -lim, lim),
                       jnp.zeros((sizes[i + 1],), jnp.float32)))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = (params, zeros, zeros, jnp.zeros((), jnp.int32))
    p_drop, b1, b2, eps = 0.2, 0.9, 0.999, 1e-7

    def forward(ps, x, key):
        h = x
        for i, (w, b) in enumerate(ps):
            h = h @ w + b
            if i < 2:
                h = jax.nn.relu(h)
                if key is not None:
                    key, k = jax.random.split(key)
                    keep = jax.random.bernoulli(k, 1 - p_drop, h.shape)
                    h = jnp.where(keep, h / (1 - p_drop), 0.0)
        return h

    def sums(logits, y):  # (Σ loss, Σ correct)
        lse = jax.nn.logsumexp(logits, axis=1)
        loss = lse - jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.sum(loss), jnp.sum(jnp.argmax(logits, axis=1) == y)

    def step(st, idx, key, lr):
        ps, m, v, t = st
        x = xs[idx].astype(jnp.float32) / 255.0
        y = ys[idx]

        def mean_loss(ps):
            s, c = sums(forward(ps, x, key), y)
            return s / idx.shape[0], (s, c)

        (_, (s, c)), g = jax.value_and_grad(mean_loss, has_aux=True)(ps)
        t = t + 1
        tf = t.astype(jnp.float32)
        alpha = lr * jnp.sqrt(1 - b2 ** tf) / (1 - b1 ** tf)
        m = jax.tree_util.tree_map(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
        v = jax.tree_util.tree_map(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
        ps = jax.tree_util.tree_map(lambda p_, m_, v_: p_ - alpha * m_ / (jnp.sqrt(v_) + eps), ps, m, v)
        return (ps, m, v, t), s, c

    @jax.jit
    def train_epoch(st, key, lr):
        kp, kd = jax.random.split(key)
        perm = jax.random.permutation(kp, n_train)

        def body(st, i):
            idx = jax.lax.dynamic_slice(perm, (i * B,), (B,))
            st, s, c = step(st, idx, jax.random.fold_in(kd, i), lr)
            return st, (s, c)

        st, (ls, cs) = jax.lax.scan(body, st, jnp.arange(full))
        loss, hits = jnp.sum(ls), jnp.sum(cs)
        if rem:
            st, s, c = step(st, perm[full * B:], jax.random.fold_in(kd, full), lr)
            loss, hits = loss + s, hits + c
        return st, loss, hits

    @jax.jit
    def evaluate(ps, x, y):
        return sums(forward(ps, x.astype(jnp.float32) / 255.0, None), y)

    history = []
    for e in range(a.epochs):
        key, k = jax.random.split(key)
        t0 = time.perf_counter()
        state, loss, hits = train_epoch(state, k, 1e-3)
        vloss, vhits = evaluate(state[0], xv, yv)
        loss, hits, vloss, vhits = float(loss), int(hits), float(vloss), int(vhits)  # waits for the device
        secs = time.perf_counter() - t0
        nv = len(x_all) - n_train
        history.append({"epoch": e + 1, "loss": loss / n_train, "accuracy": hits / n_train, "val_loss": vloss / nv,
                        "val_accuracy": vhits / nv, "seconds": secs})
        if not a.quiet:
            h = history[-1]
            print(f"epoch {e + 1}: loss {h['loss']:.4f} acc {h['accuracy']:.4f} val_loss {h['val_loss']:.4f} "
                  f"val_acc {h['val_accuracy']:.4f}  {secs * 1e3:.1f} ms", flush=True)
    tloss, thits = evaluate(state[0], xt, yt)
    test_loss, test_acc = float(tloss) / len(x_test), int(thits) / len(x_test)
    secs = [h["seconds"] for h in history]
    epoch_s = statistics.median(secs[1:] if len(secs) > 1 else secs)
    rec = {
        "contender": f"jax-{a.precision}", "ms_per_epoch": epoch_s * 1e3, "us_per_step": epoch_s * 1e6 / steps,
        "samples_per_s": n_train / epoch_s, "test_acc": test_acc, "test_loss": test_loss, "epochs": len(history),
        "batch_size": B, "jax": jax.__version__, "device": str(dev), "precision": a.precision,
        "steps_per_epoch": steps, "train_samples": n_train, "epoch_seconds": secs, "history": history,
    }
    print(f"Test Loss: {test_loss:.4f}  Test Accuracy: {100 * test_acc:.2f}%")
    print(f"{rec['contender']}: {rec['ms_per_epoch']:.1f} ms/epoch, {rec['us_per_step']:.1f} us/step, "
          f"{rec['samples_per_s']:.0f} samples/s", flush=True)
    if a.json:
        with open(a.json + ".part", "w") as f:
            json.dump(rec, f, indent=2)
        os.replace(a.json + ".part", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
