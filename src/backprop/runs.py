"""``backprop runs``: the runs of an experiment or a sweep as a table for the terminal."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from backprop import tracking

COLUMNS_METRICS = ("kept_val_accuracy", "test_accuracy", "test_loss")


def run_table(
    experiment_name: str, sweep: str | None = None, sort: str = "kept_val_accuracy", limit: int = 50
) -> list[dict[str, Any]]:
    """Rows (dicts) of the experiment's runs, or of one sweep's jobs, best ``sort`` first.

    ``sweep`` is a parent run id, or ``latest`` for the newest sweep.
    """
    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise ValueError(  # rather than create an empty database just to find it empty
            f"no runs yet: {uri.removeprefix('sqlite:///')} does not exist; run the pipeline "
            "(`make repro`) or set MLFLOW_TRACKING_URI"
        )
    mlflow = tracking._mlflow()
    mlflow.set_tracking_uri(uri)
    tracking.check_server(uri)
    client = mlflow.MlflowClient()
    if mlflow.get_experiment_by_name(experiment_name) is None:
        raise ValueError(
            f"no MLflow experiment named {experiment_name!r} in {tracking.tracking_uri()}"
        )
    experiment_id = tracking.connect(experiment_name)
    if sweep == "latest":
        parents = client.search_runs(
            [experiment_id], "tags.sweep = 'parent'", order_by=["attributes.start_time DESC"],
            max_results=1,
        )  # fmt: skip
        if not parents:
            raise ValueError(f"experiment {experiment_name!r} has no sweep yet")
        sweep = parents[0].info.run_id
    where = f"tags.mlflow.parentRunId = '{sweep}'" if sweep else ""
    runs = client.search_runs([experiment_id], where, max_results=10_000)
    runs = [r for r in runs if r.data.tags.get("sweep") != "parent"]
    if sweep and not runs:
        raise ValueError(f"no runs belong to sweep {sweep!r}")
    from backprop.sweep import swept_params

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

    def key(row):
        value = row.get(sort)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        ascending = sort.endswith("loss")
        return (missing, value if ascending else -value) if not missing else (True, 0)

    return sorted(rows, key=key)[:limit]


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs"
    columns = [c for c in rows[0] if c != "run_id"] + ["run_id"]

    def cell(value) -> str:
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
