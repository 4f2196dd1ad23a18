"""A sweep's parent MLflow run: opened before the jobs, summarised after them.

:class:`SweepTracker` is a Hydra callback, so it runs in the launching
process whatever the launcher: it creates (and migrates) the tracking
database there, before parallel jobs could race on a fresh SQLite file, and
hands the parent run's id to the jobs through the environment.  When the
sweep ends it finds the children (tag ``mlflow.parentRunId``), records the
best one (run id, params, kept validation accuracy) and a figure of
validation accuracy against each swept parameter, and exits with status 1 if
any job failed, naming them.
"""

from __future__ import annotations

import atexit
import io
import math
import os
import sys
import traceback
from typing import Any

from hydra.experimental.callback import Callback

from backprop.app.runs import swept_params
from backprop.errors import TrackingError
from backprop.pipeline import plots
from backprop.tracking.store import Store
from backprop.tracking.tracker import unreachable

PARENT_RUN_ENV = "BACKPROP_SWEEP_PARENT_RUN"
SCORE = "kept_val_accuracy"


class SweepTracker(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.store: Store | None = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.store = Store()
        try:
            experiment_id = self.store.experiment_id(config.experiment_name)
        except TrackingError as err:
            print(f"backprop-experiment: error: {err}", file=sys.stderr)
            sys.exit(2)
        overrides = list(config.hydra.overrides.task)
        run = self.store.client.create_run(
            experiment_id,
            run_name=f"sweep: {' '.join(overrides)}"[:250],
            tags={"sweep": "parent", "sweep_overrides": " ".join(overrides)[:5000]},
        )
        self.parent_run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        # A launcher that fails after this point never reaches on_multirun_end.
        atexit.register(self._abandoned)

    def _abandoned(self) -> None:
        """At exit, a parent run still RUNNING ended with its sweep: FAILED."""
        if self.parent_run_id is None or self.store is None:
            return
        try:
            if self.store.client.get_run(self.parent_run_id).info.status == "RUNNING":
                self.store.client.set_terminated(self.parent_run_id, "FAILED")
        except Exception as err:
            if unreachable(err) is None:
                raise

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.parent_run_id is None or self.store is None:
            return
        os.environ.pop(PARENT_RUN_ENV, None)
        try:
            failed, best = summarise(self.store, self.parent_run_id, config.experiment_name)
            name = config.get("registered_model_name")
            if name and best is not None:
                version = self.store.register_model(best, name)
                print(f"registered the best job's model (run {best}) as models:/{name}/{version}")
        except Exception as err:  # Hydra would log it and exit 0
            reason = unreachable(err) or (str(err) if isinstance(err, TrackingError) else None)
            if reason is None:  # a bug: its traceback, and a failed sweep all the same
                traceback.print_exc()
                sys.exit(1)
            print(f"backprop-experiment: error: the sweep's summary could not be logged to "
                  f"{self.store.shown}: {reason}", file=sys.stderr)  # fmt: skip
            sys.exit(1)
        if failed:
            names = ", ".join(failed)
            print(f"backprop-experiment: {len(failed)} job(s) failed: {names}", file=sys.stderr)
            sys.exit(1)


def mark_parent_killed(store: Store, parent_run_id: str) -> None:
    """End an interrupted sweep's parent run as KILLED (a server that is gone: never mind)."""
    try:
        store.client.set_terminated(parent_run_id, "KILLED")
    except Exception as err:
        if unreachable(err) is None:
            raise


def summarise(
    store: Store, parent_run_id: str, experiment_name: str
) -> tuple[list[str], str | None]:
    """Log the best child and the summary figure into the parent.

    Returns the failed jobs and the best job's run id (None if no job scored).
    """
    client = store.client
    runs = store.children(parent_run_id, experiment_name)
    failed = [r.info.run_name or r.info.run_id for r in runs if r.info.status != "FINISHED"]
    scored = [r for r in runs if r.info.status == "FINISHED" and _score(r) is not None]
    swept = swept_params(runs)
    client.log_param(parent_run_id, "swept_params", ", ".join(swept) or "none")
    client.log_metric(parent_run_id, "jobs", len(runs))
    client.log_metric(parent_run_id, "failed_jobs", len(failed))
    if scored:
        best = max(scored, key=_score)
        client.log_param(parent_run_id, "best_run_id", best.info.run_id)
        for key in swept:
            client.log_param(parent_run_id, f"best.{key}", best.data.params.get(key))
        client.log_metric(parent_run_id, f"best_{SCORE}", _score(best))
        client.log_metric(parent_run_id, "best_test_accuracy", best.data.metrics["test_accuracy"])
        figure = plots.sweep_summary(
            [{k: r.data.params.get(k) for k in swept} for r in scored],
            [_score(r) for r in scored],
            swept,
            best_index=scored.index(best),
        )
        client.log_image(parent_run_id, _image(figure), "sweep_summary.png")
    client.set_terminated(parent_run_id, status="FAILED" if failed else "FINISHED")
    return failed, best.info.run_id if scored else None


def _score(run: Any) -> float | None:
    value = run.data.metrics.get(SCORE)
    return None if value is None or math.isnan(value) else value


def _image(png: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(png))
