"""The train stage as the DVC pipeline runs it (``backprop train``): in its own MLflow run.

It opens the run (or, with ``train.resume``, goes on with the run of the
checkpoint it resumes) and leaves its id in ``data/.mlflow-run`` for
``backprop evaluate`` to complete.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from backprop.pipeline.checkpoints import recorded_run_id
from backprop.pipeline.files import atomic_write_text
from backprop.pipeline.prepared import read_source
from backprop.pipeline.project import RUN_FILE, git_state, project_root
from backprop.pipeline.registry import Stage
from backprop.pipeline.settings import Settings
from backprop.pipeline.stages.train import TrainingInterrupted, checkpoint_of
from backprop.tracking.store import Store
from backprop.tracking.tracker import Tracker

RESUME_HOW = (
    "`dvc exp run -S train.resume=true` (or `backprop params train.resume=true`, then `dvc repro`)"
)


def run(stage: Stage, settings: Settings, source: str | None, ports: dict[str, Path]) -> int:
    store = Store()
    resume = None
    data = _source(ports["prepared"])
    if settings.train.resume and data:
        resume = recorded_run_id(checkpoint_of(settings, data["sha256"]))
        resume = resume if resume and store.run_exists(resume) else None
    name, tags = run_name()
    try:
        with Tracker.open(
            store, settings.experiment_name, resume_run_id=resume, params_file=source,
            run_name=name, tags=tags,
        ) as tracker:  # fmt: skip
            result = stage.function(settings, **ports, log=tracker)
            atomic_write_text(RUN_FILE, tracker.run_id + "\n")
    except TrainingInterrupted as err:
        how = RESUME_HOW
        if source and Path(source).resolve() != Path("params.yaml").resolve():
            how = f"`resume: true` under `train:` in {source}, then the same command"
        print(err.message("backprop train", how), file=sys.stderr)
        return err.exit_status
    print(f"{result.summary}; MLflow run {tracker.run_id}")
    return 0


def run_name() -> tuple[str, dict[str, str]]:
    """The MLflow run's name and tags: the experiment's name under `dvc exp run` (which sets
    DVC_EXP_NAME, queued runs included), so that a run and its DVC experiment are found by
    one name; else ``repro <commit>``."""
    name = os.environ.get("DVC_EXP_NAME")
    if name:
        tags = {"dvc_exp_name": name}
        if baseline := os.environ.get("DVC_EXP_BASELINE_REV"):
            tags["dvc_baseline_rev"] = baseline
        return name, tags
    commit = git_state(project_root())["git_commit"]
    return (f"repro {commit[:7]}" if commit != "unknown" else "repro"), {}


def _source(prepared: Path) -> dict | None:
    try:
        return read_source(prepared)
    except (OSError, ValueError):
        return None  # the stage reports the problem with the prepared data
