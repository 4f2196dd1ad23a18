"""A sweep's parent MLflow run: opened before the jobs, summarised after them.

:class:`SweepTracker` is a Hydra callback, so it runs in the launching
process whatever the launcher: it creates (and migrates) the tracking
database there, before parallel jobs could race on a fresh SQLite file, and
hands the parent run's id and the swept keys (which name each job's run:
``lr=0.3 hidden_sizes=[16]``) to the jobs through the environment.  When the
sweep ends it finds the children (tag ``mlflow.parentRunId``), ranks them by
the validation accuracy of the weights kept (ties by validation loss, never
by a test metric), copies the best job's params and metrics into the parent
under the same names, prints the table of jobs, the best job and how to see
it in the MLflow UI, writes ``sweep_summary.png`` into the sweep's folder and
the parent run, and exits with status 1 if any job failed, naming them.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import math
import os
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from backprop.app.runs import (
    DEFAULT_SORT,
    TIE_BREAK,
    format_table,
    pruned,
    rank_key,
    shown_status,
    swept_params,
)
from backprop.errors import TrackingError
from backprop.pipeline import plots
from backprop.pipeline.files import atomic_write_bytes
from backprop.tracking.store import Store
from backprop.tracking.tracker import HEADLINE_METRICS, unreachable

PARENT_RUN_ENV = "BACKPROP_SWEEP_PARENT_RUN"
SCORE_ENV = "BACKPROP_SWEEP_SCORE"  # a search's metric, when it is not SCORE
FAILED_TRIALS_ENV = "BACKPROP_SWEEP_FAILED_TRIALS"  # a search's failed trials' numbers
BEST_RUN_ENV = "BACKPROP_SWEEP_BEST_RUN"  # a search's best trial's run (ties as Optuna saw them)
SCORE = DEFAULT_SORT  # what ranks jobs (ties: TIE_BREAK; see runs.rank_key)
SWEPT_KEYS_ENV = "BACKPROP_SWEPT_KEYS"  # the keys a sweep varies, for its jobs' run names
UI_PORT = 5000


# -- names that say what differs ------------------------------------------------------


def _parsed(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def swept_keys(overrides: list[str]) -> list[str]:
    """The keys of a sweep's command line that take several values (``optim.lr=1,0.3``)."""
    return [o.key_or_group for o in _parsed(overrides) if o.is_sweep_override()]


def short_overrides(overrides: list[str], keys: list[str] | None = None) -> str:
    """``optim.lr=0.3 model.hidden_sizes=[16, 8]`` -> ``lr=0.3 hidden_sizes=[16,8]``: each key
    by its last part (whole where two would read alike), only ``keys`` if given."""
    parsed = [o for o in _parsed(overrides) if keys is None or o.key_or_group in keys]
    last = [o.key_or_group.rsplit(".", 1)[-1] for o in parsed]
    words = []
    for override, short in zip(parsed, last):
        key = short if last.count(short) == 1 else override.key_or_group
        if override.is_sweep_override():
            value = override.input_line.split("=", 1)[1]
        else:
            value = override.get_value_element_as_str()
        words.append(f"{key}={value}")
    return " ".join(words)[:250]


def job_run_name(overrides: list[str]) -> str:
    """A sweep job's run name: the values of the swept keys (all its overrides if the
    sweep did not say which), e.g. ``lr=0.3 hidden_sizes=[16]``."""
    swept = os.environ.get(SWEPT_KEYS_ENV)
    keys = json.loads(swept) if swept else None
    return short_overrides(overrides, keys or None) or "defaults"


# Colours the MLflow UI draws runs in (tag ``mlflow.runColor``): it otherwise picks one from
# the run id, and two jobs of a sweep, or a job and its parent, often get the same.
JOB_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#17becf", "#bcbd22", "#393b79")  # fmt: skip
PARENT_COLOUR = "#7f7f7f"


def job_colour(num: int) -> str:
    return JOB_COLOURS[num % len(JOB_COLOURS)]


# -- the parent run -------------------------------------------------------------------


class SweepTracker(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.store: Store | None = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.store = Store()
        if _searching(config):  # the search opens (or reopens) its study's run itself
            return
        try:
            experiment_id = self.store.experiment_id(config.experiment_name)
        except TrackingError as err:
            print(f"backprop-experiment: error: {err}", file=sys.stderr)
            sys.exit(2)
        overrides = list(config.hydra.overrides.task)
        swept = swept_keys(overrides)
        run = self.store.client.create_run(
            experiment_id,
            run_name=f"sweep: {short_overrides(overrides, swept or None) or 'defaults'}"[:250],
            tags={
                "sweep": "parent",
                "sweep_overrides": " ".join(overrides)[:5000],
                "mlflow.runColor": PARENT_COLOUR,
            },
        )
        self.parent_run_id = run.info.run_id
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        os.environ[SWEPT_KEYS_ENV] = json.dumps(swept)
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
        if _searching(config) and self.parent_run_id is None:
            self.parent_run_id = os.environ.get(PARENT_RUN_ENV)
            atexit.register(self._abandoned)
        if self.parent_run_id is None or self.store is None:
            return
        os.environ.pop(PARENT_RUN_ENV, None)
        os.environ.pop(SWEPT_KEYS_ENV, None)
        score = os.environ.pop(SCORE_ENV, SCORE)
        best_run = os.environ.pop(BEST_RUN_ENV, None)
        failed_trials = os.environ.pop(FAILED_TRIALS_ENV, "")
        try:
            summary = summarise(self.store, self.parent_run_id, config.experiment_name,
                                score=score, best_run_id=best_run,
                                failed_now=(bool(failed_trials) if _searching(config)
                                            else None))  # fmt: skip
            print(summary.report(self.store))
            from omegaconf import OmegaConf

            folder = Path(OmegaConf.select(config, "hydra.sweep.dir", default=None) or "-")
            if summary.figure is not None and folder.is_dir():
                atomic_write_bytes(folder / "sweep_summary.png", summary.figure)
                print(f"figure: {folder / 'sweep_summary.png'}")
            name = config.get("registered_model_name")
            best = summary.best
            if name and best is not None:
                version = self.store.register_model(best.info.run_id, name)
                print(
                    f"registered the best job's model (run {best.info.run_id}) as "
                    f"models:/{name}/{version} (models:/{name}@champion)"
                )
        except Exception as err:  # Hydra would log it and exit 0
            reason = unreachable(err) or (str(err) if isinstance(err, TrackingError) else None)
            if reason is None:  # a bug: its traceback, and a failed sweep all the same
                traceback.print_exc()
                sys.exit(1)
            print(f"backprop-experiment: error: the sweep's summary could not be logged to "
                  f"{self.store.shown}: {reason}", file=sys.stderr)  # fmt: skip
            sys.exit(1)
        if failed_trials:  # a search's trials (some fail before they have a run)
            count = len(failed_trials.split(","))
            print(f"backprop-experiment: {count} trial(s) failed: {failed_trials}",
                  file=sys.stderr)  # fmt: skip
            sys.exit(1)
        if summary.failed and not _searching(config):  # a search's earlier failures are told
            names = ", ".join(_job(r) for r in summary.failed)
            print(f"backprop-experiment: {len(summary.failed)} job(s) failed: {names}",
                  file=sys.stderr)  # fmt: skip
            sys.exit(1)


def mark_parent_killed(store: Store, parent_run_id: str) -> None:
    """End an interrupted sweep's parent run as KILLED (a server that is gone: never mind)."""
    try:
        store.client.set_terminated(parent_run_id, "KILLED")
    except Exception as err:
        if unreachable(err) is None:
            raise


@dataclass
class Summary:
    """A finished sweep: its jobs best first (failed ones last), and its figure."""

    parent_run_id: str
    experiment_id: str
    ranked: list[Any]
    failed: list[Any]
    swept: list[str]
    figure: bytes | None = None
    score: str = SCORE
    study_best: bool = False  # a search: Optuna's best trial (first of equals) leads

    @property
    def best(self) -> Any | None:
        if self.ranked and _score(self.ranked[0], self.score) is not None:
            return self.ranked[0]
        return None

    def report(self, store: Store) -> str:
        """What the terminal shows: the jobs best first, the best job, where to look."""
        rows = []
        for rank, run in enumerate(self.ranked, 1):
            metrics = run.data.metrics
            row = {"rank": str(rank), "job": run.data.tags.get("sweep_job", "?")}
            row.update({k: _short(run.data.params.get(k, "")) for k in self.swept})
            row.update({m: metrics.get(m) for m in TABLE_METRICS})
            row["status"] = shown_status(run)
            row["run_id"] = run.info.run_id
            rows.append(row)
        jobs = "1 job" if len(self.ranked) == 1 else f"{len(self.ranked)} jobs"
        ties = f", ties by {TIE_BREAK}" if self.score != TIE_BREAK else ""
        if self.study_best:
            ties = f"; the study's best trial first{ties}"
        lines = [f"sweep of {jobs}, best first (by {self.score}{ties}):", format_table(rows)]
        best = self.best
        if best is None and len(self.failed) < len(self.ranked):
            lines.append(f"no job has a {self.score} to rank by (no validation split: "
                         "preprocess.val_fraction is 0?); the table is in job order")  # fmt: skip
        if best is not None:
            lines.append(f"best: job {_job(best)}, run {best.info.run_id}")
            overrides = best.data.tags.get("overrides")
            if overrides is not None:  # the job's own overrides, quoted for a shell
                lines.append(f"run it again: backprop-experiment {overrides}".rstrip())
        jobs = ",".join(f'"{r.info.run_id}"' for r in self.ranked)
        lines.append(f"compare them in the MLflow UI: {ui_hint(store)}/#/compare-runs?"
                     f'runs=[{jobs}]&experiments=["{self.experiment_id}"]')  # fmt: skip
        return "\n".join(lines)


TABLE_METRICS = ("kept_val_accuracy", "kept_val_loss", "test_accuracy")


def ui_hint(store: Store) -> str:
    """How to open the UI on this store: the server's address, or the command to start one."""
    if store.is_server:
        return store.uri.rstrip("/")
    return (f"mlflow ui --backend-store-uri {shlex.quote(store.uri)} --host 127.0.0.1 "
            f"--port {UI_PORT}, "
            f"then http://127.0.0.1:{UI_PORT}")  # fmt: skip


def summarise(
    store: Store, parent_run_id: str, experiment_name: str, score: str = SCORE,
    best_run_id: str | None = None, failed_now: bool | None = None,
) -> Summary:  # fmt: skip
    """Log the sweep's summary into the parent run: the best job's params and metrics under
    the names its children use (the parent's row in the runs table is the best job's), the
    counts as tags, and the figure.  Ties in validation accuracy go to the lower validation
    loss; test metrics never choose.  A search ranks by its own metric (``score``) and names
    its best trial's run (``best_run_id``: Optuna's choice among equals); pruned trials
    rank after finished ones and are not failures."""
    client = store.client
    runs = store.children(parent_run_id, experiment_name)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    failed = [r for r in runs if r.info.status != "FINISHED" and not pruned(r)]

    def order(r: Any) -> tuple:
        state = 0 if r.info.status == "FINISHED" else 1 if pruned(r) else 2
        return (r.info.run_id != best_run_id, state, rank_key(r.data.metrics, score))

    ranked = sorted(runs, key=order)
    swept = swept_params(runs)
    summary = Summary(parent_run_id, experiment_id, ranked, failed, swept, score=score,
                      study_best=best_run_id is not None)  # fmt: skip
    with contextlib.suppress(Exception):  # a resumed study's run has it already
        client.log_param(parent_run_id, "swept_params", ", ".join(swept) or "none")
    client.set_tag(parent_run_id, "jobs", str(len(runs)))
    client.set_tag(parent_run_id, "failed_jobs", str(len(failed)))
    client.set_tag(parent_run_id, "pruned_jobs", str(sum(map(pruned, runs))))
    best = summary.best
    if best is not None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        client.log_batch(
            parent_run_id,
            metrics=[Metric(k, v, now, 0) for k, v in best.data.metrics.items()
                     if k in HEADLINE_METRICS],
        )  # fmt: skip
        # params are written once: a resumed study's run keeps its first best as params,
        # and says the best now in the tag best_run_id
        client.set_tag(parent_run_id, "best_run_id", best.info.run_id)
        logged = client.get_run(parent_run_id).data.params
        fresh = [Param(k, v) for k, v in best.data.params.items() if k not in logged]
        if "best_run_id" not in logged:
            fresh.append(Param("best_run_id", best.info.run_id))
        if all(logged.get(k, v) == v for k, v in best.data.params.items()):
            client.log_batch(parent_run_id, params=fresh)
        # in the jobs' order, so that categories read in the order they were swept
        scored = [r for r in runs if r.info.status == "FINISHED" and _score(r, score) is not None]
        summary.figure = plots.sweep_summary(
            [{k: r.data.params.get(k) for k in swept} for r in scored],
            [_score(r, score) for r in scored],
            swept,
            best_index=scored.index(best),
            names=[r.data.tags.get("sweep_job", str(i)) for i, r in enumerate(scored)],
            jobs=len(runs),
        )
        client.log_image(parent_run_id, _image(summary.figure), "sweep_summary.png")
    # a search's run is FAILED if trials of this command failed (earlier ones were told)
    failing = bool(failed) if failed_now is None else failed_now
    client.set_terminated(parent_run_id, status="FAILED" if failing else "FINISHED")
    return summary


def _job(run: Any) -> str:
    job = run.data.tags.get("sweep_job")
    name = run.info.run_name or run.info.run_id
    return f"{job} ({name})" if job is not None else name


def _short(value: str) -> str:
    """A param as a table shows it: a sampled float to 4 significant digits."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 and "." in value else value


def _searching(config: Any) -> bool:
    """Is the sweeper the Optuna search (which opens its study's run itself)?"""
    from omegaconf import OmegaConf

    target = OmegaConf.select(config, "hydra.sweeper._target_", default="") or ""
    return target.startswith("hydra_plugins.backprop_optuna")


def _score(run: Any, score: str = SCORE) -> float | None:
    value = run.data.metrics.get(score)
    return None if value is None or math.isnan(value) else value


def _image(png: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(png))
