"""Test accuracy on the embedded digits over 5 split seeds, against scikit-learn.

For each split seed the pipeline's own functions prepare the data (stratified
70/15/15, min-max scaling fitted on train) and train two configurations
composed from conf/: the default (the article's sigmoid network) and the relu
preset (``model=relu optim=adam``).  scikit-learn's MLPClassifier with the same
hidden sizes and activation trains on the very same training rows and is
scored on the very same test rows.  Settings were chosen on validation
accuracy; the test split only reports.

    python benchmarks/bench_accuracy.py [--seeds 5] [--json]
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

PRESETS = {
    "default (sigmoid, sgd)": ([], "logistic"),
    "relu preset (relu, adam)": (["model=relu", "optim=adam"], "relu"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from backprop.app.compose import compose_config
    from backprop.nn.network import one_hot
    from backprop.pipeline.stages.digits import write_digits
    from backprop.pipeline.stages.preprocess import preprocess
    from backprop.pipeline.stages.train import train

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = write_digits(tmp / "digits.csv")
        for seed in range(args.seeds):
            for name, (overrides, sk_activation) in PRESETS.items():
                config = compose_config([*overrides, f"preprocess.seed={seed}"])
                prepared_dir = tmp / f"prepared-{seed}"
                preprocess(config, csv=csv, prepared=prepared_dir)
                start = time.perf_counter()
                trained = train(config, prepared=prepared_dir, model=tmp / "model",
                                reports=tmp / "reports", progress=False)  # fmt: skip
                seconds = time.perf_counter() - start
                p = trained.prepared
                _, outputs = trained.network.evaluate(
                    np.ascontiguousarray(p.X["test"]), one_hot(p.y["test"], len(p.classes))
                )
                ours = float((outputs.argmax(1) == p.y["test"]).mean())
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    start = time.perf_counter()
                    clf = MLPClassifier(
                        tuple(config.model.hidden_sizes), activation=sk_activation, random_state=0
                    ).fit(p.X["train"], p.y["train"])
                    sk_seconds = time.perf_counter() - start
                theirs = float(clf.score(p.X["test"], p.y["test"]))
                row = results.setdefault(name, {"backprop": [], "sklearn": [], "s": [], "sk_s": []})
                row["backprop"].append(ours)
                row["sklearn"].append(theirs)
                row["s"].append(seconds)
                row["sk_s"].append(sk_seconds)

    report = {
        name: {
            "backprop_mean_accuracy": statistics.mean(r["backprop"]),
            "sklearn_mean_accuracy": statistics.mean(r["sklearn"]),
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
    print(f"embedded digits, stratified 70/15/15, {args.seeds} split seeds, test accuracy")
    for name, r in report.items():
        verdict = "ok" if r["backprop_mean_accuracy"] >= r["sklearn_mean_accuracy"] else "BELOW"
        print(
            f"  {name:26s} backprop {r['backprop_mean_accuracy']:.4f} "
            f"({r['backprop_seconds']:.1f} s)   scikit-learn {r['sklearn_mean_accuracy']:.4f} "
            f"({r['sklearn_seconds']:.1f} s)   {verdict}"
        )


if __name__ == "__main__":
    main()
