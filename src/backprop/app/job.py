"""One job: every stage for one settings object, in one process, in one MLflow run.

What each run or sweep job of the Hydra app does, and what ``backprop
reproduce`` does again: the chain of ``pipeline/chain.py`` (the very stage
functions of the DVC pipeline) inside a :class:`~backprop.tracking.tracker.Tracker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backprop.errors import DataError
from backprop.pipeline.chain import ChainResult, input_csv, run_chain
from backprop.pipeline.checkpoints import recorded_run_id
from backprop.pipeline.files import atomic_write_text, data_digest
from backprop.pipeline.runlog import RunLog
from backprop.pipeline.settings import Settings
from backprop.pipeline.stages.train import checkpoint_of
from backprop.tracking.store import Store
from backprop.tracking.tracker import Tracker


@dataclass
class Outcome:
    run_id: str
    chain: ChainResult
    registered: str | None = None  # models:/<name>/<version>


def run_job(
    settings: Settings, params: dict[str, Any], job_dir: Path, store: Store,
    parent_run_id: str | None = None, run_name: str | None = None,
    tags: dict[str, str] | None = None, progress: bool = True, watch: Any = None,
) -> Outcome:  # fmt: skip
    """All the stages into ``job_dir``, tracked as one run (nested under ``parent_run_id``).

    ``params`` (the composed config) is written to ``job_dir/params.yaml`` and logged with
    the run, which ``backprop reproduce`` reads back.  With ``train.resume`` the run of the
    checkpoint goes on.  ``watch`` (a search's trial) sees each epoch after the run log,
    and may end training by raising TrainingStopped; ``watch.run_started(run_id)`` first.
    """
    params_file = job_dir / "params.yaml"
    atomic_write_text(params_file, yaml.safe_dump(params, sort_keys=False))
    resume = None
    if settings.train.resume:  # the checkpoint's run goes on: find it before opening one
        resume = _checkpoint_run(settings, store)
    with Tracker.open(
        store,
        settings.experiment_name,
        resume_run_id=resume,
        parent_run_id=parent_run_id,
        run_name=run_name,
        tags=tags,
        params_file=str(params_file),
    ) as tracker:  # opened first, so that a job failing on its data is a FAILED run too
        log: RunLog = tracker
        if watch is not None:
            watch.run_started(tracker.run_id)
            log = _Watched(tracker, watch)
        chain = run_chain(settings, job_dir, log, progress)
    outcome = Outcome(tracker.run_id, chain)
    name = settings.registered_model_name
    if name and parent_run_id is None and tracker.offline is None:
        version = store.register_model(tracker.run_id, name)
        outcome.registered = f"models:/{name}/{version} (models:/{name}@champion)"
    return outcome


class _Watched:
    """The run log, and after each epoch the watcher (which may stop training)."""

    def __init__(self, log: RunLog, watch: Any) -> None:
        self._log, self._watch = log, watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def __call__(self, metrics: Any) -> None:
        self._log(metrics)
        self._watch(metrics)

    def resumed_from(self, state: Any) -> None:
        """Training goes on from a checkpoint: the watcher gets the epochs it missed."""
        self._log.resumed_from(state)
        self._watch.resumed_from(state)


def checkpoint_file(settings: Settings) -> Path | None:
    """Where training with these settings keeps its checkpoint (None: no input yet)."""
    try:
        csv = input_csv(settings)
    except DataError:
        return None  # the run reports it, as a FAILED run
    return checkpoint_of(settings, data_digest(csv))


def _checkpoint_run(settings: Settings, store: Store) -> str | None:
    path = checkpoint_file(settings)
    run_id = recorded_run_id(path) if path is not None else None
    return run_id if run_id and store.run_exists(run_id) else None


def again(settings: Settings, params: dict[str, Any], earlier: str | None, store: Store
          ) -> tuple[Settings, dict[str, Any]]:  # fmt: skip
    """A search's trial run again after an interruption: it goes on from its checkpoint if
    there is one; if not (it was stopped before its first epoch, or after training), it
    starts over, and the run the interrupted attempt left (``earlier``) is deleted rather
    than kept as a second, KILLED run of the same trial."""
    path = checkpoint_file(settings) if settings.train.resume else None
    if settings.train.resume and (path is None or not path.exists()):
        params = {**params, "train": {**params["train"], "resume": False}}
        settings = Settings.from_params(params, "the trial's config")
    going_on = _checkpoint_run(settings, store) if settings.train.resume else None
    if earlier and earlier != going_on and store.run_exists(earlier):
        client = store.client
        if client.get_run(earlier).info.status != "FINISHED":
            client.delete_run(earlier)
    return settings, params
