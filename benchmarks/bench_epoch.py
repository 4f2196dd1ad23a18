"""Seconds per training epoch of the article's network, against PyTorch and the roofline.

The workload: 60,000 synthetic samples of 784 float32 features and 10 classes,
the 784-256-64-10 sigmoid network with softmax + cross-entropy, batch 128,
plain SGD.  One sample costs about 905 kFLOP per step (forward 435 k, weight
gradients 435 k, input gradients of the upper layers 34 k), so an epoch is
about 54 GFLOP; the roofline is that work at the float32 matrix-product peak
measured on this machine in this run.

Each engine runs in its own child process, so its peak RSS is its own and the
two do not share BLAS thread pools.  Both children stay up for the whole run and
train one epoch at a time when told to: after one warm-up epoch each, the two
engines' epochs are interleaved (backprop, PyTorch, then PyTorch, backprop...,
see ``interleave.py``), one round an epoch of each, so that both see the same
load of this shared machine.  Reported: the median epoch of each engine and the
median of the per-round ratios backprop / PyTorch with its spread (IQR and
min-max).  Figures only: nothing here asserts a time.

    python benchmarks/bench_epoch.py            # a table: 6 rounds after a warm-up
    python benchmarks/bench_epoch.py --json     # one JSON object
    python benchmarks/bench_epoch.py --smoke    # a tiny run that checks the script works
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleave  # noqa: E402

LAYERS = (784, 256, 64, 10)


def flops_per_sample(layers=LAYERS) -> int:
    """Multiply-adds x 2 of the forward pass, the weight gradients and the input
    gradients of every layer but the first."""
    pairs = list(zip(layers[:-1], layers[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    weight_grads = sum(2 * a * b for a, b in pairs)
    input_grads = sum(2 * a * b for a, b in pairs[1:])
    return forward + weight_grads + input_grads


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, LAYERS[0]), dtype=np.float32)
    y = rng.integers(0, LAYERS[-1], n)
    return X, y


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak_gflops(n: int, repeats: int) -> float:
    """Best float32 GFLOP/s of an n x n matrix product (NumPy's BLAS, all its threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def gemm_floor_seconds(n: int, repeats: int) -> float:
    """Seconds per epoch of just the matrix products of training, timed in isolation.

    The eight products of one batch of 128 (three forward, three weight
    updates, two input gradients) at the network's own shapes, through the
    engine's gemm, hot in cache, times the number of batches: what an epoch
    would cost if everything else were free.
    """
    from backprop.nn.gemm import gemm

    rng = np.random.default_rng(0)
    batch = 128
    acts = [rng.random((batch, size), dtype=np.float32) for size in LAYERS]
    weights = [rng.random((a, b), dtype=np.float32) for a, b in zip(LAYERS[:-1], LAYERS[1:])]

    def one_batch():
        for i, w in enumerate(weights):
            gemm(acts[i + 1], acts[i], w, 1.0, 0.0)
        for i in range(len(weights) - 1, -1, -1):
            gemm(weights[i], acts[i].T, acts[i + 1], -1e-12, 1.0)
            if i > 0:
                gemm(acts[i], acts[i + 1], weights[i].T)

    for _ in range(20):
        one_batch()
    best = min(_timed(lambda: [one_batch() for _ in range(50)]) / 50 for _ in range(repeats))
    return best * -(-n // batch)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class NumpyEngine:
    """backprop's network, trained one epoch per call."""

    def __init__(self, n: int) -> None:
        from backprop.nn.network import MLP
        from backprop.nn.optimizers import optim_config
        from backprop.nn.training import TrainConfig

        self.X, self.y = synthetic(n)
        self.rng = np.random.default_rng(0)
        self.net = MLP(list(LAYERS), "sigmoid", "softmax", "cross_entropy", "float32", rng=self.rng)
        self.config = TrainConfig(epochs=1, batch_size=128)
        self.optim = optim_config(name="sgd", lr=0.1)
        self.loss: float | None = None

    def epoch(self) -> float:
        from backprop.nn.training import train

        history = train(self.net, self.X, self.y, self.config, self.optim, self.rng)
        self.loss = history.epochs[-1].train_loss
        return history.epochs[-1].seconds

    def summary(self) -> dict:
        return {"final_loss": self.loss, "peak_rss_mb": peak_rss_mb()}


class TorchEngine:
    """The same network in PyTorch, trained one epoch per call."""

    def __init__(self, n: int) -> None:
        import torch

        self.torch = torch
        torch.manual_seed(0)
        X_np, y_np = synthetic(n)
        self.n, self.X, self.y = n, torch.from_numpy(X_np), torch.from_numpy(y_np)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(784, 256),
            torch.nn.Sigmoid(),
            torch.nn.Linear(256, 64),
            torch.nn.Sigmoid(),
            torch.nn.Linear(64, 10),
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.loss: float | None = None

    def epoch(self) -> float:
        start = time.perf_counter()
        order = self.torch.randperm(self.n)
        for i in range(0, self.n, 128):
            idx = order[i : i + 128]
            loss = self.loss_fn(self.model(self.X[idx]), self.y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        seconds = time.perf_counter() - start
        self.loss = float(loss)
        return seconds

    def summary(self) -> dict:
        return {
            "final_loss": self.loss,
            "peak_rss_mb": peak_rss_mb(),
            "threads": self.torch.get_num_threads(),
        }


def serve(engine: str, n: int) -> None:
    """The child: set up, then one epoch per ``epoch`` line on stdin, a summary on ``end``."""
    try:
        worker = TorchEngine(n) if engine == "torch" else NumpyEngine(n)
    except ImportError:
        sys.exit(3)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "epoch":
            print(json.dumps({"seconds": worker.epoch()}), flush=True)
        else:
            print(json.dumps(worker.summary()), flush=True)
            return


class Child:
    """An engine in a fresh interpreter, kept up between epochs."""

    def __init__(self, engine: str, n: int) -> None:
        self.engine = engine
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", engine, "--samples", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.available = self._read() == "ready"

    def _read(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            status = self.process.wait()
            if status == 3:  # cannot import the engine
                return ""
            sys.exit(f"bench_epoch: the {self.engine} run failed:\n{self.process.stderr.read()}")
        return line.strip()

    def _ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self._read())

    def epoch(self) -> float:
        return self._ask("epoch")["seconds"]

    def end(self) -> dict:
        summary = self._ask("end")
        self.process.wait()
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=7,
        help="epochs per engine, the first a warm-up, the others one interleaved round each "
        "(default 7: 6 rounds)",
    )  # fmt: skip
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run: 2,048 samples, 4 epochs (3 rounds)"
    )
    parser.add_argument("--worker", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        serve(args.worker, args.samples)
        return

    if args.smoke:
        args.samples, args.epochs = 2048, 4
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is a warm-up")

    ours, theirs = Child("numpy", args.samples), Child("torch", args.samples)
    if not theirs.available:
        theirs = None
    rounds = args.epochs - 1
    if theirs:
        compared = interleave({"backprop": ours.epoch, "torch": theirs.epoch}, rounds, warmup=1)
        seconds, torch_seconds = compared.median("backprop"), compared.median("torch")
        ratio, spread = compared.ratio, compared.spread
    else:
        ours.epoch()  # the warm-up
        compared, torch_seconds, ratio, spread = None, None, None, None
        seconds = sorted(ours.epoch() for _ in range(rounds))[rounds // 2]
    mine, others = ours.end(), theirs.end() if theirs else None
    peak = matmul_peak_gflops(512 if args.smoke else 2048, 3 if args.smoke else 7)
    floor = gemm_floor_seconds(args.samples, 2 if args.smoke else 5)

    work = flops_per_sample() * args.samples / 1e9
    report = {
        "samples": args.samples,
        "epochs": args.epochs,
        "rounds": rounds,
        "seconds_per_epoch": seconds,
        "torch_seconds_per_epoch": torch_seconds,
        "ratio_vs_torch": ratio,  # the median of the per-round ratios
        "ratio_vs_torch_spread": spread,
        "interleaved": compared.as_dict() if compared else None,
        "gflops": work / seconds,
        "peak_gflops": peak,
        "roofline_seconds": work / peak,
        "roofline_fraction": (work / peak) / seconds,
        "gemm_floor_seconds": floor,
        "gemm_floor_fraction": floor / seconds,
        "peak_rss_mb": mine["peak_rss_mb"],
        "torch_peak_rss_mb": others["peak_rss_mb"] if others else None,
        "final_loss": mine["final_loss"],
        "torch_final_loss": others["final_loss"] if others else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.samples} samples x 784 features, 784-256-64-10 sigmoid, batch 128, SGD")
    print(f"one warm-up epoch each, then {rounds} rounds of one epoch each, interleaved")
    print(
        f"  backprop (NumPy)  {seconds:7.3f} s/epoch  {report['gflops']:6.1f} GFLOP/s  "
        f"peak RSS {report['peak_rss_mb']:6.0f} MB"
    )
    if others:
        print(
            f"  PyTorch CPU       {torch_seconds:7.3f} s/epoch  "
            f"{work / torch_seconds:6.1f} GFLOP/s  peak RSS {others['peak_rss_mb']:6.0f} MB  "
            f"({others['threads']} threads)"
        )
        print(
            f"  ratio backprop / PyTorch: median {ratio:.2f} over {rounds} rounds "
            f"(IQR {spread['q1']:.2f}-{spread['q3']:.2f}, "
            f"min-max {spread['min']:.2f}-{spread['max']:.2f})"
        )
    else:
        print("  PyTorch CPU       not installed (pip install torch==2.13.0)")
    print(
        f"  matmul peak {peak:.1f} GFLOP/s (2048 x 2048) -> roofline "
        f"{report['roofline_seconds']:.3f} s/epoch; backprop reaches "
        f"{100 * report['roofline_fraction']:.0f}% of it"
    )
    print(
        f"  the epoch's own matrix products alone, hot in cache: {floor:.3f} s/epoch "
        f"({100 * report['gemm_floor_fraction']:.0f}% of backprop's epoch)"
    )


if __name__ == "__main__":
    main()
