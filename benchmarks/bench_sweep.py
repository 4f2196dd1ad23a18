"""Sweep jobs on the embedded digits: sequential against joblib with 2 workers, interleaved.

Each round runs the same ``backprop-experiment --multirun`` sweep (``--jobs``
jobs, ``train.seed=0..jobs-1``) twice, each in a fresh copy of the repository
(its own MLflow DB, its own ``outputs/cache``): with Hydra's basic launcher and
with ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, the order swapped from
one round to the next (see ``interleave.py``).  Reports the median wall time of
each, the speed-up as the median of the per-round ratios sequential / parallel
with its spread (IQR, min-max), and the per-job overhead of the sequential
sweep outside training: the median time between the starts of consecutive jobs
(so the first job's imports are not counted) minus the time the same training
takes alone, in this process, without tracking.  Target: under 0.5 s.

``--epochs 10`` (the default) trains every job 10 epochs without early stopping;
``--epochs default`` keeps conf/'s training settings (300 epochs, early stopping),
the sweep a user runs.

    python benchmarks/bench_sweep.py [--jobs 8] [--epochs 10|default] [--rounds 3] [--json]
    python benchmarks/bench_sweep.py --smoke     # 2 jobs of 2 epochs, 2 rounds
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
from interleave import interleave  # noqa: E402


def length_overrides(epochs: str) -> list[str]:
    return [] if epochs == "default" else [f"train.epochs={int(epochs)}", "train.patience=null"]


def sweep(root: Path, jobs: int, epochs: str, parallel: bool) -> float:
    args = ["backprop-experiment", "--multirun", *length_overrides(epochs),
            f"train.seed={','.join(map(str, range(jobs)))}"]  # fmt: skip
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


def training_alone(root: Path, epochs: str) -> float:
    """Seconds of preprocess-free training of one job's config, without tracking."""
    from backprop.app.compose import compose_config
    from backprop.pipeline.stages.digits import write_digits
    from backprop.pipeline.stages.preprocess import preprocess
    from backprop.pipeline.stages.train import train

    config = compose_config(length_overrides(epochs), root / "conf")
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
    parser.add_argument("--jobs", type=int, default=8, help="jobs per sweep (default 8)")
    parser.add_argument(
        "--epochs", default="10", help="epochs per job, or 'default': conf/'s (early stopping)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--smoke", action="store_true", help="2 jobs of 2 epochs, 2 rounds")
    args = parser.parse_args()
    if args.smoke:
        args.jobs, args.epochs, args.rounds = 2, "2", 2
    if args.epochs != "default" and not args.epochs.isdigit():
        parser.error("--epochs takes a number of epochs or 'default'")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        copies: dict[str, list[Path]] = {"sequential": [], "parallel": []}

        def one(kind: str) -> float:
            root = tmp / f"{kind}-{len(copies[kind])}"
            root.mkdir()
            fresh_copy(root)
            copies[kind].append(root)
            return sweep(root, args.jobs, args.epochs, parallel=kind == "parallel")

        def log(line: str) -> None:
            print(f"bench_sweep: {line}", file=sys.stderr, flush=True)

        compared = interleave(
            {"sequential": lambda: one("sequential"), "parallel": lambda: one("parallel")},
            args.rounds,
            progress=None if args.json else log,
        )
        gaps = []
        for root in copies["sequential"]:
            starts = job_starts(root)
            gaps += [b - a for a, b in zip(starts, starts[1:])]
        alone = training_alone(copies["sequential"][0], args.epochs)
    per_job = statistics.median(gaps) if gaps else None
    report = {
        "jobs": args.jobs,
        "epochs": args.epochs,
        "rounds": compared.rounds,
        "sequential_seconds": compared.median("sequential"),
        "parallel_seconds": compared.median("parallel"),
        "speedup": compared.ratio,  # the median of the per-round ratios
        "speedup_spread": compared.spread,
        "interleaved": compared.as_dict(),
        "seconds_per_job_after_first": per_job,
        "training_alone_seconds": alone,
        "per_job_overhead_seconds": per_job - alone if per_job is not None else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    length = "conf/'s default length" if args.epochs == "default" else f"{args.epochs} epochs"
    print(f"{args.jobs} jobs, digits, {length} each; {compared.rounds} interleaved rounds")
    print(compared.describe())
    s = compared.spread
    print(
        f"  speed-up of joblib (2 workers): median {compared.ratio:.2f}x "
        f"(IQR {s['q1']:.2f}-{s['q3']:.2f}, min-max {s['min']:.2f}-{s['max']:.2f})"
    )
    if per_job is not None:
        print(
            f"  sequential: {per_job:.2f} s per job after the first, of which training "
            f"{alone:.2f} s; overhead {report['per_job_overhead_seconds']:.2f} s per job"
        )


if __name__ == "__main__":
    main()
