"""One MLflow run, as an object: what a stage logs, and the training loop's callback.

A front door opens a :class:`Tracker` (a new run, a run to resume, a job nested
under a sweep's parent) and hands it to the stages as their
:class:`~backprop.pipeline.runlog.RunLog`: params, tags and the dataset when
training starts, per-epoch metrics in batches, the model and its reports, the
test metrics.  Leaving the ``with`` block ends the run: FINISHED, FAILED with
the error as a tag, or KILLED on Ctrl-C or SIGTERM.

Everything goes through an ``MlflowClient`` with the run's id, never MLflow's
process-wide "active run".  If a tracking server stops answering mid-run,
every later call is skipped and noted, training and its outputs go on, and one
warning at the end lists what was not logged.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import tenacity

from backprop.nn.training import EpochMetrics, History, TrainingState
from backprop.pipeline.interrupt import deferred
from backprop.pipeline.prepared import Prepared
from backprop.pipeline.project import git_state
from backprop.pipeline.runlog import TrainingStopped
from backprop.pipeline.settings import Settings
from backprop.tracking.store import Store, database_written, mlflow, quiet, unwritable

# What a run logs as metrics, and nothing more (the MLflow UI draws a chart per metric):
# the per-epoch series, then one value each of the weights kept and of the test split
# (metrics.json's numbers; per-class scores go in a table artifact, not in metrics).
EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "learning_rate")
HEADLINE_METRICS = (
    "kept_val_accuracy", "kept_val_loss", "kept_epoch", "test_accuracy", "test_loss",
    "test_macro_f1",
)  # fmt: skip


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": "0.1"}``; lists stay whole."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | bool | None) else str(value)
    return flat


def unreachable(err: BaseException) -> str | None:
    """Why ``err`` means the tracking server is gone, or None if it means something else.

    MLflow wraps the HTTP library's exception in its own; the chain keeps the original.
    """
    import requests

    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, requests.exceptions.Timeout):
            return "read timed out"
        if isinstance(err, requests.exceptions.ConnectionError | ConnectionError):
            return "connection refused" if "refused" in str(err).lower() else "no connection"
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


class Tracker:
    """One MLflow run.  ``Tracker.open(...)`` starts or resumes it; use it as a context."""

    def __init__(
        self, store: Store, run_id: str, *, resumed: bool = False,
        params_file: str | None = None, extra_reports: tuple[str, ...] = (),
        epoch_interval: float = 2.0,
    ) -> None:  # fmt: skip
        self.store, self.run_id, self.resumed = store, run_id, resumed
        self.params_file, self.extra_reports = params_file, extra_reports
        # Per-epoch metrics go in batches at most every ``epoch_interval`` seconds: one
        # database write per epoch costs ~6 ms on SQLite, more over HTTP.
        self.epoch_interval = epoch_interval
        self._pending: list[Any] = []
        self._last_sent = time.monotonic()
        self.offline: str | None = None  # why the server stopped answering, once it has
        self.lost: list[str] = []  # what could not be logged since
        self._lost_epochs: set[int] = set()

    @classmethod
    def open(
        cls, store: Store, experiment_name: str, *, resume_run_id: str | None = None,
        parent_run_id: str | None = None, run_name: str | None = None,
        tags: dict[str, str] | None = None, **options: Any,
    ) -> Tracker:  # fmt: skip
        """A new run (nested under ``parent_run_id``), or run ``resume_run_id`` going on."""
        experiment_id = store.experiment_id(experiment_name)
        client = store.client
        # deferred: a Ctrl-C now would leave a run RUNNING that nobody ends
        with deferred(), database_written(store):
            if resume_run_id is not None:
                client.update_run(resume_run_id, status="RUNNING")
                # an interrupted run going on: it is not failing now
                if "error" in client.get_run(resume_run_id).data.tags:
                    client.delete_tag(resume_run_id, "error")
                if parent_run_id is not None:  # a resumed sweep is one sweep: it moves along
                    client.set_tag(resume_run_id, "mlflow.parentRunId", parent_run_id)
                return cls(store, resume_run_id, resumed=True, **options)
            tags = dict(tags or {})
            if parent_run_id is not None:
                tags["mlflow.parentRunId"] = parent_run_id
            if run_name is None:
                run = client.create_run(experiment_id, tags=tags)
            else:
                run = client.create_run(experiment_id, tags=tags, run_name=run_name)
        return cls(store, run.info.run_id, **options)

    # -- the run's end ------------------------------------------------------------

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type | None, err: BaseException | None, tb: Any) -> None:
        self.flush()
        if err is None:
            self._guarded("its end (FINISHED)", self.store.client.set_terminated, self.run_id)
        elif isinstance(err, TrainingStopped):  # on purpose (pruned): KILLED, not FAILED
            err.run_id = err.run_id or self.run_id
            for key, value in {**err.tags, "stopped": err.reason}.items():
                self._guarded("its end", self.store.client.set_tag, self.run_id, key, value)
            self._guarded("its end", self.store.client.set_terminated, self.run_id, "KILLED")
        elif isinstance(err, KeyboardInterrupt):
            why = f"interrupted ({getattr(err, 'signal_name', 'SIGINT')})"
            self._end("KILLED", why)
        else:
            self._end("FAILED", f"{type(err).__name__}: {err}"[:5000])
        self.report_lost()

    def _end(self, status: str, error: str) -> None:
        client = self.store.client
        self._guarded("its end", client.set_tag, self.run_id, "error", error)
        self._guarded("its end", client.set_terminated, self.run_id, status)

    # -- the RunLog a stage talks to ------------------------------------------------

    def training_started(self, settings: Settings, source: dict[str, Any] | None) -> None:
        """Params, tags (git, dataset digest), the dataset as an input, the composed config."""
        if not self.resumed:  # a resumed run has them from its first start
            self._guarded("the params, tags and dataset", self._log_start, settings, source)

    def _log_start(self, settings: Settings, source: dict[str, Any] | None) -> None:
        client = self.store.client
        client.log_batch(
            self.run_id,
            params=[_param(k, v) for k, v in flatten(settings.as_params()).items()],
        )
        tags = {**git_state(self.store.root), "stage": "train"}
        if source is not None:
            tags["dataset_digest"] = source["sha256"]
            if "files" in source:  # MNIST's idx files: are they the published ones?
                published = all(f["published"] for f in source["files"])
                tags["dataset_published"] = str(published).lower()
            _log_dataset(client, self.run_id, source)
        for key, value in tags.items():
            client.set_tag(self.run_id, key, value)
        if self.params_file is not None:
            client.log_artifact(self.run_id, self.params_file, "config")

    def __call__(self, metrics: EpochMetrics) -> None:
        """One epoch: sent with the others at most every ``epoch_interval`` seconds."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {"train_loss": metrics.train_loss}
        if metrics.val_loss is not None:
            values.update(val_loss=metrics.val_loss, val_accuracy=metrics.val_accuracy)
        values["learning_rate"] = metrics.learning_rate
        self._pending += [Metric(k, float(v), now, metrics.epoch) for k, v in values.items()]
        if time.monotonic() - self._last_sent >= self.epoch_interval:
            self.flush()

    def flush(self) -> None:
        """Send the epochs not sent yet."""
        pending, self._pending = self._pending, []
        self._last_sent = time.monotonic()
        client = self.store.client if pending else None
        for start in range(0, len(pending), 1000):  # MLflow's limit per batch
            batch = pending[start : start + 1000]
            if not self._guarded("per-epoch metrics", client.log_batch, self.run_id, batch):
                self._lost_epochs.update(m.step for m in batch)

    def resumed_from(self, state: TrainingState) -> None:
        """Send the epochs before ``state.epoch`` that a killed process had not sent yet."""
        client = self.store.client
        history = self._guarded("per-epoch metrics", client.get_metric_history, self.run_id,
                                "train_loss")  # fmt: skip
        logged = {m.step for m in history or []}
        for metrics in state.history.epochs:
            if metrics.epoch not in logged:
                self(metrics)
        self.flush()
        self._guarded("tag resumed_after_epoch", client.set_tag, self.run_id,
                      "resumed_after_epoch", str(state.epoch))  # fmt: skip

    def model_trained(
        self, model: Path, reports: list[Path], prepared: Prepared, history: History
    ) -> None:
        """The training reports and the pyfunc model, which holds the model folder (weights,
        classes, scaler): ``mlflow.pyfunc.load_model`` turns raw rows into labels."""
        self.flush()
        self._guarded("the model and the training reports", self._log_model, model, reports,
                      prepared, history)  # fmt: skip

    def _log_model(
        self, model: Path, reports: list[Path], prepared: Prepared, history: History
    ) -> None:
        from backprop.tracking.pyfunc import log_pyfunc

        client = self.store.client
        kept = history.kept()  # the weights written: what runs are ranked by
        self._log_metrics(
            {
                "kept_val_accuracy": kept.val_accuracy,
                "kept_val_loss": kept.val_loss,
                "kept_epoch": history.best_epoch or len(history.epochs),
            }
        )
        for path in reports:
            # The curves at the top: the compare view of the MLflow UI shows side by side
            # only the artifacts common to the runs at that level.
            client.log_artifact(
                self.run_id, str(path), None if path.suffix == ".png" else "reports"
            )
        weights_sha256 = log_pyfunc(self.store, self.run_id, model, prepared)
        # The weights' hash, to tell a bit-identical reproduction (`backprop reproduce`).
        client.set_tag(self.run_id, "weights_sha256", weights_sha256)

    def evaluated(
        self, metrics: dict[str, Any], per_class: list[dict[str, Any]], reports: list[Path],
        figures: Path,
    ) -> None:  # fmt: skip
        self._guarded("the test metrics and figures", self._log_evaluation, metrics, per_class,
                      reports, figures)  # fmt: skip

    def _log_evaluation(
        self, metrics: dict[str, Any], per_class: list[dict[str, Any]], reports: list[Path],
        figures: Path,
    ) -> None:  # fmt: skip
        self._log_metrics({k: v for k, v in metrics.items() if k.startswith("test_")})
        client = self.store.client
        for path in [*reports, *map(Path, self.extra_reports)]:
            if path.exists():
                client.log_artifact(self.run_id, str(path), "reports")
        client.log_artifacts(self.run_id, str(figures), "reports/figures")
        if per_class:
            _log_table(client, self.run_id, per_class, PER_CLASS_TABLE)

    def _log_metrics(self, values: dict[str, float | None]) -> None:
        """One value each, rounded to 4 significant digits as tables show them (the run's
        metrics.json artifact keeps every digit); missing values are left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, rounded(v), now, 0) for k, v in values.items() if v is not None]
        self.store.client.log_batch(self.run_id, metrics=metrics)

    # -- a server that went away ---------------------------------------------------------

    def _guarded(self, what: str, call: Any, *args: Any) -> Any:
        """``call(*args)``; if the tracking server is gone, ``what`` is noted as lost (and
        every later call skipped) instead of failing the run's training.  Returns None then."""
        if self.offline is not None:
            self.lost.append(what)
            return None
        try:
            result = call(*args)
        except Exception as err:
            reason = (unreachable(err) if self.store.is_server else None) or unwritable(err)
            if reason is None:
                raise
            self.offline = reason
            self.lost.append(what)
            return None
        return True if result is None else result

    def report_lost(self) -> None:
        """Say, at the end, what the run could not log (the outputs on disk are complete)."""
        if not self.lost:
            return
        lost = list(dict.fromkeys(self.lost))
        if self._lost_epochs and "per-epoch metrics" in lost:
            first, last = min(self._lost_epochs), max(self._lost_epochs)
            lost[lost.index("per-epoch metrics")] = f"per-epoch metrics of epochs {first}-{last}"
        print(
            f"backprop: warning: the MLflow tracking {self._failure()} ({self.offline}); not "
            f"logged to run {self.run_id}: {'; '.join(lost)}. The outputs on disk are "
            "complete; the run stays RUNNING in the store.",
            file=sys.stderr,
        )
        self.lost, self._lost_epochs = [], set()

    def _failure(self) -> str:
        if self.store.is_server:
            return f"server {self.store.shown} stopped answering"
        return f"store {self.store.shown} could not be written"


PER_CLASS_TABLE = "reports/per_class.json"


def _log_table(client: Any, run_id: str, rows: list[dict[str, Any]], artifact_file: str) -> None:
    """``rows`` as an MLflow table artifact: the artifact view shows it as a table and
    ``MlflowClient.load_table`` joins it across runs.  Written as ``log_table`` writes it
    (pandas' "split" JSON and the ``mlflow.loggedArtifacts`` tag), but replaced rather than
    appended to, as ``log_table`` would when evaluate runs again in the same run."""
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    columns = list(rows[0])
    table = {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}
    client.log_dict(run_id, table, artifact_file)
    logged = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in logged:
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([*logged, entry]))


def rounded(value: float) -> float:
    """``value`` to 4 significant digits: 0.9851, 0.05621, 1.35e+10."""
    value = float(value)
    return float(f"{value:.4g}") if math.isfinite(value) else value


def _param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(key, value)


@tenacity.retry(
    retry=tenacity.retry_if_exception(lambda err: "UNIQUE constraint" in str(err)),
    stop=tenacity.stop_after_attempt(5),
    wait=tenacity.wait_incrementing(start=0.2, increment=0.2),
    reraise=True,
)
def _log_dataset(client: Any, run_id: str, source: dict[str, Any]) -> None:
    """The CSV as the run's training dataset.  Retried: parallel jobs logging the same
    dataset race to create its row (SQLite: "UNIQUE constraint failed: datasets..."),
    and the loser finds it on the next attempt."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    path = Path(source["path"])
    dataset = Dataset(
        name=path.name,
        digest=source["sha256"][:16],
        source_type="local",
        source=json.dumps({"uri": path.resolve().as_uri()}),
    )
    tags = [InputTag("mlflow.data.context", "training"), InputTag("rows", str(source["rows"]))]
    with quiet():
        client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])


__all__ = ["Tracker", "flatten", "mlflow"]
