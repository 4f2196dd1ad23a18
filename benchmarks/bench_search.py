"""Grid and random search against TPE with pruning, on the same budget of trials.

On the embedded digits, ``backprop-experiment --multirun hydra/sweeper=optuna`` searches

    optim.lr            tag(log, interval(0.001, 1.0))   (the grid: 0.01, 0.1, 1.0)
    model.hidden_sizes  choice([256,64], [128], [512,128])
    train.batch_size    choice(16, 32, 64)

with ``--trials`` trials (24) per search, once per sampler seed (3 seeds), in a fresh
copy of the repository, the methods interleaved within each round (grid, random, TPE;
the next round starts with the next method), so that the machine's drifts hit them
alike.  The grid has 27 points: each seed tries 24 of them in its own order.  Only
TPE prunes (median pruner, Optuna's defaults: 5 trials, 5 epochs of warm-up).

For each search: the wall time of the command, the best validation accuracy (what the
search optimises), the test accuracy of that best trial (never used to choose), trials
pruned, and when the search first came within 0.003 of the grid's best validation
accuracy of the same round.  Goal: TPE with pruning gets there in at most half the
grid's wall time.

    python benchmarks/bench_search.py [--trials 24] [--seeds 3] [--epochs 300] [--json]

``--parallel ROUNDS`` measures instead what a second worker buys: the 16 trials of a
4 x 4 grid at default length, with ``hydra/launcher=joblib hydra.launcher.n_jobs=2``
against the basic launcher, interleaved, the speed-up per round.  Goal: >= 1.6x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import fresh_copy  # noqa: E402

SPACE = {
    "optim.lr": "tag(log, interval(0.001, 1.0))",
    "model.hidden_sizes": "choice([256,64],[128],[512,128])",
    "train.batch_size": "choice(16,32,64)",
}
GRID_LR = "choice(0.01,0.1,1.0)"
METHODS = ("grid", "random", "tpe")
WITHIN = 0.003


def search(root: Path, method: str, seed: int, trials: int, epochs: int) -> dict:
    space = dict(SPACE, **({"optim.lr": GRID_LR} if method == "grid" else {}))
    study = f"bench-{method}-{seed}"
    args = [
        "backprop-experiment", "--multirun", "hydra/sweeper=optuna",
        f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.sampler.name={method}",
        f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.pruner.name={'median' if method == 'tpe' else 'none'}",
        f"train.epochs={epochs}", *(f"{k}={v}" for k, v in space.items()),
    ]  # fmt: skip
    wall = timed(root, args)
    return {"method": method, "seed": seed, "wall_seconds": wall, **_study(root, study)}


def timed(root: Path, args: list[str]) -> float:
    """Seconds the command takes in ``root``, with the venv first on PATH; its stderr if it
    fails."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "MLFLOW_DISABLE_TELEMETRY": "true", "HOME": str(root)}  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return seconds


def _study(root: Path, name: str) -> dict:
    import mlflow
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{root / 'optuna.db'}")
    trials = study.get_trials()
    start = min(t.datetime_start for t in trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = study.best_trial
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    test = client.get_run(best.user_attrs["mlflow_run_id"]).data.metrics.get("test_accuracy")
    return {
        "best_val_accuracy": best.value,
        "best_test_accuracy": test,
        "best_params": best.params,
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        # (seconds since the search's first trial started, value) of each finished trial
        "progress": sorted(
            ((t.datetime_complete - start).total_seconds(), t.value) for t in complete
        ),  # fmt: skip
    }


def reached(progress: list, target: float) -> float | None:
    """Seconds until a trial first scored ``target`` or more; None if none did."""
    return next((seconds for seconds, value in progress if value >= target), None)


PARALLEL_SPACE = {"optim.lr": "choice(0.1,0.3,1.0,2.0)",
                  "model.hidden_sizes": "choice([256,64],[128],[512,128],[64])"}  # fmt: skip


def parallel(rounds: int, epochs: int) -> dict:
    """16 trials of default length (the grid of PARALLEL_SPACE, no pruning) with the
    basic launcher and with joblib's 2 workers, interleaved A B A B; the ratio per round."""
    sequential, two = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fresh_copy(root)
        for r in range(rounds):
            for jobs in (1, 2) if r % 2 == 0 else (2, 1):
                args = [
                    "backprop-experiment", "--multirun", "hydra/sweeper=optuna",
                    "hydra.sweeper.sampler.name=grid", "hydra.sweeper.pruner.name=none",
                    "hydra.sweeper.n_trials=16", f"hydra.sweeper.study_name=par-{r}-{jobs}",
                    f"train.epochs={epochs}",
                    *(f"{k}={v}" for k, v in PARALLEL_SPACE.items()),
                ]  # fmt: skip
                if jobs == 2:
                    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
                seconds = timed(root, args)
                (sequential if jobs == 1 else two).append(seconds)
                print(f"  round {r} n_jobs={jobs}: {seconds:6.1f} s", flush=True)
    ratios = [a / b for a, b in zip(sequential, two)]
    return {"sequential_seconds": sequential, "parallel_seconds": two, "speedups": ratios,
            "speedup_median": statistics.median(ratios)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--parallel", type=int, metavar="ROUNDS", default=0,
                        help="instead: 16 trials, n_jobs=2 against 1, ROUNDS times")  # fmt: skip
    args = parser.parse_args()
    if args.parallel:
        report = parallel(args.parallel, args.epochs)
        r = report["speedups"]
        print(f"16 trials, n_jobs=2 against n_jobs=1: speed-up median {statistics.median(r):.2f}x "
              f"(min {min(r):.2f}, max {max(r):.2f}, {len(r)} rounds); goal >= 1.6x")  # fmt: skip
        if args.json:
            print(json.dumps(report))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fresh_copy(root)
        for seed in range(args.seeds):
            order = METHODS[seed % 3 :] + METHODS[: seed % 3]
            for method in order:
                results.append(search(root, method, seed, args.trials, args.epochs))
                if not args.json:
                    r = results[-1]
                    print(f"  seed {seed} {method:6s} {r['wall_seconds']:6.1f} s  best val "
                          f"{r['best_val_accuracy']:.4f}  test {r['best_test_accuracy']:.4f}  "
                          f"pruned {r['pruned']}", flush=True)  # fmt: skip
    rounds = []
    for seed in range(args.seeds):
        by = {r["method"]: r for r in results if r["seed"] == seed}
        target = by["grid"]["best_val_accuracy"] - WITHIN
        grid_wall = by["grid"]["wall_seconds"]
        row = {"seed": seed, "grid_best": by["grid"]["best_val_accuracy"]}
        for method in METHODS:
            when = reached(by[method]["progress"], target)
            row[f"{method}_reached_seconds"] = when
            row[f"{method}_reached_fraction_of_grid"] = None if when is None else when / grid_wall
            row[f"{method}_wall_fraction_of_grid"] = by[method]["wall_seconds"] / grid_wall
        rounds.append(row)
    summary = {}
    for method in METHODS:
        mine = [r for r in results if r["method"] == method]
        fractions = [r[f"{method}_reached_fraction_of_grid"] for r in rounds]
        summary[method] = {
            "wall_seconds_median": statistics.median(r["wall_seconds"] for r in mine),
            "best_val_mean": statistics.fmean(r["best_val_accuracy"] for r in mine),
            "best_test_mean": statistics.fmean(r["best_test_accuracy"] for r in mine),
            "pruned_mean": statistics.fmean(r["pruned"] for r in mine),
            "reached_grid_best": sum(f is not None for f in fractions),
            "reached_fraction_of_grid_wall": fractions,
            "wall_fraction_of_grid": [r[f"{method}_wall_fraction_of_grid"] for r in rounds],
        }
    tpe = summary["tpe"]["reached_fraction_of_grid_wall"]
    met = all(f is not None and f <= 0.5 for f in tpe)
    report = {
        "trials": args.trials,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "searches": results,
        "rounds": rounds,
        "summary": summary,
        "goal_met": met,
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"\n{args.trials} trials a search, {args.seeds} sampler seeds, digits, "
          f"up to {args.epochs} epochs (early stopping on)")  # fmt: skip
    print(f"{'method':8s} {'wall s':>8s} {'best val':>9s} {'its test':>9s} {'pruned':>7s} "
          f"{'reached grid best-0.003 (fraction of grid wall time)':>20s}")  # fmt: skip
    for method in METHODS:
        s = summary[method]
        fractions = ", ".join("never" if f is None else f"{f:.2f}"
                              for f in s["reached_fraction_of_grid_wall"])  # fmt: skip
        print(f"{method:8s} {s['wall_seconds_median']:8.1f} {s['best_val_mean']:9.4f} "
              f"{s['best_test_mean']:9.4f} {s['pruned_mean']:7.1f}  {fractions}")  # fmt: skip
    spread = summary["tpe"]["wall_fraction_of_grid"]
    print(f"TPE + pruning wall time / grid's: median {statistics.median(spread):.2f} "
          f"(min {min(spread):.2f}, max {max(spread):.2f})")  # fmt: skip
    print(f"goal (TPE + pruning within {WITHIN} of the grid's best in <= half its wall time, "
          f"every seed): {'met' if met else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
