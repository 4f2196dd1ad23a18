"""``backprop runs`` (the runs of an experiment or a sweep as a table, best first) and
``backprop register`` (a run's model into MLflow's model registry, under an alias).

Runs are ranked by :func:`rank_key`, which the sweep summary (``app/sweep.py``)
uses too.  Listing reads the tracking store without MLflow's client when it is a
SQLite file (:meth:`~backprop.tracking.store.Store.list_runs`): importing MLflow
alone would take longer than the listing may.
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import timedelta
from typing import Any

from backprop.app.command import Command, positive_int
from backprop.errors import TrackingError, UserError
from backprop.pipeline.settings import load_settings
from backprop.tracking.store import Store, alias_problem
from backprop.tracking.tracker import EPOCH_METRICS, HEADLINE_METRICS

DEFAULT_SORT = "kept_val_accuracy"
TIE_BREAK = "kept_val_loss"  # a validation metric: a test metric never chooses
SORTABLE = HEADLINE_METRICS + EPOCH_METRICS  # every metric a run logs, the default first
COLUMNS_METRICS = ("kept_val_accuracy", "kept_val_loss", "test_accuracy", "test_macro_f1")
DEFAULT_ALIAS = "champion"


def rank_key(metrics: dict[str, float], sort: str = DEFAULT_SORT) -> tuple:
    """Sort key of a run by its metrics, lower is better: ``sort`` first (a metric whose
    name ends in ``loss`` ascending, any other descending), equal values by
    ``kept_val_loss`` (lower first; a run without it after those with it), never by a test
    metric; runs without ``sort`` (or with NaN) last."""

    def value(name: str) -> float | None:
        v = metrics.get(name)
        return None if v is None or math.isnan(v) else v

    main, tie = value(sort), value(TIE_BREAK)
    if main is None:
        return (True, 0.0, 0.0)
    return (False, main if sort.endswith("loss") else -main, math.inf if tie is None else tie)


def swept_params(runs: list[Any]) -> list[str]:
    """The params whose values differ between runs."""
    # A job that failed before its params were logged has none: it does not make every
    # param look swept.
    runs = [r for r in runs if r.data.params]
    keys = sorted({k for r in runs for k in r.data.params})
    return [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]


def run_table(
    store: Store, experiment_name: str, sweep: str | None = None,
    sort: str | None = None, limit: int = 50,
) -> list[dict[str, Any]]:  # fmt: skip
    """Rows (dicts) of the experiment's runs, or of one sweep's jobs, best ``sort`` first
    (:func:`rank_key`; equal keys: the newest first).

    ``sweep`` is a parent run id, or ``latest`` for the newest sweep.  ``sort`` None: a
    search's own metric for its trials (``kept_val_loss`` for ``metric=val_loss``), else
    DEFAULT_SORT.
    """
    if not store.exists():  # rather than create an empty database just to find it empty
        path = store.uri.removeprefix("sqlite:///")
        raise TrackingError(
            f"no runs yet: {path} does not exist; run the pipeline (`make repro`) or set "
            "MLFLOW_TRACKING_URI"
        )
    metrics = tuple(dict.fromkeys((*COLUMNS_METRICS, sort or DEFAULT_SORT, TIE_BREAK)))
    listing = store.list_runs(experiment_name, sweep, metrics)
    if sort is None:
        sort = f"kept_{listing.sweep_metric}" if listing.sweep_metric else DEFAULT_SORT
    if listing.experiment_id is None:
        raise TrackingError(
            f"no MLflow experiment named {experiment_name!r} in {store.shown}; "
            "--experiment names another"
        )
    if sweep == "latest" and listing.sweep is None:
        raise TrackingError(f"experiment {experiment_name!r} has no sweep yet")
    runs = listing.runs
    if sweep and not runs:
        raise TrackingError(f"no runs of experiment {experiment_name!r} belong to sweep {sweep!r}")
    newest_first = sorted(runs, key=lambda r: (-(r.info.start_time or 0), r.info.run_id))
    ranked = sorted(newest_first, key=lambda r: rank_key(r.data.metrics, sort))
    varying = swept_params(runs) if len(runs) > 1 else []
    shown = COLUMNS_METRICS if sort in COLUMNS_METRICS else (*COLUMNS_METRICS, sort)
    rows = []
    for r in ranked[:limit]:
        row: dict[str, Any] = {k: r.data.params.get(k, "") for k in varying}
        row.update({m: r.data.metrics.get(m) for m in shown})
        start, end = r.info.start_time, r.info.end_time
        row["status"] = shown_status(r)
        row["duration"] = (
            str(timedelta(seconds=round((end - start) / 1000))) if start and end else None
        )
        row["run"] = r.info.run_name or r.info.run_id[:8]
        row["run_id"] = r.info.run_id
        rows.append(row)
    return rows


def pruned(run: Any) -> bool:
    """A search's trial that its pruner stopped (KILLED, tag ``optuna.state=PRUNED``)."""
    return run.data.tags.get("optuna.state") == "PRUNED"


def shown_status(run: Any) -> str:
    """``FINISHED``, ``FAILED``..., or ``PRUNED@7`` for a trial pruned after epoch 7."""
    if pruned(run):
        return f"PRUNED@{run.data.tags.get('pruned_epoch', '?')}"
    return run.info.status


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts with the same keys) as aligned columns, ``run_id`` last; floats to 4
    decimals, None as ``-``."""
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
    p.add_argument(
        "--sort", metavar="METRIC",
        help=f"metric to rank by, best first (a loss: lowest first; default {DEFAULT_SORT}, "
        "or a search's own metric); "
        f"equal values: lower {TIE_BREAK} first; one of {', '.join(SORTABLE)}",
    )  # fmt: skip
    p.add_argument(
        "--limit", type=positive_int, default=50, help="at most this many rows (default 50)"
    )
    p.add_argument("--params", metavar="FILE", help="default ./params.yaml if present")


def _runs(args: argparse.Namespace) -> int:
    if args.sort is not None and args.sort not in SORTABLE:  # before anything is read
        raise UserError(
            f"--sort {args.sort}: not a metric of backprop runs; choose one of "
            f"{', '.join(SORTABLE)}"
        )
    if args.sweep not in (None, "latest") and not re.fullmatch(r"[0-9A-Za-z]+", args.sweep):
        raise UserError(
            f"--sweep {args.sweep}: not a run id; give the run id of a sweep's parent run, "
            "or latest"
        )
    settings, _ = load_settings(args.params)
    name = args.experiment or settings.experiment_name
    print(format_table(run_table(Store(), name, args.sweep, args.sort, args.limit)))
    return 0


RUNS = Command(
    description="The MLflow runs of an experiment (default: experiment_name of the params "
    f"file) or of one sweep, best first by --sort (default {DEFAULT_SORT}; equal values: "
    f"lower {TIE_BREAK} first, never a test metric; runs without the metric last), with the "
    "params that vary between them, the validation and test scores, status, duration, name "
    "and id. Tracking store: MLFLOW_TRACKING_URI, else ./mlflow.db, only read.",
    arguments=_runs_arguments,
    run=_runs,
)


def _alias(text: str) -> str:
    problem = alias_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _register_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--alias", type=_alias, default=DEFAULT_ALIAS,
        help=f"the alias to point at the new version: models:/NAME@ALIAS (default "
        f"{DEFAULT_ALIAS}; it leaves the version it pointed at before)",
    )  # fmt: skip


def _register(args: argparse.Namespace) -> int:
    version = Store().register_model(args.run_id, args.name, alias=args.alias)
    print(
        f"registered the model of run {args.run_id} as models:/{args.name}/{version} "
        f"(models:/{args.name}@{args.alias})"
    )
    return 0


REGISTER = Command(
    description="Add the model logged by run RUN_ID as a new version of the registered "
    f"model NAME (created if needed) and point the alias --alias (default {DEFAULT_ALIAS}) "
    "at it, so that models:/NAME/<version> and models:/NAME@<alias> work for `backprop "
    "predict` and `mlflow models serve`. Setting registered_model_name in conf/ does the "
    f"same, alias {DEFAULT_ALIAS}, at the end of every pipeline run (a sweep: of its best "
    "job). Tracking store: MLFLOW_TRACKING_URI, else ./mlflow.db.",
    arguments=_register_arguments,
    run=_register,
)
