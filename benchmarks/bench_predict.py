"""``backprop predict`` on a 100,000 x 784 CSV: rows per second, against ``pandas.read_csv``.

Uses the synthetic MNIST-layout CSV of ``bench_preprocess.py`` and a model of
the seed's shape (784-256-64-10) whose scaler is fitted on it; the weights are
random, which does not change the work.  Each measurement runs in its own child
process (its own peak RSS), alternating, median of ``--repeats``.  The peer is
reading the same file whole with pandas, the least any prediction from a CSV
must do; the chunked prediction also writes 11 columns of results.

    python benchmarks/bench_predict.py [--rows N] [--json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_preprocess import FEATURES, in_child, median_run, peak_rss_mb, write_csv  # noqa: E402


def make_model(csv: Path, folder: Path) -> None:
    import numpy as np

    from backprop.nn.network import MLP
    from backprop.pipeline.model_files import save_model
    from backprop.tables.labels import encode_labels
    from backprop.tables.reader import read_labelled_csv
    from backprop.tables.scaling import MinMaxScaler

    data = read_labelled_csv(csv, "label")
    scaler = MinMaxScaler.fit(data.matrix())
    _, classes = encode_labels(data.labels)
    network = MLP([FEATURES, 256, 64, 10], rng=np.random.default_rng(0))
    save_model(
        folder, network, classes=classes,
        extra={"label_column": "label", "feature_names": data.feature_names,
               "scaler": scaler.to_dict()},
    )  # fmt: skip


def worker(kind: str, csv: str, model: str) -> dict:
    import pandas as pd

    if kind == "pandas":
        start = time.perf_counter()
        rows = len(pd.read_csv(csv))
        seconds = time.perf_counter() - start
    else:
        from backprop.app.predict import predict_csv

        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            rows = predict_csv(Path(model), csv, Path(out) / "p.csv", progress=False).rows
            seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, one repeat")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    if args.smoke:
        args.rows, args.repeats = 2000, 1

    csv = Path(tempfile.gettempdir()) / f"backprop-bench-{args.rows}x{FEATURES}.csv"
    if not csv.exists():
        print(f"writing {csv} ...", file=sys.stderr)
        write_csv(csv, args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        make_model(csv, model)
        plains, ourses = [], []
        for _ in range(args.repeats):
            plains.append(in_child(__file__, "pandas", str(csv), str(model)))
            ourses.append(in_child(__file__, "backprop", str(csv), str(model)))
    plain, ours = median_run(plains), median_run(ourses)
    assert ours["rows"] == plain["rows"] == args.rows
    report = {
        "rows": args.rows,
        "csv_mb": csv.stat().st_size / 2**20,
        "seconds": ours["seconds"],
        "rows_per_second": args.rows / ours["seconds"],
        "pandas_read_seconds": plain["seconds"],
        "ratio_vs_pandas_read": ours["seconds"] / plain["seconds"],
        "peak_rss_mb": ours["peak_rss_mb"],
        "pandas_peak_rss_mb": plain["peak_rss_mb"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.rows} x {FEATURES} CSV, {report['csv_mb']:.0f} MB, median of {args.repeats}")
    print(
        f"  backprop predict (chunks of 10,000)  {ours['seconds']:6.2f} s  "
        f"{report['rows_per_second']:8.0f} rows/s  peak RSS {ours['peak_rss_mb']:5.0f} MB"
    )
    print(
        f"  pandas.read_csv of the whole file    {plain['seconds']:6.2f} s  "
        f"{args.rows / plain['seconds']:8.0f} rows/s  peak RSS {plain['peak_rss_mb']:5.0f} MB"
    )
    print(f"  ratio predict / plain read: {report['ratio_vs_pandas_read']:.2f}")


if __name__ == "__main__":
    main()
