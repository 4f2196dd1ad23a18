"""``backprop reproduce RUN_ID``: train a tracked run again and tell whether it came out the same.

The run's composed config (its ``config/params.yaml`` artifact) is run again
through the Hydra app's pipeline, into a new MLflow run tagged
``reproduces=<RUN_ID>``, after checking that the data is the data the run was
trained on (the ``dataset_digest`` tag).  The verdict compares the SHA-256 of
the new weights and the test metrics with the original's.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backprop.data import DataError


@dataclass
class Reproduction:
    original_run_id: str
    run_id: str
    outputs: Path
    original_sha256: str | None
    sha256: str
    metric_changes: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    code_note: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def same_weights(self) -> bool:
        return self.original_sha256 == self.sha256

    @property
    def identical(self) -> bool:
        return self.same_weights and not self.metric_changes


def reproduce(run_id: str, show_progress: bool = True) -> Reproduction:
    from backprop import tracking
    from backprop.config import pipeline_config, read_params
    from backprop.experiment import OUTPUTS, cache_dir, dataset_csv, run_pipeline
    from backprop.io import file_digest

    run = tracking.get_run(run_id)
    tags = run.data.tags
    if tags.get("sweep") == "parent":
        raise tracking.TrackingError(
            f"run {run_id} is a sweep's parent run; reproduce one of its jobs "
            f"(`backprop runs --sweep {run_id}` lists them)"
        )
    root = tracking.project_root()
    with tempfile.TemporaryDirectory(prefix="backprop-reproduce-") as tmp:
        logged = tracking.download_run_file(run_id, "config/params.yaml", Path(tmp))
        if logged is None:
            raise tracking.TrackingError(
                f"run {run_id} has no logged config (config/params.yaml): only runs started by "
                "`dvc repro`, `backprop train` with a params file or `backprop-experiment` can "
                "be reproduced"
            )
        params = read_params(logged)
    config = pipeline_config(params, f"the config logged by run {run_id}")
    if config.data.name != "digits" and not Path(config.data.path).is_absolute():
        config.data.path = str(root / config.data.path)  # as DVC ran it: from the project root

    csv = dataset_csv(config, cache_dir())
    if not csv.is_file():
        raise DataError(f"{csv}: file not found; run {run_id} was trained on it")
    expected = tags.get("dataset_digest")
    digest = file_digest(csv)
    if expected and digest != expected:
        raise DataError(
            f"{csv}: its SHA-256 {digest[:12]}... is not that of the data run {run_id} was "
            f"trained on ({expected[:12]}...); put that data back (a DVC-tracked file: check out "
            "the run's commit and `dvc checkout`) and try again"
        )

    original_sha = tags.get("weights_sha256") or _logged_weights_sha256(run_id)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    job_dir = root / OUTPUTS / "reproductions" / run_id / stamp
    job_dir.mkdir(parents=True, exist_ok=True)
    name = f"reproduce {run.info.run_name or run_id}"[:250]
    result = run_pipeline(
        config, params, job_dir, run_name=name, show_progress=show_progress,
        tags={"reproduces": run_id},
    )  # fmt: skip
    changes = _metric_changes(run.data.metrics, result["test_metrics"])
    outcome = Reproduction(
        original_run_id=run_id,
        run_id=result["run_id"],
        outputs=job_dir,
        original_sha256=original_sha,
        sha256=result["weights_sha256"],
        metric_changes=changes,
        code_note=_code_note(tags, root),
        test_metrics=result["test_metrics"],
    )
    tracking.set_tags(outcome.run_id, {"reproduced_identically": str(outcome.identical).lower()})
    return outcome


def _logged_weights_sha256(run_id: str) -> str | None:
    """The weights' hash from the run's logged model, for runs that have no tag with it."""
    import json

    from backprop import tracking
    from backprop.io import ModelFileError

    try:
        with tempfile.TemporaryDirectory(prefix="backprop-reproduce-") as tmp:
            folder = tracking.download_model_folder(f"runs:/{run_id}/model", Path(tmp))
            return json.loads((folder / "model.json").read_text(encoding="utf-8"))["weights_sha256"]
    except (ModelFileError, OSError, KeyError, ValueError):
        return None


def _metric_changes(
    original: dict[str, float], new: dict[str, float]
) -> dict[str, tuple[float, float | None]]:
    """Test metrics that differ: name -> (original, new)."""
    changes = {}
    for key, value in original.items():
        if not key.startswith("test_") or key.startswith(("test_precision_class",
                                                           "test_recall_class",
                                                           "test_f1_class")):  # fmt: skip
            continue
        now = new.get(key)
        if now is None or not (now == value or (math.isnan(now) and math.isnan(value))):
            changes[key] = (value, now)
    return changes


def _code_note(tags: dict[str, Any], root: Path) -> str | None:
    """A warning when the code is not the code of the original run."""
    from backprop.tracking import git_state

    then = tags.get("git_commit")
    now = git_state(root)
    if then and then != "unknown" and now["git_commit"] not in ("unknown", then):
        return f"the code is at commit {now['git_commit'][:10]}, the run was at {then[:10]}"
    if tags.get("git_dirty") == "true":
        return "the run was trained from uncommitted changes, which may differ from these"
    if now["git_dirty"] == "true":
        return "the working tree has uncommitted changes"
    return None
