"""The MLflow tracking store of a project, and everything asked of it outside a run.

Tracking goes to ``MLFLOW_TRACKING_URI`` when set, else to
``sqlite:///<project root>/mlflow.db`` with artifacts under
``<project root>/mlartifacts`` (never ``./mlruns``).  MLflow is imported on
first use (it costs about two seconds), with its telemetry off: nothing here
goes to the network but to a tracking server the user named.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from backprop.errors import ModelFileError, TrackingError
from backprop.pipeline.files import exclusive_lock
from backprop.pipeline.project import project_root

# A tracking server that does not answer must not hold a run up for minutes: MLflow
# retries 7 times with growing pauses and waits 120 s per request by default.
TIMEOUT_ENV = "BACKPROP_TRACKING_TIMEOUT"


def server_timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(TIMEOUT_ENV, "10")))
    except ValueError:
        return 10.0


def mlflow() -> Any:
    """``mlflow``, imported on first use and told to keep quiet and offline.

    Its settings are environment variables read at import and per request, so they
    are set here, just before the import, and only where the user has not set them.
    """
    defaults = {
        # MLflow 3 posts usage telemetry from every process that imports it.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # its download progress bars and retry warnings say nothing a user can act on
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(round(server_timeout())),
        # its "View run ... at" lines on stdout: our own line names the run
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    with quiet():
        import mlflow
        import mlflow.pyfunc
    # After the import: mlflow configures its logger when it is first imported.
    # urllib3: its retry warnings when a tracking server is down; we say it once, at the end.
    for name in ("mlflow", "alembic", "urllib3.connectionpool"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return mlflow


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """MLflow's hints (type hints, pickling, deprecations): nothing a pipeline user can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # pandas 3 on MLflow's code
        yield


def tracking_uri(root: Path | None = None) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def shown_uri(uri: str) -> str:
    """The tracking URI without a password in it."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)


def first_line(text: str | None) -> str:
    text = (text or "").strip()
    return text.splitlines()[0] if text else "unknown error"


def unwritable(err: BaseException) -> str | None:
    """Why ``err`` means the tracking database cannot be written (a full disk, a read-only
    file), or None if it means something else.  MLflow and SQLAlchemy wrap SQLite's error;
    its text survives in the chain."""
    seen = 0
    while err is not None and seen < 10:
        text = str(err)
        for found, reason in (
            ("database or disk is full", "the disk is full"),
            ("disk I/O error", "a disk I/O error"),
            ("attempt to write a readonly database", "it is read-only"),
        ):
            if found in text:
                return reason
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


@contextlib.contextmanager
def database_written(store: Store) -> Iterator[None]:
    """A write the run cannot start without: a database that cannot take it is one line."""
    try:
        yield
    except Exception as err:
        reason = unwritable(err)
        if reason is None:
            raise
        raise TrackingError(
            f"the MLflow tracking database {store.shown} cannot be written ({reason}); free "
            "some space (or make it writable) and run again: nothing was changed in it"
        ) from None


# What MLflow's tracking stores accept (postgresql+psycopg2:// counts as postgresql).
TRACKING_SCHEMES = {"sqlite", "http", "https", "postgresql", "mysql", "mssql", "file"}


class Store:
    """The project's tracking store: experiments, runs, models, the registry."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or project_root()
        self.uri = tracking_uri(self.root)
        self._experiments: dict[str, str] = {}
        self._uri_checked = False

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @property
    def shown(self) -> str:
        return shown_uri(self.uri)

    @cached_property
    def client(self) -> Any:
        self.check_uri()
        return mlflow().MlflowClient(self.uri)

    @staticmethod
    def _check_sqlite_file(path: Path) -> None:
        """A tracking database that is a folder, not SQLite or damaged: one line naming it.
        It is never written to or replaced: its runs may be recoverable."""
        import sqlite3

        what = None
        if path.is_dir():
            what = "is a folder, not an SQLite database"
        elif path.is_file():
            try:
                with contextlib.closing(
                    sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                ) as db:  # read only: no journal, no lock, nothing written
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as err:
                what = f"is not a readable SQLite database ({err})"
        if what:
            raise TrackingError(
                f"{path}: the MLflow tracking database {what}; move it aside (its runs may "
                "be recoverable) to start a new one, or set MLFLOW_TRACKING_URI to another store"
            )

    def check_uri(self) -> None:
        """A URI MLflow cannot track into is one line, not MLflow's traceback (checked
        once per store: the client and the first experiment both ask)."""
        if self._uri_checked:
            return
        scheme = self.uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in self.uri else ""
        if scheme == "sqlite":
            self._check_sqlite_file(Path(self.uri.removeprefix("sqlite:///")))
        if scheme not in TRACKING_SCHEMES:
            raise TrackingError(
                f"MLFLOW_TRACKING_URI={self.shown} is not a tracking store MLflow can use; "
                "give sqlite:///path/to/mlflow.db, http://127.0.0.1:5000 or postgresql://..., "
                "or unset it to track into ./mlflow.db"
            )
        self._uri_checked = True

    @contextlib.contextmanager
    def pointed(self) -> Iterator[Any]:
        """``mlflow`` pointed at this store, for the calls that take no client (``Model.log``,
        ``register_model``).  MLflow keeps the URI in the environment: it is put back after."""
        module = mlflow()
        before = os.environ.get("MLFLOW_TRACKING_URI")
        module.set_tracking_uri(self.uri)
        try:
            yield module
        finally:
            module.set_tracking_uri(before)  # None: unset again

    def exists(self) -> bool:
        """False for a SQLite store whose file is not there yet."""
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri.removeprefix("sqlite:///")).exists()
        return True

    def check_server(self) -> None:
        """A tracking server must answer its health check within the timeout, or TrackingError."""
        if not self.is_server:
            return
        timeout = server_timeout()
        try:
            with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=timeout) as r:
                if r.status == 200:
                    return
                reason = f"HTTP {r.status}"
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError) as err:
            reason = str(getattr(err, "reason", err))
        raise TrackingError(
            f"the MLflow tracking server {self.shown} does not answer ({reason}; waited up to "
            f"{timeout:g} s, {TIMEOUT_ENV} sets it); start it, or unset MLFLOW_TRACKING_URI to "
            "track into ./mlflow.db"
        )

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """A server that answers its health check but not its API (its database down, a
        proxy's error page): one TrackingError line instead of MLflow's traceback."""
        try:
            yield
        except Exception as err:
            if not self.is_server or type(err).__name__ != "MlflowException":
                raise
            text = str(err)
            if "500 error responses" in text or "error code 5" in text:
                reason = "HTTP 5xx: its database may be down; see the server's log"
            elif "not in a valid JSON format" in text:
                body = text.split("Response body: ", 1)[-1][:60]
                reason = f"not JSON but {body}...: is it an MLflow server?"
            else:
                raise
            raise TrackingError(
                f"the MLflow tracking server {self.shown} answers, but not as MLflow does "
                f"({reason}); fix it, or unset MLFLOW_TRACKING_URI to track into ./mlflow.db"
            ) from None

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if needed.

        The first connection to a fresh SQLite file creates its tables: processes doing
        that at once (queued DVC experiments, parallel jobs) corrupt it, so they take
        turns on a lock file beside the database.
        """
        known = self._experiments.get(name)
        if known is not None:
            return known
        self.check_uri()
        self.check_server()
        if self.is_server:  # a tracking server keeps its own artifact store
            with self.answering():
                experiment_id = self._experiment_id(name, None)
        elif self.uri.startswith("sqlite:///"):
            lock = exclusive_lock(self.uri.removeprefix("sqlite:///") + ".lock")
            with database_written(self), lock:
                experiment_id = self._experiment_id(name, self.root / "mlartifacts")
        else:  # a database server migrates its own tables safely
            experiment_id = self._experiment_id(name, self.root / "mlartifacts")
        self._experiments[name] = experiment_id
        return experiment_id

    def _experiment_id(self, name: str, artifacts_dir: Path | None) -> str:
        client = self.client
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = artifacts_dir.as_uri() if artifacts_dir is not None else None
        try:
            return client.create_experiment(name, artifact_location=artifacts)
        except Exception:  # created meanwhile by a parallel job
            return client.get_experiment_by_name(name).experiment_id

    def get_run(self, run_id: str) -> Any:
        """The MLflow run ``run_id``; TrackingError, in one line, if the store has no such run."""
        from mlflow.exceptions import MlflowException

        self.check_server()
        try:
            return self.client.get_run(run_id)
        except MlflowException as err:
            raise TrackingError(
                f"run {run_id}: {first_line(err.message)} (tracking store {self.shown}); "
                "`backprop runs` lists the runs"
            ) from None

    def run_exists(self, run_id: str) -> bool:
        try:
            self.get_run(run_id)
        except TrackingError:
            return False
        return True

    def register_model(self, run_id: str, name: str) -> str:
        """Register run ``run_id``'s model as a new version of ``name``; returns the version."""
        from mlflow.exceptions import MlflowException

        run = self.get_run(run_id)
        models = self.client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = 'model'"
        )
        if not models:
            raise TrackingError(
                f"run {run_id} has no logged model (status {run.info.status}); register a run "
                "that finished training"
            )
        try:
            # MLflow prints its own progress lines to stderr; the caller says what happened.
            with quiet(), contextlib.redirect_stderr(io.StringIO()), self.pointed() as module:
                version = module.register_model(f"models:/{models[0].model_id}", name)
        except MlflowException as err:
            raise TrackingError(f"cannot register {name!r}: {first_line(err.message)}") from None
        return str(version.version)

    def download_model_folder(self, uri: str, dst: Path) -> Path:
        """The model folder (model.json, weights.npz) of the pyfunc model at an MLflow model URI,
        downloaded into ``dst``.  Read as files: nothing of the model is unpickled."""
        from mlflow.exceptions import MlflowException

        try:
            with quiet():
                local = mlflow().artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(dst), tracking_uri=self.uri,
                    registry_uri=self.uri,
                )  # fmt: skip
            local = Path(local)
        except MlflowException as err:
            raise ModelFileError(
                f"{uri}: {first_line(err.message)} (tracking store {self.shown})"
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

    def download_run_file(self, run_id: str, path: str, dst: Path) -> Path | None:
        """The artifact ``path`` of run ``run_id``, downloaded into ``dst``; None if it has none."""
        from mlflow.exceptions import MlflowException

        try:
            with quiet():
                return Path(self.client.download_artifacts(run_id, path, dst_path=str(dst)))
        except (MlflowException, OSError):
            return None

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def children(self, parent_run_id: str, experiment_name: str) -> list[Any]:
        """The runs nested under ``parent_run_id``, oldest first."""
        return self.client.search_runs(
            [self.experiment_id(experiment_name)],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=10_000,
        )
