"""8 sweep jobs on the embedded digits: sequential against joblib with 2 workers.

Runs `backprop-experiment --multirun` in a fresh copy of the repository (its
own MLflow DB) twice: with Hydra's basic launcher and with
``hydra/launcher=joblib hydra.launcher.n_jobs=2``.  Reports the wall time of
each, the parallel speed-up, and the per-job overhead of the sequential sweep
outside training: the median time between the starts of consecutive jobs
(so the first job's imports are not counted) minus the time the same training
takes alone, in this process, without tracking.  Target: under 0.5 s.

    python benchmarks/bench_sweep.py [--epochs 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import fresh_copy, run  # noqa: E402

RATES = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def sweep(root: Path, epochs: int, parallel: bool) -> float:
    args = ["backprop-experiment", "--multirun", f"train.epochs={epochs}", "train.patience=null",
            f"optim.lr={','.join(map(str, RATES))}"]  # fmt: skip
    if parallel:
        args[2:2] = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    return run(root, *args)


def job_starts(root: Path) -> list[float]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("backprop")
    parent = client.search_runs(
        [experiment.experiment_id], "tags.sweep = 'parent'",
        order_by=["attributes.start_time ASC"], max_results=1,
    )[0]  # fmt: skip
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return sorted(r.info.start_time / 1000 for r in runs)


def training_alone(root: Path, epochs: int) -> float:
    """Seconds of preprocess-free training of one job's config, without tracking."""
    from backprop.app.compose import compose_config
    from backprop.pipeline.stages.digits import write_digits
    from backprop.pipeline.stages.preprocess import preprocess
    from backprop.pipeline.stages.train import train

    config = compose_config([f"train.epochs={epochs}", "train.patience=null"], root / "conf")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_digits(tmp / "d.csv")
        preprocess(config, csv=tmp / "d.csv", prepared=tmp / "p")
        times = []
        for _ in range(3):
            start = time.perf_counter()
            train(config, prepared=tmp / "p", model=tmp / "m", reports=tmp / "r", progress=False)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        fresh_copy(Path(a))
        fresh_copy(Path(b))
        sequential = sweep(Path(a), args.epochs, parallel=False)
        starts = job_starts(Path(a))
        parallel = sweep(Path(b), args.epochs, parallel=True)
        alone = training_alone(Path(a), args.epochs)
    per_job = statistics.median(b - a for a, b in zip(starts, starts[1:]))
    report = {
        "jobs": len(RATES),
        "epochs": args.epochs,
        "sequential_seconds": sequential,
        "parallel_seconds": parallel,
        "speedup": sequential / parallel,
        "seconds_per_job_after_first": per_job,
        "training_alone_seconds": alone,
        "per_job_overhead_seconds": per_job - alone,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(RATES)} jobs, digits, {args.epochs} epochs each")
    print(f"  sequential (basic launcher)   {sequential:6.1f} s")
    print(f"  joblib, 2 workers             {parallel:6.1f} s   speed-up {report['speedup']:.2f}x")
    overhead = report["per_job_overhead_seconds"]
    print(
        f"  sequential: {per_job:.2f} s per job after the first, of which training {alone:.2f} s;"
    )
    print(f"  overhead {overhead:.2f} s per job")


if __name__ == "__main__":
    main()
