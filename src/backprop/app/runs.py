"""``backprop runs`` (the runs of an experiment or a sweep as a table) and ``backprop register``."""

from __future__ import annotations

import argparse
import math
from datetime import timedelta
from typing import Any

from backprop.app.command import Command
from backprop.errors import TrackingError
from backprop.pipeline.settings import load_settings
from backprop.tracking.store import Store

COLUMNS_METRICS = ("kept_val_accuracy", "test_accuracy", "test_loss")


def swept_params(runs: list[Any]) -> list[str]:
    """The params whose values differ between runs."""
    keys = sorted({k for r in runs for k in r.data.params})
    return [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]


def run_table(
    store: Store, experiment_name: str, sweep: str | None = None,
    sort: str = "kept_val_accuracy", limit: int = 50,
) -> list[dict[str, Any]]:  # fmt: skip
    """Rows (dicts) of the experiment's runs, or of one sweep's jobs, best ``sort`` first.

    ``sweep`` is a parent run id, or ``latest`` for the newest sweep.
    """
    if not store.exists():  # rather than create an empty database just to find it empty
        path = store.uri.removeprefix("sqlite:///")
        raise TrackingError(
            f"no runs yet: {path} does not exist; run the pipeline (`make repro`) or set "
            "MLFLOW_TRACKING_URI"
        )
    store.check_server()
    client = store.client
    with store.answering():
        experiment = client.get_experiment_by_name(experiment_name)  # read only: no lock
    if experiment is None:
        raise TrackingError(f"no MLflow experiment named {experiment_name!r} in {store.shown}")
    experiment_id = experiment.experiment_id
    if sweep == "latest":
        parents = client.search_runs(
            [experiment_id], "tags.sweep = 'parent'", order_by=["attributes.start_time DESC"],
            max_results=1,
        )  # fmt: skip
        if not parents:
            raise TrackingError(f"experiment {experiment_name!r} has no sweep yet")
        sweep = parents[0].info.run_id
    where = f"tags.mlflow.parentRunId = '{sweep}'" if sweep else ""
    runs = client.search_runs([experiment_id], where, max_results=10_000)
    runs = [r for r in runs if r.data.tags.get("sweep") != "parent"]
    if sweep and not runs:
        raise TrackingError(f"no runs belong to sweep {sweep!r}")
    varying = swept_params(runs) if len(runs) > 1 else []
    rows = []
    for r in runs:
        end = r.info.end_time or r.info.start_time
        row = {
            "run": r.info.run_name or r.info.run_id[:8],
            "run_id": r.info.run_id,
            "status": r.info.status,
            "duration": str(timedelta(seconds=round((end - r.info.start_time) / 1000))),
        }
        row.update({k: r.data.params.get(k, "") for k in varying})
        row.update({m: r.data.metrics.get(m) for m in COLUMNS_METRICS})
        if sort not in COLUMNS_METRICS:
            row[sort] = r.data.metrics.get(sort)
        rows.append(row)

    def key(row: dict[str, Any]) -> tuple[bool, float]:
        value = row.get(sort)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        ascending = sort.endswith("loss")
        return (missing, value if ascending else -value) if not missing else (True, 0)

    return sorted(rows, key=key)[:limit]


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs"
    columns = [c for c in rows[0] if c != "run_id"] + ["run_id"]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in table]
    return "\n".join(line.rstrip() for line in lines)


def _runs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", help="experiment name (default from params.yaml)")
    p.add_argument("--sweep", metavar="RUN_ID", help="a sweep's parent run id, or 'latest'")
    p.add_argument("--sort", default="kept_val_accuracy", help="metric to sort by, best first")
    p.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    p.add_argument("--params", metavar="FILE", help="default ./params.yaml if present")


def _runs(args: argparse.Namespace) -> int:
    settings, _ = load_settings(args.params)
    name = args.experiment or settings.experiment_name
    print(format_table(run_table(Store(), name, args.sweep, args.sort, args.limit)))
    return 0


RUNS = Command(
    description="The MLflow runs of an experiment (default: experiment_name of the params "
    "file) or of one sweep, sorted by a metric, with the params that vary between them, "
    "status and duration. Tracking store: MLFLOW_TRACKING_URI, else ./mlflow.db.",
    arguments=_runs_arguments,
    run=_runs,
)


def _register_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("name", metavar="NAME")


def _register(args: argparse.Namespace) -> int:
    version = Store().register_model(args.run_id, args.name)
    print(f"registered the model of run {args.run_id} as models:/{args.name}/{version}")
    return 0


REGISTER = Command(
    description="Add the model logged by run RUN_ID as a new version of the registered "
    "model NAME (created if needed), so that models:/NAME/<version> works for "
    "`backprop predict` and `mlflow models serve`. Setting registered_model_name in "
    "conf/ does the same at the end of every pipeline run. Tracking store: "
    "MLFLOW_TRACKING_URI, else ./mlflow.db.",
    arguments=_register_arguments,
    run=_register,
)


def rank_key(metrics: dict[str, float], sort: str = "kept_val_accuracy") -> tuple:
    """Sort key of a run, lower is better: ``sort`` (losses ascending, others descending),
    ties broken by the validation loss of the weights kept (never by a test metric), runs
    without ``sort`` last."""

    def value(name: str) -> float | None:
        v = metrics.get(name)
        return None if v is None or math.isnan(v) else v

    main, tie = value(sort), value("kept_val_loss")
    if main is None:
        return (True, 0.0, 0.0)
    return (False, main if sort.endswith("loss") else -main, math.inf if tie is None else tie)
