"""Load + split + scale of a 100,000 x 784 CSV, against a plain ``pandas.read_csv``.

Writes (once, then reuses) a synthetic CSV in the MNIST layout, ``label,pixel0,
...,pixel783``, of integer pixels 0..255, about a quarter of them non-zero
(about 200 MB).  Each measurement runs in its own child process, so each peak
RSS is its own; the two alternate, and the median of ``--repeats`` runs of
each is reported.  Figures only.

    python benchmarks/bench_preprocess.py [--rows N] [--json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = 784


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    table = np.array([str(i).encode() for i in range(256)], dtype=object)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as f:
        f.write(("label," + ",".join(f"pixel{i}" for i in range(FEATURES)) + "\n").encode())
        for start in range(0, rows, 5000):
            m = min(5000, rows - start)
            labels = rng.integers(0, 10, m)
            pixels = rng.integers(0, 256, (m, FEATURES)) * (rng.random((m, FEATURES)) < 0.25)
            block = np.concatenate([labels[:, None], pixels], axis=1)
            f.write(b"\n".join(b",".join(table[row]) for row in block) + b"\n")
    tmp.rename(path)


def peak_rss_mb() -> float:
    """This process's peak resident memory.  VmHWM, not ru_maxrss: Linux carries ru_maxrss
    over exec, so a child would report the peak of the parent it was forked from."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(kind: str, path: str) -> dict:
    if kind == "pandas":
        import pandas as pd

        start = time.perf_counter()
        frame = pd.read_csv(path)
        seconds = time.perf_counter() - start
        shape = frame.shape
    else:
        import pandas  # noqa: F401  imported before the clock starts, as for the plain read

        from backprop.pipeline.prepared import write_prepared
        from backprop.pipeline.stages.preprocess import prepare
        from backprop.tables.config import PreprocessConfig

        start = time.perf_counter()
        prepared = prepare(path, PreprocessConfig())
        seconds = time.perf_counter() - start
        shape = (sum(len(y) for y in prepared.y.values()), len(prepared.feature_names) + 1)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            write_prepared(prepared, Path(out) / "prepared")
            write_seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "write_seconds": write_seconds,
            "peak_rss_mb": peak_rss_mb(),
            "shape": shape,
        }
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "shape": list(shape)}


def in_child(script: str, kind: str, *args: str) -> dict:
    """``script --worker KIND ARGS`` in a fresh Python (its own peak RSS): its JSON report."""
    result = subprocess.run(
        [sys.executable, script, "--worker", kind, *args], capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"{Path(script).stem}: the {kind} run failed:\n{result.stderr}")
    return json.loads(result.stdout)


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--csv", type=Path, help="where to keep the synthetic CSV")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, one repeat")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    if args.smoke:
        args.rows, args.repeats = 2000, 1

    path = args.csv or Path(tempfile.gettempdir()) / f"backprop-bench-{args.rows}x{FEATURES}.csv"
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr)
        write_csv(path, args.rows)
    # Interleaved, so that both see the same moods of a shared machine; medians.
    plains, ourses = [], []
    for _ in range(args.repeats):
        plains.append(in_child(__file__, "pandas", str(path)))
        ourses.append(in_child(__file__, "backprop", str(path)))
    plain, ours = median_run(plains), median_run(ourses)
    report = {
        "rows": args.rows,
        "csv_mb": path.stat().st_size / 2**20,
        "seconds": ours["seconds"],
        "write_seconds": ours["write_seconds"],
        "pandas_read_seconds": plain["seconds"],
        "ratio_vs_pandas_read": ours["seconds"] / plain["seconds"],
        "peak_rss_mb": ours["peak_rss_mb"],
        "pandas_peak_rss_mb": plain["peak_rss_mb"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.rows} x {FEATURES} integer pixels, {report['csv_mb']:.0f} MB, "
        f"median of {args.repeats}"
    )
    print(
        f"  backprop load + split + scale  {ours['seconds']:6.2f} s  peak RSS "
        f"{ours['peak_rss_mb']:6.0f} MB  (then writing the splits: {ours['write_seconds']:.2f} s)"
    )
    print(
        f"  pandas.read_csv                {plain['seconds']:6.2f} s  peak RSS "
        f"{plain['peak_rss_mb']:6.0f} MB"
    )
    print(f"  ratio backprop / plain read: {report['ratio_vs_pandas_read']:.2f}")


if __name__ == "__main__":
    main()
