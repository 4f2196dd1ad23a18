"""Seconds per training epoch of the article's network, against PyTorch and the roofline.

The workload: 60,000 synthetic samples of 784 float32 features and 10 classes,
the 784-256-64-10 sigmoid network with softmax + cross-entropy, batch 128,
plain SGD.  One sample costs about 905 kFLOP per step (forward 435 k, weight
gradients 435 k, input gradients of the upper layers 34 k), so an epoch is
about 54 GFLOP; the roofline is that work at the float32 matrix-product peak
measured on this machine in this run.

Each engine runs in its own child process, so its peak RSS is its own and the
two do not share BLAS thread pools.  Figures only: nothing here asserts a time.

    python benchmarks/bench_epoch.py            # a table
    python benchmarks/bench_epoch.py --json     # one JSON object
    python benchmarks/bench_epoch.py --smoke    # a tiny run that checks the script works
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

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


def run_numpy(n: int, epochs: int) -> dict:
    from backprop.nn.network import MLP
    from backprop.nn.optimizers import optim_config
    from backprop.nn.training import TrainConfig, train

    X, y = synthetic(n)
    rng = np.random.default_rng(0)
    net = MLP(list(LAYERS), "sigmoid", "softmax", "cross_entropy", "float32", rng=rng)
    config = TrainConfig(epochs=epochs, batch_size=128)
    history = train(net, X, y, config, optim_config(name="sgd", lr=0.1), rng)
    return {
        "epoch_seconds": [m.seconds for m in history.epochs],
        "final_loss": history.epochs[-1].train_loss,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_torch(n: int, epochs: int) -> dict:
    import torch

    torch.manual_seed(0)
    X_np, y_np = synthetic(n)
    X, y = torch.from_numpy(X_np), torch.from_numpy(y_np)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256),
        torch.nn.Sigmoid(),
        torch.nn.Linear(256, 64),
        torch.nn.Sigmoid(),
        torch.nn.Linear(64, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds, loss = [], None
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(n)
        for i in range(0, n, 128):
            idx = order[i : i + 128]
            loss = loss_fn(model(X[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return {
        "epoch_seconds": seconds,
        "final_loss": float(loss),
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }


def in_child(engine: str, n: int, epochs: int) -> dict | None:
    """Run one engine in a fresh interpreter; None if it cannot be imported there."""
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            engine,
            "--samples",
            str(n),
            "--epochs",
            str(epochs),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode == 3:
        return None
    if result.returncode != 0:
        sys.exit(f"bench_epoch: the {engine} run failed:\n{result.stderr}")
    return json.loads(result.stdout)


def median_after_warmup(seconds: list[float]) -> float:
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--epochs", type=int, default=5, help="epochs per engine, the first a warm-up (default 5)"
    )
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 2,048 samples, 2 epochs")
    parser.add_argument("--worker", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        try:
            runner = run_torch if args.worker == "torch" else run_numpy
            print(json.dumps(runner(args.samples, args.epochs)))
        except ImportError:
            sys.exit(3)
        return

    if args.smoke:
        args.samples, args.epochs = 2048, 2
    if args.epochs < 2 and not args.smoke:
        parser.error("--epochs must be at least 2: the first epoch is a warm-up")

    ours = in_child("numpy", args.samples, args.epochs)
    theirs = in_child("torch", args.samples, args.epochs)
    peak = matmul_peak_gflops(512 if args.smoke else 2048, 3 if args.smoke else 7)
    floor = gemm_floor_seconds(args.samples, 2 if args.smoke else 5)

    seconds = median_after_warmup(ours["epoch_seconds"])
    work = flops_per_sample() * args.samples / 1e9
    torch_seconds = median_after_warmup(theirs["epoch_seconds"]) if theirs else None
    report = {
        "samples": args.samples,
        "epochs": args.epochs,
        "seconds_per_epoch": seconds,
        "torch_seconds_per_epoch": torch_seconds,
        "ratio_vs_torch": seconds / torch_seconds if torch_seconds else None,
        "gflops": work / seconds,
        "peak_gflops": peak,
        "roofline_seconds": work / peak,
        "roofline_fraction": (work / peak) / seconds,
        "gemm_floor_seconds": floor,
        "gemm_floor_fraction": floor / seconds,
        "peak_rss_mb": ours["peak_rss_mb"],
        "torch_peak_rss_mb": theirs["peak_rss_mb"] if theirs else None,
        "final_loss": ours["final_loss"],
        "torch_final_loss": theirs["final_loss"] if theirs else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.samples} samples x 784 features, 784-256-64-10 sigmoid, batch 128, SGD")
    print(f"median of {args.epochs - 1} epochs after a warm-up")
    print(
        f"  backprop (NumPy)  {seconds:7.3f} s/epoch  {report['gflops']:6.1f} GFLOP/s  "
        f"peak RSS {report['peak_rss_mb']:6.0f} MB"
    )
    if theirs:
        print(
            f"  PyTorch CPU       {torch_seconds:7.3f} s/epoch  "
            f"{work / torch_seconds:6.1f} GFLOP/s  peak RSS {theirs['peak_rss_mb']:6.0f} MB  "
            f"({theirs['threads']} threads)"
        )
        print(f"  ratio backprop / PyTorch: {report['ratio_vs_torch']:.2f}")
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
