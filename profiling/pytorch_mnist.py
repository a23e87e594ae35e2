#!/usr/bin/env python3
"""The PyTorch peer that mnist_cuda races: the tutorial's Part 2, timed.

Model, loss, optimiser and callbacks are the tutorial's (MNISTClassifier 784-128-64-10 with ReLU
and Dropout 0.2, CrossEntropyLoss, Adam lr 1e-3, ReduceLROnPlateau(factor 0.5, patience 2), early
stopping on val_loss with patience 5, best weights restored for the test evaluation). What
differs between the modes is only how batches reach the model:

  tutorial  exactly the tutorial's loop: TensorDataset + DataLoader(shuffle=True), batches moved
            to the device each step, loss.item() and the accuracy .item() every step.
  resident  the data lives on the device as float tensors; one torch.randperm per epoch on the
            device, batches gathered by index; loss/accuracy accumulated on the device and read
            once per epoch. No host round trip inside an epoch.
  graph     resident + the whole training step (gather, forward, loss, backward, Adam step with
            capturable=True, metric accumulation) captured once into a torch.cuda.CUDAGraph and
            replayed; CUDA only. The partial last batch (when batch size does not divide the
            training set) runs eagerly on the same parameters and optimiser state.

Timing: each epoch is timed with time.perf_counter() between two device synchronisations and
covers training + validation (as mnist_cuda's report.json "seconds" does); data loading, model
construction, graph capture, the best-weights copy and the test evaluation are outside it.
ms_per_epoch is the median over epochs, the first excluded as warm-up when more than one ran.

  python3 profiling/pytorch_mnist.py --data data/mnist --device cpu --mode tutorial --epochs 2 \
      --threads 2 --json /tmp/pt.json

Only torch and the standard library are needed (numpy is not used).
"""

import argparse
import copy
import gzip
import json
import os
import platform
import statistics
import struct
import sys
import time
import warnings

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    from torch.utils.data import DataLoader, TensorDataset
except ImportError as e:  # the harness (race.py) turns this into a "skipped" line
    sys.stderr.write(f"pytorch_mnist: torch is not importable by {sys.executable}: {e}\n")
    sys.exit(3)


# ----------------------------------------------------------------------------------------------
# Data: MNIST IDX files, raw or gzipped, read with gzip + struct.

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(Exception):
    pass


def find_idx(data_dir, base):
    for path in (os.path.join(data_dir, base + ".gz"), os.path.join(data_dir, base)):
        if os.path.isfile(path):
            return path
    raise DataError(f"{data_dir}: missing {base} (or {base}.gz); fetch the data with apps/fetch_data.sh")


def read_idx(path, ndim):
    """Returns a uint8 tensor of the IDX file's shape. Checks the magic (0x0000 08 ndim: unsigned
    bytes, ndim dimensions) and that the payload has exactly prod(dims) bytes."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header")
    zero, dtype, nd = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path}: bad IDX magic 0x{raw[:4].hex()} (want 0x000008{ndim:02x}: unsigned bytes)")
    if nd != ndim:
        raise DataError(f"{path}: IDX file has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * nd, raw[4:header])
    count = 1
    for d in dims:
        count *= d
    if len(raw) - header != count:
        raise DataError(f"{path}: payload is {len(raw) - header} bytes, dims {dims} need {count}")
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def load_mnist(data_dir):
    """(x_train, y_train, x_test, y_test): float32 images in [0, 1] flattened to 784, int64 labels,
    as the tutorial's `reshape(60000, 784).astype('float32') / 255.0` and LongTensor."""
    if not os.path.isdir(data_dir):
        raise DataError(f"--data {data_dir}: no such directory; fetch the data with apps/fetch_data.sh")
    t = {k: read_idx(find_idx(data_dir, v), 3 if k.endswith("images") else 1) for k, v in IDX_FILES.items()}
    out = []
    for split in ("train", "test"):
        img, lab = t[split + "_images"], t[split + "_labels"]
        if img.shape[0] != lab.shape[0]:
            raise DataError(f"{data_dir}: {split} has {img.shape[0]} images but {lab.shape[0]} labels")
        if int(lab.max()) > 9:
            raise DataError(f"{data_dir}: {split} labels outside 0..9")
        out.append(img.reshape(img.shape[0], -1).to(torch.float32) / 255.0)
        out.append(lab.to(torch.int64))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# The tutorial's model.

class MNISTClassifier(nn.Module):
    def __init__(self, input_size=784, hidden_sizes=(128, 64), num_classes=10, dropout=0.2):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_sizes[0])
        self.dropout1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_sizes[0], hidden_sizes[1])
        self.dropout2 = nn.Dropout(dropout)
        self.fc3 = nn.Linear(hidden_sizes[1], num_classes)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.dropout1(x)
        x = F.relu(self.fc2(x))
        x = self.dropout2(x)
        return self.fc3(x)


# ----------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mnist", help="directory of the four MNIST IDX files (raw or .gz)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="default: cuda when torch sees a GPU, else cpu")
    p.add_argument("--mode", choices=["tutorial", "resident", "graph"], default="tutorial")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-split", type=float, default=0.2, help="fraction of the training set held out")
    p.add_argument("--split", choices=["random", "keras"], default="random",
                   help="random: torch.utils.data.random_split as the tutorial; keras: the last fraction")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads(N) (0: torch's default)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience (the tutorial's 5)")
    p.add_argument("--no-early-stop", action="store_true", help="run every epoch (the race uses this)")
    p.add_argument("--graph-steps", type=int, default=1,
                   help="graph mode: training steps per captured graph (1 = one replay per step)")
    p.add_argument("--fused-adam", action="store_true", help="Adam(fused=True) instead of the default")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (off by default, as in PyTorch)")
    p.add_argument("--json", metavar="FILE", help="write the result record here")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.batch_size < 1 or not (0.0 < a.val_split < 1.0) or a.graph_steps < 1:
        p.error("--epochs, --batch-size and --graph-steps must be >= 1 and --val-split in (0, 1)")
    return a


def split_indices(n, val_split, how, seed):
    """Train and validation indices. random: what torch.utils.data.random_split returns for
    [train_size, val_size] with a generator seeded by `seed`; keras: the last val_size samples."""
    val_size = int(val_split * n)
    train_size = n - val_size
    if how == "keras":
        return torch.arange(train_size), torch.arange(train_size, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:train_size], perm[train_size:]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


class Trainer:
    """The tutorial's training loop, with the batch delivery chosen by --mode."""

    def __init__(self, args, device, data):
        self.args, self.device = args, device
        x_train, y_train, self.x_test, self.y_test = data
        train_idx, val_idx = split_indices(x_train.shape[0], args.val_split, args.split, args.seed)
        self.train_n, self.val_n = len(train_idx), len(val_idx)
        self.notes = []

        self.model = MNISTClassifier(input_size=784, hidden_sizes=[128, 64], num_classes=10).to(device)
        self.criterion = nn.CrossEntropyLoss()
        opt_kw = {}
        if args.mode == "graph":
            # Adam's step must be capturable (its step count lives on the device), and the learning
            # rate must be a device tensor too: a float would be baked into the graph at capture
            # and ReduceLROnPlateau's changes would never reach the replays.
            self.lr_tensor = torch.tensor(1e-3, dtype=torch.float32, device=device)
            opt_kw = dict(capturable=True, lr=self.lr_tensor)
        else:
            opt_kw = dict(lr=0.001)
        if args.fused_adam:
            opt_kw["fused"] = True
        self.optimizer = optim.Adam(self.model.parameters(), **opt_kw)
        self.scheduler = optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="min", factor=0.5, patience=2)

        if args.mode == "tutorial":
            # The tutorial: TensorDataset over CPU tensors, random_split, DataLoader(shuffle=True).
            train_dataset = TensorDataset(x_train, y_train)
            train_subset = torch.utils.data.Subset(train_dataset, train_idx.tolist())
            val_subset = torch.utils.data.Subset(train_dataset, val_idx.tolist())
            self.train_loader = DataLoader(train_subset, batch_size=args.batch_size, shuffle=True)
            self.val_loader = DataLoader(val_subset, batch_size=args.batch_size, shuffle=False)
        else:
            self.x_tr = x_train[train_idx].to(device)
            self.y_tr = y_train[train_idx].to(device)
            self.x_va = x_train[val_idx].to(device)
            self.y_va = y_train[val_idx].to(device)
        self.test_loader = DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=args.batch_size,
                                      shuffle=False)
        self.steps_per_epoch = -(-self.train_n // args.batch_size)
        self.setup_s = 0.0
        if args.mode == "graph":
            # Warm-up steps run outside capture; Adam warns that capturable=True is slower there.
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            t0 = time.perf_counter()
            self._capture()
            self.setup_s = time.perf_counter() - t0

    # -- tutorial mode -------------------------------------------------------------------------
    def _train_epoch_tutorial(self):
        model, dev = self.model, self.device
        model.train()
        train_loss, train_correct, train_total = 0.0, 0, 0
        for batch_x, batch_y in self.train_loader:
            batch_x, batch_y = batch_x.to(dev), batch_y.to(dev)
            outputs = model(batch_x)
            loss = self.criterion(outputs, batch_y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            train_loss += loss.item()
            _, predicted = torch.max(outputs.data, 1)
            train_total += batch_y.size(0)
            train_correct += (predicted == batch_y).sum().item()
        return train_loss / len(self.train_loader), 100.0 * train_correct / train_total

    def _val_epoch_tutorial(self):
        model, dev = self.model, self.device
        model.eval()
        val_loss, val_correct, val_total = 0.0, 0, 0
        with torch.no_grad():
            for batch_x, batch_y in self.val_loader:
                batch_x, batch_y = batch_x.to(dev), batch_y.to(dev)
                outputs = model(batch_x)
                loss = self.criterion(outputs, batch_y)
                val_loss += loss.item()
                _, predicted = torch.max(outputs.data, 1)
                val_total += batch_y.size(0)
                val_correct += (predicted == batch_y).sum().item()
        return val_loss / len(self.val_loader), 100.0 * val_correct / val_total

    # -- resident mode -------------------------------------------------------------------------
    # Same arithmetic as the tutorial (train loss = mean of the batch means, val loss = mean of the
    # batch means), but the sums stay on the device until the epoch ends.
    def _step_eager(self, xb, yb, loss_acc, correct_acc):
        outputs = self.model(xb)
        loss = self.criterion(outputs, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        loss_acc.add_(loss.detach())
        correct_acc.add_((outputs.detach().argmax(1) == yb).sum())

    def _train_epoch_resident(self):
        self.model.train()
        B, dev = self.args.batch_size, self.device
        perm = torch.randperm(self.train_n, device=dev)
        loss_acc = torch.zeros((), dtype=torch.float32, device=dev)
        correct_acc = torch.zeros((), dtype=torch.int64, device=dev)
        for s in range(self.steps_per_epoch):
            idx = perm[s * B:(s + 1) * B]
            self._step_eager(self.x_tr.index_select(0, idx), self.y_tr.index_select(0, idx), loss_acc, correct_acc)
        return loss_acc.item() / self.steps_per_epoch, 100.0 * correct_acc.item() / self.train_n

    def _val_epoch_resident(self):
        self.model.eval()
        B, dev = self.args.batch_size, self.device
        nb = -(-self.val_n // B)
        loss_acc = torch.zeros((), dtype=torch.float32, device=dev)
        correct_acc = torch.zeros((), dtype=torch.int64, device=dev)
        with torch.no_grad():
            for s in range(nb):
                xb, yb = self.x_va[s * B:(s + 1) * B], self.y_va[s * B:(s + 1) * B]
                outputs = self.model(xb)
                loss_acc.add_(self.criterion(outputs, yb))
                correct_acc.add_((outputs.argmax(1) == yb).sum())
        return loss_acc.item() / nb, 100.0 * correct_acc.item() / self.val_n

    # -- graph mode ----------------------------------------------------------------------------
    def _capture(self):
        """Captures K = --graph-steps training steps into one graph (and, when the full batches
        per epoch are not a multiple of K, a one-step graph for the rest). The step reads its
        batch indices from a device-side permutation at a device-side step counter, so a replay
        needs no host-to-device copy at all."""
        args, dev, model = self.args, self.device, self.model
        B = args.batch_size
        self.full_steps = self.train_n // B
        self.tail = self.train_n - self.full_steps * B
        if self.full_steps == 0:
            raise SystemExit("pytorch_mnist: --mode graph needs at least one full batch")
        K = min(args.graph_steps, self.full_steps)
        self.K = K
        self.perm_buf = torch.zeros(self.train_n, dtype=torch.int64, device=dev)
        self.perm_steps = self.perm_buf[:self.full_steps * B].view(self.full_steps, B)
        self.counter = torch.zeros(1, dtype=torch.int64, device=dev)
        self.g_loss = torch.zeros((), dtype=torch.float32, device=dev)
        self.g_correct = torch.zeros((), dtype=torch.int64, device=dev)

        def step_body():
            idx = self.perm_steps.index_select(0, self.counter).view(-1)
            xb, yb = self.x_tr.index_select(0, idx), self.y_tr.index_select(0, idx)
            self.optimizer.zero_grad(set_to_none=True)
            outputs = model(xb)
            loss = self.criterion(outputs, yb)
            loss.backward()
            self.optimizer.step()
            self.g_loss.add_(loss.detach())
            self.g_correct.add_((outputs.detach().argmax(1) == yb).sum())
            self.counter.add_(1)

        # Warm-up steps (side stream, as the CUDA-graphs recipe asks) create Adam's state; they are
        # real updates, so parameters and state are restored afterwards and training starts fresh.
        saved = [p.detach().clone() for p in model.parameters()]
        model.train()
        self.perm_buf.copy_(torch.randperm(self.train_n, device=dev))
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(min(3, self.full_steps)):
                step_body()
        torch.cuda.current_stream().wait_stream(s)

        self.graphs = {}
        for k in sorted({K, 1 if self.full_steps % K else K}):
            self.counter.zero_()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for _ in range(k):
                    step_body()
            self.graphs[k] = g
        torch.cuda.synchronize()

        with torch.no_grad():
            for p, v in zip(model.parameters(), saved):
                p.copy_(v)
            for st in self.optimizer.state.values():
                for v in st.values():
                    if torch.is_tensor(v):
                        v.zero_()
        self.counter.zero_()
        self.g_loss.zero_()
        self.g_correct.zero_()
        torch.cuda.synchronize()
        if self.tail:
            self.notes.append(f"graph mode: the last batch of {self.tail} samples runs eagerly each epoch")
        if K > 1:
            self.notes.append(f"graph mode: {K} steps per graph replay")

    def _train_epoch_graph(self):
        self.model.train()
        B, dev = self.args.batch_size, self.device
        self.perm_buf.copy_(torch.randperm(self.train_n, device=dev))
        self.counter.zero_()
        self.g_loss.zero_()
        self.g_correct.zero_()
        done = 0
        while done < self.full_steps:
            k = self.K if self.full_steps - done >= self.K else 1
            self.graphs[k].replay()
            done += k
        if self.tail:
            idx = self.perm_buf[self.full_steps * B:]
            self._step_eager(self.x_tr.index_select(0, idx), self.y_tr.index_select(0, idx), self.g_loss,
                             self.g_correct)
        return self.g_loss.item() / self.steps_per_epoch, 100.0 * self.g_correct.item() / self.train_n

    # -- the epoch loop (the tutorial's, plus timing) ------------------------------------------
    def set_lr_after_scheduler(self):
        """The captured graph reads the learning rate from self.lr_tensor. Newer schedulers fill
        a tensor lr in place; older ones put a float (or a new tensor) in its stead: copy that
        value into the captured tensor and put the tensor back."""
        g = self.optimizer.param_groups[0]
        if self.args.mode == "graph" and g["lr"] is not self.lr_tensor:
            self.lr_tensor.fill_(float(g["lr"]))
            g["lr"] = self.lr_tensor

    def fit(self):
        a = self.args
        train_epoch = {"tutorial": self._train_epoch_tutorial, "resident": self._train_epoch_resident,
                       "graph": self._train_epoch_graph}[a.mode]
        val_epoch = self._val_epoch_tutorial if a.mode == "tutorial" else self._val_epoch_resident
        best_val_loss, patience_counter = float("inf"), 0
        best_state = None
        history, self.stopped_early = [], False
        for epoch in range(a.epochs):
            lr_used = float(self.optimizer.param_groups[0]["lr"])
            sync(self.device)
            c0 = time.process_time()
            t0 = time.perf_counter()
            train_loss, train_acc = train_epoch()
            sync(self.device)
            t1 = time.perf_counter()
            val_loss, val_acc = val_epoch()
            sync(self.device)
            t2 = time.perf_counter()
            c2 = time.process_time()
            # cpu_seconds: this process's CPU time (all threads) over the epoch; on a shared machine it
            # is less disturbed by other processes than wall time (with 1 thread it approximates the
            # wall time an idle machine would give).
            history.append(dict(epoch=epoch + 1, loss=train_loss, accuracy=train_acc / 100.0, val_loss=val_loss,
                                val_accuracy=val_acc / 100.0, lr=lr_used, seconds=t2 - t0, train_seconds=t1 - t0,
                                cpu_seconds=c2 - c0))
            self.scheduler.step(val_loss)
            self.set_lr_after_scheduler()
            stop = False
            if val_loss < best_val_loss:
                best_val_loss, patience_counter = val_loss, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                patience_counter += 1
                if not a.no_early_stop and patience_counter >= a.patience:
                    stop = True
            if not a.quiet:
                print(f"Epoch {epoch + 1}/{a.epochs}: Train Loss: {train_loss:.4f}, Train Acc: {train_acc:.2f}% | "
                      f"Val Loss: {val_loss:.4f}, Val Acc: {val_acc:.2f}% | LR: {lr_used:.6f} | "
                      f"{t2 - t0:.3f} s (train {t1 - t0:.3f} s, cpu {c2 - c0:.3f} s)", flush=True)
            if stop:
                print(f"Early stopping at epoch {epoch + 1}", flush=True)
                self.stopped_early = True
                break
        if best_state is not None:  # in place: graph mode's captured kernels point at the parameters
            with torch.no_grad():
                for k, v in self.model.state_dict().items():
                    v.copy_(best_state[k])
        return history

    def evaluate_test(self):
        self.model.eval()
        test_loss, test_correct, test_total = 0.0, 0, 0
        with torch.no_grad():
            for batch_x, batch_y in self.test_loader:
                batch_x, batch_y = batch_x.to(self.device), batch_y.to(self.device)
                outputs = self.model(batch_x)
                test_loss += self.criterion(outputs, batch_y).item()
                _, predicted = torch.max(outputs.data, 1)
                test_total += batch_y.size(0)
                test_correct += (predicted == batch_y).sum().item()
        return test_loss / len(self.test_loader), test_correct / test_total


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.stderr.write(f"pytorch_mnist: --device cuda but torch {torch.__version__} sees no CUDA device\n")
        return 4
    if args.mode == "graph" and args.device != "cuda":
        sys.stderr.write("pytorch_mnist: --mode graph needs --device cuda (CUDA graphs)\n")
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    try:
        data = load_mnist(args.data)
    except DataError as e:
        sys.stderr.write(f"pytorch_mnist: {e}\n")
        return 1

    dname = device_name(device)
    if not args.quiet:
        print(f"PyTorch {torch.__version__} on {args.device} ({dname}), mode {args.mode}, batch {args.batch_size}, "
              f"threads {torch.get_num_threads()}", flush=True)
    trainer = Trainer(args, device, data)
    history = trainer.fit()
    test_loss, test_acc = trainer.evaluate_test()

    secs = [h["seconds"] for h in history]
    tsecs = [h["train_seconds"] for h in history]
    csecs = [h["cpu_seconds"] for h in history]
    measured = secs[1:] if len(secs) > 1 else secs
    tmeasured = tsecs[1:] if len(tsecs) > 1 else tsecs
    epoch_s = statistics.median(measured)
    train_s = statistics.median(tmeasured)
    rec = {
        "contender": f"pytorch-{args.mode}-{args.device}",
        "ms_per_epoch": epoch_s * 1e3,
        "us_per_step": epoch_s * 1e6 / trainer.steps_per_epoch,
        "samples_per_s": trainer.train_n / epoch_s,
        "test_acc": test_acc,
        "test_loss": test_loss,
        "epochs": len(history),
        "batch_size": args.batch_size,
        "torch": torch.__version__,
        "device": dname,
        # Beyond the common schema:
        "mode": args.mode,
        "device_type": args.device,
        "epochs_requested": args.epochs,
        "stopped_early": trainer.stopped_early,
        "train_ms_per_epoch": train_s * 1e3,
        "train_us_per_step": train_s * 1e6 / trainer.steps_per_epoch,
        "cpu_ms_per_epoch": statistics.median(csecs[1:] if len(csecs) > 1 else csecs) * 1e3,
        "steps_per_epoch": trainer.steps_per_epoch,
        "train_samples": trainer.train_n,
        "val_samples": trainer.val_n,
        "threads": torch.get_num_threads(),
        "split": args.split,
        "seed": args.seed,
        "setup_s": trainer.setup_s,
        "epoch_seconds": secs,
        "history": history,
        "notes": trainer.notes,
    }
    print(f"Test Loss: {test_loss:.4f}  Test Accuracy: {100 * test_acc:.2f}%")
    print(f"{rec['contender']}: {rec['ms_per_epoch']:.1f} ms/epoch (median of {len(measured)}), "
          f"{rec['us_per_step']:.1f} us/step, {rec['samples_per_s']:.0f} samples/s", flush=True)
    for n in trainer.notes:
        print("note: " + n)
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        tmp = args.json + ".part"
        with open(tmp, "w") as f:
            json.dump(rec, f, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
