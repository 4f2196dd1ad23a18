"""The stages of ``registry.STAGES`` for one settings object, in one process.

What the Hydra app (each job of a sweep) and ``backprop reproduce`` run: the
very stage functions the DVC pipeline runs, in the registry's order, into one
run's folder, except that the outputs of shared stages (the embedded data, the
prepared splits) go to ``outputs/cache/<stage>/<key>/``, made once and reused
by every job with the same key.  Nothing is written into the paths ``dvc.yaml``
tracks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backprop.errors import DataError
from backprop.pipeline.files import data_digest, exclusive_lock
from backprop.pipeline.project import cache_dir
from backprop.pipeline.registry import BY_NAME, STAGES, Stage, resolve, stage_key
from backprop.pipeline.runlog import NO_LOG, RunLog
from backprop.pipeline.settings import IDX, Settings


@dataclass
class ChainResult:
    """What one run of the chain produced."""

    paths: dict[str, Path]
    results: dict[str, Any] = field(default_factory=dict)  # stage name -> its result

    @property
    def weights_sha256(self) -> str:
        meta = json.loads((self.paths["model"] / "model.json").read_text(encoding="utf-8"))
        return meta["weights_sha256"]

    @property
    def test_metrics(self) -> dict[str, float]:
        return self.results["evaluate"].test

    @property
    def kept_val_accuracy(self) -> float | None:
        return self.results["train"].history.kept().val_accuracy


def input_csv(settings: Settings, cache: Path | None = None) -> Path:
    """The CSV the run reads: the embedded digits (written once into the cache), or data.path."""
    paths: dict[str, Path] = {}
    for stage in STAGES:
        if stage.name == "preprocess":
            break
        _run(stage, settings, paths, None, cache or cache_dir(), NO_LOG, False)
    return _inputs(BY_NAME["preprocess"], settings, paths)["csv"]


def run_chain(
    settings: Settings, job_dir: Path, log: RunLog = NO_LOG, progress: bool = True,
    cache: Path | None = None,
) -> ChainResult:  # fmt: skip
    """Every stage the settings need, in order; per-run outputs under ``job_dir``."""
    cache = cache or cache_dir()
    chain = ChainResult(paths={})
    for stage in STAGES:
        result = _run(stage, settings, chain.paths, job_dir, cache, log, progress)
        if result is not None:
            chain.results[stage.name] = result
    return chain


def _run(
    stage: Stage, settings: Settings, paths: dict[str, Path], job_dir: Path | None,
    cache: Path, log: RunLog, progress: bool,
) -> Any:  # fmt: skip
    if not stage.needed(settings):
        return None
    inputs = _inputs(stage, settings, paths)
    if stage.shared:
        csv = inputs.get("csv")
        key = stage_key(stage.name, settings, data_digest(csv) if csv else "")
        folder = cache / stage.name / key
        outputs = {p.name: folder / Path(p.path).name for p in stage.outputs}
        with exclusive_lock(cache / stage.name / f"{key}.lock"):
            done = all(path.exists() for path in outputs.values())
            result = None if done else _call(stage, settings, inputs, outputs, log, progress)
    else:
        assert job_dir is not None, f"stage {stage.name} writes into a run's folder"
        outputs = {p.name: job_dir / Path(p.path).name for p in stage.outputs}
        result = _call(stage, settings, inputs, outputs, log, progress)
    paths.update(outputs)
    return result


def _inputs(stage: Stage, settings: Settings, paths: dict[str, Path]) -> dict[str, Path]:
    """A stage's inputs: what an earlier stage wrote, else the DVC path (the user's CSV)."""
    inputs = {}
    for port in stage.inputs:
        path = paths.get(port.name) or Path(resolve(port.path, settings))
        if not path.exists():
            if settings.data.name == IDX:
                raise DataError(f"{path}: folder not found; check data.dir")
            raise DataError(f"{path}: file not found; check data.path")
        inputs[port.name] = path
    return inputs


def _call(stage, settings, inputs, outputs, log, progress) -> Any:
    return stage.function(settings, **inputs, **outputs, log=log, progress=progress)
