"""Everything that talks to MLflow: one run per pipeline execution.

The train stage opens the run (params, tags, dataset, per-epoch metrics,
model, artifacts) and leaves its id in ``data/.mlflow-run``; the evaluate
stage logs the test metrics and figures into the same run.  A stage that
raises marks the run FAILED (KILLED on Ctrl-C) with the error as a tag.

Tracking goes to ``MLFLOW_TRACKING_URI`` when set, else to
``sqlite:///<project root>/mlflow.db``, with artifacts under
``<project root>/mlartifacts``; the project root is found from the working
directory, also from DVC's queued-experiment copies in ``.dvc/tmp/exps/``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RUN_FILE = Path("data/.mlflow-run")

# MLflow's own chatter (schema migrations, artifact download bars, hints about
# type hints and pickling) says nothing a pipeline user can act on.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# A tracking server that does not answer must not hold a run up for minutes: MLflow
# retries 7 times with growing pauses and waits 120 s per request by default.
TIMEOUT_ENV = "BACKPROP_TRACKING_TIMEOUT"


def server_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV, "10")))
    except ValueError:
        return 10.0


os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(round(server_timeout())))


def _mlflow():
    """``mlflow``, imported on first use (it costs seconds) and told to keep quiet."""
    with _quiet():
        import mlflow
        import mlflow.pyfunc
    # After the import: mlflow configures its logger when it is first imported.
    # urllib3: its retry warnings when a tracking server is down; we say it once, at the end.
    for name in ("mlflow", "alembic", "urllib3.connectionpool"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return mlflow


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def project_root(start: Path | None = None) -> Path:
    """The folder holding dvc.yaml, outside any ``.dvc/tmp/exps`` copy."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):  # a queued experiment runs in <root>/.dvc/tmp/exps/...
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def tracking_uri(root: Path | None = None) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


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


def git_state(root: Path) -> dict[str, str]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
    }


def connect(experiment_name: str) -> str:
    """Point MLflow at the store and the experiment; returns the experiment id.

    The first connection to a fresh SQLite file creates its tables: processes
    doing that at once (queued DVC experiments, parallel jobs) corrupt it, so
    they take turns on a lock file beside the database.
    """
    mlflow = _mlflow()

    root = project_root()
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    known = _EXPERIMENTS.get((uri, experiment_name))
    if known is not None:
        return known
    check_server(uri)
    if not uri.startswith("sqlite:///"):  # a tracking server keeps its own artifact store
        experiment_id = _experiment_id(mlflow, experiment_name, None)
    else:
        from backprop.io import exclusive_lock

        with exclusive_lock(uri.removeprefix("sqlite:///") + ".lock"):
            experiment_id = _experiment_id(mlflow, experiment_name, root / "mlartifacts")
    _EXPERIMENTS[(uri, experiment_name)] = experiment_id
    return experiment_id


_EXPERIMENTS: dict[tuple[str, str], str] = {}  # (tracking URI, name) -> id, once per process


def check_server(uri: str) -> None:
    """A tracking server must answer its health check within the timeout, or TrackingError."""
    import urllib.error
    import urllib.request

    if not uri.startswith(("http://", "https://")):
        return
    timeout = server_timeout()
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as answer:
            if answer.status == 200:
                return
            reason = f"HTTP {answer.status}"
    except urllib.error.HTTPError as err:
        reason = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        reason = str(getattr(err, "reason", err))
    raise TrackingError(
        f"the MLflow tracking server {_shown_uri()} does not answer ({reason}; waited up to "
        f"{timeout:g} s, {TIMEOUT_ENV} sets it); start it, or unset MLFLOW_TRACKING_URI to "
        "track into ./mlflow.db"
    )


class _Offline:
    """What could not be logged after the tracking server stopped answering."""

    reason: str | None = None
    lost: list[str] = []
    epochs: set[int] = set()  # epochs whose metrics were not sent


def _unreachable(err: BaseException) -> str | None:
    """Why ``err`` means the tracking server is gone, or None if it means something else."""
    if not tracking_uri().startswith(("http://", "https://")):
        return None
    text = f"{type(err).__name__}: {err}"
    markers = ("Max retries exceeded", "Connection refused", "ConnectionError",
               "Read timed out", "RemoteDisconnected", "Connection aborted")  # fmt: skip
    if not any(marker in text for marker in markers):
        return None
    for marker in ("Connection refused", "Read timed out", "RemoteDisconnected"):
        if marker in text:
            return marker.lower()
    return "no connection"


def guarded(what: str, call, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; if the tracking server is gone, ``what`` is noted as lost
    (and every later call is skipped) instead of failing the run's training."""
    if _Offline.reason is not None:
        _Offline.lost.append(what)
        return _LOST
    try:
        return call(*args, **kwargs)
    except Exception as err:
        reason = _unreachable(err)
        if reason is None:
            raise
        _Offline.reason = reason
        _Offline.lost.append(what)
        return _LOST


_LOST = object()  # what guarded returns for a call that did not reach the server


def report_lost(run_id: str) -> None:
    """Say, at the end, what the run could not log (the outputs on disk are complete)."""
    if not _Offline.lost:
        return
    import sys

    lost = list(dict.fromkeys(_Offline.lost))
    if _Offline.epochs:
        lost[lost.index("per-epoch metrics")] = (
            f"per-epoch metrics of epochs {min(_Offline.epochs)}-{max(_Offline.epochs)}"
        )
    _Offline.lost, _Offline.epochs = [], set()
    print(
        f"backprop: warning: the MLflow tracking server {_shown_uri()} stopped answering "
        f"({_Offline.reason}); not logged to run {run_id}: {'; '.join(lost)}. The outputs on "
        "disk are complete; the run stays RUNNING in the server's store.",
        file=sys.stderr,
    )


def _experiment_id(mlflow, experiment_name: str, artifacts_dir: Path | None) -> str:
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = artifacts_dir.as_uri() if artifacts_dir is not None else None
    try:
        return mlflow.create_experiment(experiment_name, artifact_location=artifacts)
    except Exception:  # created meanwhile by a parallel job
        return mlflow.get_experiment_by_name(experiment_name).experiment_id


@contextlib.contextmanager
def pipeline_run(
    experiment_name: str,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> Iterator[Any]:
    """An active MLflow run (a new one, or ``run_id`` resumed) that fails with its stage.

    ``parent_run_id`` nests a new run under a sweep's parent run.
    """
    mlflow = _mlflow()

    from backprop.interrupt import deferred

    experiment_id = connect(experiment_name)
    with deferred():  # a Ctrl-C now would leave a run RUNNING that nobody ends
        if run_id is not None:
            run = mlflow.start_run(run_id=run_id)
            if "error" in run.data.tags:  # an interrupted run going on: it is not failing now
                mlflow.MlflowClient().delete_tag(run_id, "error")
        else:
            run = mlflow.start_run(
                experiment_id=experiment_id, parent_run_id=parent_run_id, run_name=run_name,
                tags=tags,
            )  # fmt: skip
    try:
        yield run
    except KeyboardInterrupt as err:
        guarded("its end", _end, "KILLED", f"interrupted ({getattr(err, 'signal_name', 'SIGINT')})")
        raise
    except BaseException as err:
        guarded("its end", _end, "FAILED", f"{type(err).__name__}: {err}"[:5000])
        raise
    else:
        guarded("its end (FINISHED)", _end, "FINISHED")
    finally:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.info.run_id:
            # Its end could not be sent (the server went away): let this process forget it,
            # as mlflow.end_run does first thing, so that another run can start.
            mlflow.tracking.fluent._active_run_stack.get().pop()
        report_lost(run.info.run_id)


def _end(status: str, error: str | None = None) -> None:
    mlflow = _mlflow()
    if error is not None:
        mlflow.set_tag("error", error)
    mlflow.end_run(status=status)


def remember_run(run_id: str) -> None:
    from backprop.io import atomic_write_text

    atomic_write_text(RUN_FILE, run_id + "\n")


def remembered_run() -> str | None:
    try:
        return RUN_FILE.read_text().strip() or None
    except FileNotFoundError:
        return None


def log_training_start(params: dict[str, Any], source: dict | None, params_file: str) -> None:
    """Params, tags (git, dataset digest), the dataset as an input, the composed config."""
    guarded("the params, tags and dataset", _log_training_start, params, source, params_file)


def _log_training_start(params: dict[str, Any], source: dict | None, params_file: str) -> None:
    mlflow = _mlflow()
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    flat = flatten({k: v for k, v in params.items() if k != "conf_digest"})
    flat.pop("train.resume", None)  # how the run was started, not what it trains
    mlflow.log_params(flat)
    tags = {**git_state(project_root()), "stage": "train"}
    if source is not None:
        tags["dataset_digest"] = source["sha256"]
        with _quiet():
            uri = Path(source["path"]).resolve().as_uri()
            dataset = MetaDataset(
                resolve_dataset_source(uri),
                name=Path(source["path"]).name,
                digest=source["sha256"][:16],
            )
            _log_input_once(mlflow, dataset, {"rows": str(source["rows"])})
    mlflow.set_tags(tags)
    mlflow.log_artifact(params_file, artifact_path="config")


def _log_input_once(mlflow, dataset, tags: dict[str, str], attempts: int = 5) -> None:
    """``mlflow.log_input``, retried: parallel jobs logging the same dataset race to create
    its row (SQLite store: "UNIQUE constraint failed: datasets..."); the loser finds it
    on the next attempt."""
    import time

    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context="training", tags=tags)
            return
        except MlflowException as err:
            if "UNIQUE constraint" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class EpochLog:
    """Per-epoch metrics, sent in batches at most every ``interval`` seconds and on ``flush``.

    One database write per epoch costs ~6 ms on SQLite, more over HTTP: for 300 short
    epochs that is seconds.  The MLflow UI refreshes its charts every few seconds anyway.
    """

    def __init__(self, interval: float = 2.0) -> None:
        import time

        self.interval = interval
        self._clock = time.monotonic
        self._last = self._clock()
        self._pending: list = []

    def add(self, metrics) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        values = {"train_loss": metrics.train_loss}
        if metrics.val_loss is not None:
            values.update(val_loss=metrics.val_loss, val_accuracy=metrics.val_accuracy)
        values["learning_rate"] = metrics.learning_rate
        self._pending += [Metric(k, float(v), now, metrics.epoch) for k, v in values.items()]
        if self._clock() - self._last >= self.interval:
            self.flush()

    def backfill(self, epochs: list) -> None:
        """Send the epochs of ``epochs`` that the active run does not have yet."""
        mlflow = _mlflow()
        client = mlflow.MlflowClient()
        run_id = mlflow.active_run().info.run_id
        logged = {m.step for m in client.get_metric_history(run_id, "train_loss")}
        for metrics in epochs:
            if metrics.epoch not in logged:
                self.add(metrics)
        self.flush()

    def flush(self) -> None:
        mlflow = _mlflow()

        pending, self._pending = self._pending, []
        self._last = self._clock()
        if not pending:
            return
        client = mlflow.MlflowClient()
        run_id = mlflow.active_run().info.run_id
        for start in range(0, len(pending), 1000):  # MLflow's limit per batch
            batch = pending[start : start + 1000]
            if guarded("per-epoch metrics", client.log_batch, run_id, metrics=batch) is _LOST:
                _Offline.epochs.update(m.step for m in batch)


def log_trained_model(
    model_dir: str, reports: list[str], example: Any, best_epoch: int | None
) -> None:
    """The training reports and the pyfunc model, which holds the model folder (weights,
    classes, scaler): ``mlflow.pyfunc.load_model`` turns raw rows into labels."""
    guarded("the model and the training reports", _log_trained_model, model_dir, reports,
            example, best_epoch)  # fmt: skip


def _log_trained_model(
    model_dir: str, reports: list[str], example: Any, best_epoch: int | None
) -> None:
    mlflow = _mlflow()
    from backprop.predictor import Predictor

    for path in reports:
        mlflow.log_artifact(path, artifact_path="reports")
    if best_epoch is not None:
        mlflow.log_metric("best_epoch", best_epoch)
    predictor = Predictor(model_dir)
    # The weights' hash, to tell a bit-identical reproduction (`backprop reproduce`).
    mlflow.set_tag("weights_sha256", predictor.weights_sha256)
    output = predictor.predict(example)
    with _quiet():
        signature = mlflow.models.infer_signature(example, output)
        _log_pyfunc(model_dir, signature, example)


def _log_pyfunc(model_dir: str, signature: Any, example: Any) -> None:
    mlflow = _mlflow()
    import numpy as np
    import pandas as pd
    import scipy

    with _quiet():  # mlflow warns, when the class is defined, that predict has no type hints
        from backprop.serving import BackpropModel

    # What mlflow.pyfunc.log_model does, but through Model.log, which alone can skip the
    # check that the input example can be served (a reload and a predict: a third of the
    # model's logging time, in every sweep job).  Serving the logged model is tested for real.
    mlflow.models.Model.log(
        artifact_path=None,
        name="model",
        flavor=_PyfuncFlavor,
        flavor_name="pyfunc.CustomPythonModel",
        python_model=BackpropModel(),
        artifacts={"model_dir": model_dir},
        signature=signature,
        input_example=example,
        pip_requirements=[
            f"numpy=={np.__version__}",
            f"pandas=={pd.__version__}",
            f"scipy=={scipy.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
        validate_serving_input=False,
    )


class _PyfuncFlavor:
    """``mlflow.pyfunc`` as ``Model.log`` uses a flavor, without the switch it reads."""

    @staticmethod
    def save_model(*, validate_serving_input: bool = True, **kwargs: Any) -> None:
        _mlflow().pyfunc.save_model(**kwargs)


def log_evaluation(metrics: dict[str, Any], files: list[str], figures_dir: str) -> None:
    guarded("the test metrics and figures", _log_evaluation, metrics, files, figures_dir)


def _log_evaluation(metrics: dict[str, Any], files: list[str], figures_dir: str) -> None:
    mlflow = _mlflow()

    test = metrics["test"]
    values = {f"test_{k}": v for k, v in test.items() if isinstance(v, float)}
    for label, scores in test["per_class"].items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        for name in ("precision", "recall", "f1"):
            values[f"test_{name}_class_{safe}"] = scores[name]
    mlflow.log_metrics(values)
    for path in files:
        if Path(path).exists():
            mlflow.log_artifact(path, artifact_path="reports")
    mlflow.log_artifacts(figures_dir, artifact_path="reports/figures")


def log_metric(name: str, value: float) -> None:
    guarded(name, _mlflow().log_metric, name, value)


def _at_store():
    """``mlflow``, pointed at the tracking store (outside a pipeline run)."""
    mlflow = _mlflow()
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def download_model_folder(uri: str, dst: Path) -> Path:
    """The model folder (model.json, weights.npz) of the pyfunc model at an MLflow model URI,
    downloaded into ``dst``.  Read as files: nothing of the model is unpickled."""
    import yaml

    from backprop.io import ModelFileError

    mlflow = _at_store()
    from mlflow.exceptions import MlflowException

    try:
        with _quiet():
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except MlflowException as err:
        raise ModelFileError(
            f"{uri}: {_first_line(err.message)} (tracking store {_shown_uri()})"
        ) from None
    except OSError as err:
        raise ModelFileError(f"{uri}: cannot download the model ({err})") from None
    try:
        spec = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
        folder = spec["flavors"]["python_function"]["artifacts"]["model_dir"]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        raise ModelFileError(
            f"{uri}: not a model logged by backprop (no model_dir artifact in its MLmodel)"
        ) from None
    return local / folder


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "unknown error"


def _shown_uri() -> str:
    """The tracking URI without a password in it."""
    import re

    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", tracking_uri())


class TrackingError(ValueError):
    """A run, model or name the tracking store does not have."""


def get_run(run_id: str):
    """The MLflow run ``run_id``; TrackingError, in one line, if the store has no such run."""
    mlflow = _at_store()
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_run(run_id)
    except MlflowException as err:
        raise TrackingError(
            f"run {run_id}: {_first_line(err.message)} (tracking store {_shown_uri()}); "
            "`backprop runs` lists the runs"
        ) from None


def register_model(run_id: str, name: str) -> str:
    """Register the model of run ``run_id`` as a new version of ``name``; returns the version."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    run = get_run(run_id)
    client = mlflow.MlflowClient()
    models = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = 'model'"
    )
    if not models:
        raise TrackingError(
            f"run {run_id} has no logged model (status {run.info.status}); register a run "
            "that finished training"
        )
    try:
        # MLflow prints its own progress lines to stderr; the caller says what happened.
        with _quiet(), contextlib.redirect_stderr(io.StringIO()):
            version = mlflow.register_model(f"models:/{models[0].model_id}", name)
    except MlflowException as err:
        raise TrackingError(f"cannot register {name!r}: {_first_line(err.message)}") from None
    return str(version.version)


def download_run_file(run_id: str, path: str, dst: Path) -> Path | None:
    """The artifact ``path`` of run ``run_id``, downloaded into ``dst``; None if it has none."""
    mlflow = _at_store()
    from mlflow.exceptions import MlflowException

    try:
        with _quiet():
            return Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=path, dst_path=str(dst)
                )
            )
    except (MlflowException, OSError):
        return None


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    client = _mlflow().MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def active_run_id() -> str | None:
    run = _mlflow().active_run()
    return run.info.run_id if run else None


def run_exists(run_id: str) -> bool:
    try:
        get_run(run_id)
    except TrackingError:
        return False
    return True


def set_tag(key: str, value: str) -> None:
    guarded(f"tag {key}", _mlflow().set_tag, key, value)


def offline() -> bool:
    """Whether the tracking server stopped answering during this process."""
    return _Offline.reason is not None


def terminate(run_id: str, status: str) -> None:
    """End run ``run_id`` (not the active one) with ``status``."""
    client = _mlflow().MlflowClient()
    guarded("the sweep's end", client.set_terminated, run_id, status=status)
