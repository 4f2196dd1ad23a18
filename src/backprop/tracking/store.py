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
import math
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
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


LOCK_TIMEOUT = 5.0  # seconds a reader waits for a writer's lock on a SQLite store


def recover_interrupted_transaction(path: Path) -> None:
    """Roll back what a writer killed mid-transaction left in ``path``'s journal (SQLite's
    own recovery, done by the first connection that may write), or one line if this
    process may not write there."""
    try:
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise TrackingError(
            f"{path}: the MLflow tracking database holds a transaction a killed process "
            f"left unfinished, and it cannot be rolled back from here ({err}); run once "
            "where the database and its folder are writable"
        ) from None


def read_only_sqlite(path: Path) -> sqlite3.Connection:
    """A read-only connection to the SQLite database ``path``: no journal, no lock held,
    nothing written (but for the rollback of a transaction a killed writer left, which
    SQLite requires before anyone reads).  A folder, a file that is not SQLite or a damaged one is a
    TrackingError naming it; the file is never written to or replaced (its runs may be
    recoverable).  So is a lock held by a writer for longer than LOCK_TIMEOUT."""
    what = None
    if path.is_dir():
        what = "is a folder, not an SQLite database"
    else:
        try:
            db = sqlite3.connect(
                f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True, timeout=LOCK_TIMEOUT
            )
        except sqlite3.DatabaseError as err:
            what = f"is not a readable SQLite database ({err})"
        else:
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.DatabaseError as err:
                db.close()
                name = getattr(err, "sqlite_errorname", "")
                if name in ("SQLITE_READONLY_ROLLBACK", "SQLITE_READONLY_RECOVERY"):
                    # A writer was killed mid-transaction and left its journal: only a
                    # writable connection may roll it back, as SQLite does on any open.
                    recover_interrupted_transaction(path)
                    return read_only_sqlite(path)
                if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                    raise TrackingError(
                        f"{path}: the MLflow tracking database is locked by another process "
                        f"(waited {LOCK_TIMEOUT:g} s); try again when it is done"
                    ) from None
                what = f"is not a readable SQLite database ({err})"
    raise TrackingError(
        f"{path}: the MLflow tracking database {what}; move it aside (its runs may "
        "be recoverable) to start a new one, or set MLFLOW_TRACKING_URI to another store"
    )


# -- listing runs, read only -----------------------------------------------------------


@dataclass(frozen=True)
class ListedRunInfo:
    run_id: str
    run_name: str | None
    status: str
    start_time: int | None  # ms since the epoch, as MLflow keeps them
    end_time: int | None


@dataclass(frozen=True)
class ListedRunData:
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each (NaN as float("nan"))
    tags: dict[str, str]  # only LISTED_TAGS


# The tags a listing reads (a search's pruned trials say so in them).
LISTED_TAGS = ("optuna.state", "pruned_epoch", "optuna.trial_number")


@dataclass(frozen=True)
class ListedRun:
    """A run as ``backprop runs`` lists it, shaped like MLflow's ``Run`` (``.info.run_id``,
    ``.data.params``, ``.data.metrics``, ``.data.tags``) so that the same code ranks both;
    only the tags of LISTED_TAGS, no metric histories."""

    info: ListedRunInfo
    data: ListedRunData


@dataclass(frozen=True)
class RunListing:
    """What :meth:`Store.list_runs` found: ``experiment_id`` None if the store has no
    experiment of that name, ``sweep`` the parent run id of the sweep asked for (``latest``
    resolved; None if it has no sweep), ``runs`` MLflow ``Run`` or :class:`ListedRun`."""

    experiment_id: str | None
    sweep: str | None = None
    runs: list[Any] = field(default_factory=list)
    sweep_metric: str | None = None  # a search's metric (its parent's tag optuna.metric)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


class _UnknownSchema(Exception):
    """The SQLite database is not laid out as these queries expect: ask MLflow instead."""


def _listed_from_sqlite(
    db: sqlite3.Connection, experiment_name: str, sweep: str | None,
    metrics: tuple[str, ...] | None,
) -> RunListing:  # fmt: skip
    """:meth:`Store.list_runs` over MLflow's SQLite tables (``runs``, ``params``,
    ``latest_metrics``, ``tags``, ``experiments``; their layout has held since MLflow 1.x):
    what ``MlflowClient.search_runs`` returns, without the tags, in four queries."""
    try:
        found = db.execute(
            "SELECT experiment_id FROM experiments WHERE name = ?", (experiment_name,)
        ).fetchall()
        if len(found) > 1:  # one name in several MLflow workspaces: MLflow knows which one
            raise _UnknownSchema
        if not found:
            return RunListing(None)
        experiment_id = found[0][0]
        if sweep == "latest":
            newest = db.execute(
                "SELECT runs.run_uuid FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                "WHERE runs.experiment_id = ? AND runs.lifecycle_stage = 'active' "
                "AND tags.key = 'sweep' AND tags.value = 'parent' "
                "ORDER BY runs.start_time DESC, runs.run_uuid LIMIT 1",
                (experiment_id,),
            ).fetchone()
            if newest is None:
                return RunListing(str(experiment_id))
            sweep = newest[0]
        # the runs asked for: active ones, never a sweep's parent, a sweep's jobs if asked
        where = (
            "experiment_id = ? AND lifecycle_stage = 'active' AND run_uuid NOT IN "
            "(SELECT run_uuid FROM tags WHERE key = 'sweep' AND value = 'parent')"
        )
        args: tuple = (experiment_id,)
        if sweep:
            where += (
                " AND run_uuid IN (SELECT run_uuid FROM tags "
                "WHERE key = 'mlflow.parentRunId' AND value = ?)"
            )
            args += (sweep,)
        selected = f"SELECT run_uuid FROM runs WHERE {where}"
        infos = db.execute(
            f"SELECT run_uuid, name, status, start_time, end_time FROM runs WHERE {where}", args
        ).fetchall()
        params: dict[str, dict[str, str]] = {row[0]: {} for row in infos}
        values: dict[str, dict[str, float]] = {row[0]: {} for row in infos}
        for run_id, key, value in db.execute(
            f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({selected})", args
        ):
            params[run_id][key] = value
        tags: dict[str, dict[str, str]] = {row[0]: {} for row in infos}
        for run_id, key, value in db.execute(
            f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({selected}) "
            f"AND key IN ({', '.join('?' * len(LISTED_TAGS))})",
            args + LISTED_TAGS,
        ):
            tags[run_id][key] = value
        keys = tuple(metrics or ())
        only = f" AND key IN ({', '.join('?' * len(keys))})" if metrics is not None else ""
        for run_id, key, value, is_nan in db.execute(
            "SELECT run_uuid, key, value, is_nan FROM latest_metrics "
            f"WHERE run_uuid IN ({selected}){only}",
            args + keys,
        ):
            values[run_id][key] = math.nan if is_nan else float(value)
    except sqlite3.OperationalError as err:
        if str(err).startswith("no such"):  # table or column: not the layout these queries know
            raise _UnknownSchema from err
        raise  # busy, I/O: the caller says so
    runs = [
        ListedRun(
            ListedRunInfo(run_id, name, status, start, end),
            ListedRunData(params[run_id], values[run_id], tags[run_id]),
        )
        for run_id, name, status, start, end in infos
    ]
    metric = None
    if sweep:
        row = db.execute(
            "SELECT value FROM tags WHERE run_uuid = ? AND key = 'optuna.metric'", (sweep,)
        ).fetchone()
        metric = row[0] if row else None
    return RunListing(str(experiment_id), sweep, runs, metric)


def alias_problem(alias: str) -> str | None:
    """Why MLflow's model registry would refuse ``alias`` as an alias; None if it takes it."""
    if not re.fullmatch(r"[\w-]{1,255}", alias):
        return f"alias {alias!r}: an alias is 1 to 255 letters, digits, _ or -"
    if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
        return f"alias {alias!r} is kept by MLflow for versions (latest, v1, v2...); pick another"
    return None


# What MLflow's tracking stores accept (postgresql+psycopg2:// counts as postgresql).
# Not file: (a ./mlruns folder): MLflow 3 keeps that backend in maintenance mode and
# refuses much of what these commands do, with a traceback.
TRACKING_SCHEMES = {"sqlite", "http", "https", "postgresql", "mysql", "mssql"}


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
        """A tracking database that is a folder, not SQLite, damaged, or another program's
        SQLite database: one line naming it.  It is never written to or replaced (MLflow
        would add its tables to another program's database): its data may be recoverable."""
        if path.is_dir() or path.is_file():
            db = read_only_sqlite(path)
            try:
                tables = _tables(db)
            finally:
                db.close()
            if tables and "alembic_version" not in tables:
                shown = ", ".join(sorted(tables)[:5])
                raise TrackingError(
                    f"{path}: an SQLite database that is not an MLflow tracking store (its tables: "
                    f"{shown}); set MLFLOW_TRACKING_URI to an MLflow store, or move it aside"
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

    def list_runs(
        self, experiment_name: str, sweep: str | None = None,
        metrics: tuple[str, ...] | None = None,
    ) -> RunListing:  # fmt: skip
        """The runs of experiment ``experiment_name`` but sweeps' parents, or the jobs of the
        sweep whose parent run is ``sweep`` (``latest``: the newest sweep), read only: no
        lock, nothing written, no tables created or migrated.  ``metrics``: the only
        metrics needed (None: all).

        A SQLite store is read with SQL over one read-only connection, because MLflow's
        client cannot list runs within the 2 s ``backprop runs`` has: measured by
        ``benchmarks/bench_runs.py`` on 2 cores, ``import mlflow`` alone takes 1.7-2.3 s,
        opening its SQLAlchemy store (import, schema check) 1.4-1.6 s more, 3.8-4.7 s per
        listing of 200 runs in all; this way the listing takes 0.7-0.8 s, 0.5-0.6 s of it
        the ``backprop`` command's own imports.  A server, another database, or a SQLite file
        whose tables these queries do not know (a newer MLflow) goes through
        ``MlflowClient.search_runs``; tests/test_runs.py checks that the two agree.
        """
        path = self._sqlite_path()
        if path is not None and path.exists():
            self._check_sqlite_file(path)
            db = read_only_sqlite(path)
            try:
                if "experiments" not in _tables(db):  # an empty file: no runs, and none made
                    return RunListing(None)
                return _listed_from_sqlite(db, experiment_name, sweep, metrics)
            except _UnknownSchema:
                pass
            except sqlite3.DatabaseError as err:  # locked past the timeout mid-way, I/O
                raise TrackingError(
                    f"{path}: cannot read the MLflow tracking database ({err})"
                ) from None
            finally:
                db.close()
        return self.search_runs(experiment_name, sweep)

    def search_runs(self, experiment_name: str, sweep: str | None = None) -> RunListing:
        """:meth:`list_runs` through MLflow's client (MLflow ``Run`` objects)."""
        self.check_server()
        client = self.client
        with self.answering():
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                return RunListing(None)
            experiment_id = experiment.experiment_id
            if sweep == "latest":
                parents = client.search_runs(
                    [experiment_id], "tags.sweep = 'parent'",
                    order_by=["attributes.start_time DESC"], max_results=1,
                )  # fmt: skip
                if not parents:
                    return RunListing(experiment_id)
                sweep = parents[0].info.run_id
            where = f"tags.mlflow.parentRunId = '{sweep}'" if sweep else ""
            runs = client.search_runs([experiment_id], where, max_results=10_000)
            metric = client.get_run(sweep).data.tags.get("optuna.metric") if sweep else None
        runs = [r for r in runs if r.data.tags.get("sweep") != "parent"]
        return RunListing(experiment_id, sweep, runs, metric)

    def _sqlite_path(self) -> Path | None:
        """The file of a ``sqlite:///path`` store (None for any other, or with options)."""
        if not self.uri.startswith("sqlite:///") or "?" in self.uri:
            return None
        return Path(self.uri.removeprefix("sqlite:///"))

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

    def register_model(self, run_id: str, name: str, alias: str | None = "champion") -> str:
        """Register run ``run_id``'s model as a new version of ``name`` and point ``alias`` at
        it (``models:/NAME@ALIAS``; None: no alias); returns the version."""
        from mlflow.exceptions import MlflowException

        if alias is not None and (problem := alias_problem(alias)):
            raise TrackingError(problem)  # before a version is made that would lack it
        run = self.get_run(run_id)
        models = self.client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = 'model'"
        )
        if not models:
            best = run.data.params.get("best_run_id")
            if run.data.tags.get("sweep") == "parent" and best:
                raise TrackingError(
                    f"run {run_id} is a sweep's parent, which has no model of its own; its best "
                    f"job is run {best}: `backprop register {best} {name}`"
                )
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
        if alias is not None:
            try:
                self.client.set_registered_model_alias(name, alias, version.version)
            except MlflowException as err:
                raise TrackingError(
                    f"registered the model as models:/{name}/{version.version}, but cannot "
                    f"point the alias {alias!r} at it: {first_line(err.message)}"
                ) from None
        return str(version.version)

    def missing_from_registry(self, uri: str) -> str | None:
        """What the registry lacks of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``
        (the name, the alias), and what to do, in one sentence; None if it has both."""
        from mlflow.exceptions import MlflowException

        named = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/[^/]+)/?", uri)
        if named is None:
            return None
        name, alias = named.groups()
        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            return (
                f"no registered model named {name!r} in the tracking store {self.shown}; "
                f"`backprop register RUN_ID {name}` registers a run's model under that name"
            )
        if alias is not None and alias not in model.aliases:
            known = ", ".join(f"{a} for version {v}" for a, v in sorted(model.aliases.items()))
            return (
                f"registered model {name!r} has no alias {alias!r} "
                f"({f'its aliases: {known}' if known else 'nor any other'}); `backprop register "
                f"RUN_ID {name} --alias {alias}` registers a run's model and points it there"
            )
        return None

    def download_model_folder(self, uri: str, dst: Path) -> Path:
        """The model folder (model.json, weights.npz) of the pyfunc model at an MLflow model URI,
        downloaded into ``dst``.  Read as files: nothing of the model is unpickled."""
        from mlflow.exceptions import MlflowException

        self.check_uri()  # before MLflow opens (and would set up) the store
        try:
            with quiet():
                local = mlflow().artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(dst), tracking_uri=self.uri,
                    registry_uri=self.uri,
                )  # fmt: skip
            local = Path(local)
        except MlflowException as err:
            missing = self.missing_from_registry(uri)
            raise ModelFileError(
                f"{uri}: {missing or first_line(err.message)}"
                + ("" if missing else f" (tracking store {self.shown})")
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
