"""``backprop runs`` on a tracking database of 200 runs: wall time, and where it goes.

Builds an MLflow SQLite database in a temporary folder: experiment ``backprop``
holding a sweep, a parent run tagged ``sweep=parent`` and ``--runs`` finished
jobs nested under it (tag ``mlflow.parentRunId``), each with the 33 params, a
few tags and the ten metrics a pipeline run logs (the four per-epoch ones over
30 epochs), written with ``MlflowClient.log_batch``.  Then times ``backprop
runs`` and ``backprop runs --sweep latest`` as a user runs them: a new process
each, in that folder, ``MLFLOW_TRACKING_URI`` pointing at the database; the
median of ``--repeats``, alternating.  Then where the time of one ``--sweep
latest`` goes: the slowest imports (``python -X importtime``) and the slowest
calls (cProfile), and, for scale, a bare ``import mlflow`` and a bare import of
the ``backprop`` command.  Target: under 2 s for 200 runs.  Figures only.

    python benchmarks/bench_runs.py [--runs 200] [--repeats 5] [--json] [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
EPOCHS = 30
RATES = ["1.0", "0.5", "0.3", "0.1", "0.05", "0.03", "0.01", "0.003"]
SIZES = ["[256, 64]", "[128]", "[64, 32]", "[32]", "[512, 128, 32]"]


def params_of(i: int) -> dict[str, str]:
    """The 33 params of a pipeline run (the flattened params.yaml), two of them swept."""
    return {
        "experiment_name": "backprop", "registered_model_name": "null",
        "data.name": "digits", "data.path": "data/raw/digits.csv", "data.label_column": "label",
        "data.drop_missing": "false", "preprocess.val_fraction": "0.15",
        "preprocess.test_fraction": "0.15", "preprocess.seed": "0",
        "preprocess.scaling": "per_feature", "preprocess.clip": "true", "model.name": "seed",
        "model.hidden_sizes": SIZES[i // len(RATES) % len(SIZES)],
        "model.activation": "sigmoid", "model.output": "softmax", "model.loss": "cross_entropy",
        "model.dtype": "float32", "model.negative_slope": "0.01", "optim.name": "sgd",
        "optim.lr": RATES[i % len(RATES)], "optim.weight_decay": "0.0",
        "optim.schedule": "constant", "optim.gamma": "0.5", "optim.step_size": "10",
        "optim.min_lr": "0.0", "optim.momentum": "0.9", "train.epochs": str(EPOCHS),
        "train.batch_size": "16", "train.seed": "0", "train.patience": "null",
        "train.min_delta": "0.0", "train.resume": "false", "conf_digest": "3f2a9c1b",
    }  # fmt: skip


def build(db: Path, runs: int, seed: int = 0) -> None:
    """The database: a sweep's parent and ``runs`` finished jobs, as the pipeline logs them."""
    import random

    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    import logging

    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its "Creating tables" lines

    rng = random.Random(seed)
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiment = client.create_experiment("backprop", (db.parent / "mlartifacts").as_uri())
    start = int(time.time() * 1000) - runs * 10_000
    parent = client.create_run(
        experiment, start_time=start, run_name="sweep: lr=... hidden_sizes=...",
        tags={"sweep": "parent", "sweep_overrides": "optim.lr=... model.hidden_sizes=..."},
    )  # fmt: skip
    for i in range(runs):
        began = start + 1000 + i * 10_000
        params = params_of(i)
        name = f"lr={params['optim.lr']} hidden_sizes={params['model.hidden_sizes']}"
        run = client.create_run(experiment, start_time=began, run_name=name,
                                tags={"mlflow.parentRunId": parent.info.run_id})  # fmt: skip
        metrics = []
        for epoch in range(1, EPOCHS + 1):
            at = began + 200 * epoch
            metrics += [
                Metric("train_loss", 2.3 / epoch + rng.random() / 100, at, epoch),
                Metric("val_loss", 2.4 / epoch + rng.random() / 50, at, epoch),
                Metric("val_accuracy", 1 - 0.9 / epoch - rng.random() / 50, at, epoch),
                Metric("learning_rate", float(params["optim.lr"]), at, epoch),
            ]
        # 270 validation rows: accuracies in steps of 1/270, so many jobs tie
        kept = round(rng.randint(240, 265) / 270, 4)
        ended = began + 200 * EPOCHS + 800
        headline = {"kept_val_accuracy": kept, "kept_val_loss": round(rng.uniform(0.1, 0.4), 4),
                    "kept_epoch": float(rng.randint(10, EPOCHS)),
                    "test_accuracy": round(rng.randint(240, 268) / 270, 4),
                    "test_loss": round(rng.uniform(0.1, 0.4), 4),
                    "test_macro_f1": round(rng.uniform(0.88, 0.99), 4)}  # fmt: skip
        metrics += [Metric(k, v, ended, 0) for k, v in headline.items()]
        tags = {"sweep_job": str(i), "overrides": f"optim.lr={params['optim.lr']}",
                "git_commit": "f06d8ee9bd1b18a77db97271d9780f9a8ceb923a", "git_dirty": "false",
                "dataset_digest": "f4f019ea" * 8, "weights_sha256": f"{i:064x}"}  # fmt: skip
        client.log_batch(
            run.info.run_id, metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )  # fmt: skip
        client.set_terminated(run.info.run_id, "FINISHED", end_time=ended)
    client.set_terminated(parent.info.run_id, "FINISHED", end_time=start + (runs + 1) * 10_000)


def environment(db: Path) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
           "MLFLOW_DISABLE_TELEMETRY": "true",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str, str]:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return seconds, result.stdout, result.stderr


def slowest_imports(cwd: Path, env: dict[str, str], top: int) -> tuple[float, list[tuple]]:
    """``python -X importtime`` of one ``backprop runs --sweep latest``: the total time spent
    importing, and the slowest top-level imports (seconds, module)."""
    args = [sys.executable, "-X", "importtime", "-m", "backprop", "runs", "--sweep", "latest"]
    _, _, err = timed(args, cwd, env)
    total, rows = 0.0, []
    for line in err.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        _, cumulative, name = line.split("|")
        if name.startswith("  "):  # nested: counted in its importer's cumulative time
            continue
        seconds = int(cumulative) / 1e6
        total += seconds
        rows.append((seconds, name.strip()))
    return total, sorted(rows, reverse=True)[:top]


def slowest_calls(cwd: Path, env: dict[str, str], top: int) -> tuple[float, list[tuple]]:
    """cProfile of one ``backprop runs --sweep latest``: the time in the command's ``main``
    (all but the imports of ``backprop.app.cli``), and the calls outside the import
    machinery with the largest cumulative time (seconds, calls, function)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "runs.prof"
        args = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "backprop", "runs",
                "--sweep", "latest"]  # fmt: skip
        timed(args, cwd, env)
        stats = pstats.Stats(str(out), stream=io.StringIO())
    rows, command = [], 0.0
    for (path, line, function), (_, calls, _, cumulative, _) in stats.stats.items():
        if path.endswith(os.path.join("backprop", "app", "cli.py")) and function == "main":
            command = cumulative
        if path.startswith("<frozen") or path == "~" or function == "<module>":
            continue  # importlib's frames, builtins, module bodies: imports, counted above
        short = "/".join(Path(path).parts[-3:])
        rows.append((cumulative, calls, f"{short}:{line}({function})"))
    return command, sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=10, help="imports and calls shown")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--smoke", action="store_true", help="20 runs, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.repeats, args.top = 20, 1, 5

    with tempfile.TemporaryDirectory(prefix="backprop-bench-runs-") as tmp:
        folder = Path(tmp)
        db = folder / "mlflow.db"
        start = time.perf_counter()
        build(db, args.runs)
        build_seconds = time.perf_counter() - start
        env = environment(db)
        command = [str(BIN / "backprop"), "runs"]
        listing, sweep = [], []
        for _ in range(args.repeats):  # alternating: both see the same moods of the machine
            seconds, table, _ = timed(command, folder, env)
            listing.append(seconds)
            seconds, swept, _ = timed([*command, "--sweep", "latest"], folder, env)
            sweep.append(seconds)
        floor = {
            "import_mlflow_seconds": timed(
                [sys.executable, "-c", "import mlflow"], folder, env)[0],
            "import_backprop_cli_seconds": timed(
                [sys.executable, "-c", "import backprop.app.cli"], folder, env)[0],
            "python_seconds": timed([sys.executable, "-c", "pass"], folder, env)[0],
        }  # fmt: skip
        import_seconds, imports = slowest_imports(folder, env, args.top)
        command_seconds, calls = slowest_calls(folder, env, args.top)
    report = {
        "runs": args.runs,
        "repeats": args.repeats,
        "build_seconds": build_seconds,
        "runs_seconds": statistics.median(listing),
        "sweep_latest_seconds": statistics.median(sweep),
        "runs_samples": listing,
        "sweep_latest_samples": sweep,
        "rows_shown": len(table.splitlines()) - 1,
        "sweep_rows_shown": len(swept.splitlines()) - 1,
        "import_seconds": import_seconds,
        "slowest_imports": [{"seconds": s, "module": m} for s, m in imports],
        "command_seconds": command_seconds,
        "slowest_calls": [{"seconds": s, "calls": n, "function": f} for s, n, f in calls],
        **floor,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.runs} finished runs of a sweep, 33 params and 10 metrics each "
          f"(built in {build_seconds:.1f} s); median of {args.repeats}, wall time")  # fmt: skip
    for label, samples in (("backprop runs", listing), ("backprop runs --sweep latest", sweep)):
        spread = " ".join(f"{s:.2f}" for s in sorted(samples))
        print(f"  {label:30s} {statistics.median(samples):5.2f} s   ({spread})")
    print(f"  rows shown: {report['rows_shown']} (--limit 50), {report['sweep_rows_shown']} "
          "with --sweep latest; its first lines:")  # fmt: skip
    for line in swept.splitlines()[:3]:
        print(f"    {line}")
    print("for scale, a new process that does nothing else than")
    print(f"  start Python                   {floor['python_seconds']:5.2f} s")
    print(f"  import backprop.app.cli        {floor['import_backprop_cli_seconds']:5.2f} s")
    print(f"  import mlflow                  {floor['import_mlflow_seconds']:5.2f} s")
    print(f"where one `backprop runs --sweep latest` goes: {import_seconds:.2f} s of imports "
          "(python -X importtime), the slowest:")  # fmt: skip
    for seconds, module in imports:
        print(f"  {seconds:6.3f} s  {module}")
    print(f"and {command_seconds:.2f} s in the command itself, backprop.app.cli.main (cProfile, "
          "which slows it); the slowest calls outside imports, cumulative:")  # fmt: skip
    for seconds, n, function in calls:
        print(f"  {seconds:6.3f} s  {n:6d} x  {function}")


if __name__ == "__main__":
    main()
