"""``backprop reproduce RUN_ID``: train a tracked run again and tell whether it came out the same.

The run's composed config (its ``config/params.yaml`` artifact) is run again
through the Hydra app's pipeline, into a new MLflow run tagged
``reproduces=<RUN_ID>``, after checking that the data is the data the run was
trained on (the ``dataset_digest`` tag).  The verdict compares the SHA-256 of
the new weights and the test metrics with the original's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backprop.app.command import Command
from backprop.app.job import run_job
from backprop.errors import DataError, ModelFileError, TrackingError
from backprop.pipeline.chain import input_csv
from backprop.pipeline.files import data_digest
from backprop.pipeline.project import OUTPUTS, git_state, new_folder
from backprop.pipeline.settings import BUILT_IN_DATA, Settings, read_params
from backprop.tracking.store import Store
from backprop.tracking.tracker import rounded


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


def reproduce(run_id: str, store: Store | None = None, progress: bool = True) -> Reproduction:
    store = store or Store()
    run = store.get_run(run_id)
    tags = run.data.tags
    if tags.get("sweep") == "parent":
        raise TrackingError(
            f"run {run_id} is a sweep's parent run; reproduce one of its jobs "
            f"(`backprop runs --sweep {run_id}` lists them)"
        )
    root = store.root
    with tempfile.TemporaryDirectory(prefix="backprop-reproduce-") as tmp:
        logged = store.download_run_file(run_id, "config/params.yaml", Path(tmp))
        if logged is None:
            raise TrackingError(
                f"run {run_id} has no logged config (config/params.yaml): only runs started by "
                "`dvc repro`, `backprop train` with a params file or `backprop-experiment` can "
                "be reproduced"
            )
        params = read_params(logged)
    settings = Settings.from_params(params, f"the config logged by run {run_id}")
    if settings.data.name not in BUILT_IN_DATA and not Path(settings.data.path).is_absolute():
        # as DVC ran it: from the project root
        path = str(root / settings.data.path)
        dir_ = path if settings.data.dir == settings.data.path else settings.data.dir
        data = dataclasses.replace(settings.data, path=path, dir=dir_)
        settings = dataclasses.replace(settings, data=data)

    csv = input_csv(settings)
    expected = tags.get("dataset_digest")
    digest = data_digest(csv)
    if expected and digest != expected:
        raise DataError(
            f"{csv}: its SHA-256 {digest[:12]}... is not that of the data run {run_id} was "
            f"trained on ({expected[:12]}...); put that data back (a DVC-tracked file: check out "
            "the run's commit and `dvc checkout`) and try again"
        )

    original_sha = tags.get("weights_sha256") or _logged_weights_sha256(store, run_id)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    job_dir = new_folder(root / OUTPUTS / "reproductions" / run_id, stamp)
    name = f"reproduce {run.info.run_name or run_id}"[:250]
    outcome = run_job(
        settings, params, job_dir, store, run_name=name, progress=progress,
        tags={"reproduces": run_id},
    )  # fmt: skip
    # as the run logged them: rounded to 4 significant digits
    new_metrics = {k: rounded(v) for k, v in outcome.chain.test_metrics.items()}
    result = Reproduction(
        original_run_id=run_id,
        run_id=outcome.run_id,
        outputs=job_dir,
        original_sha256=original_sha,
        sha256=outcome.chain.weights_sha256,
        metric_changes=_metric_changes(run.data.metrics, new_metrics),
        code_note=_code_note(tags, root),
        test_metrics=new_metrics,
    )
    store.set_tags(result.run_id, {"reproduced_identically": str(result.identical).lower()})
    return result


def _logged_weights_sha256(store: Store, run_id: str) -> str | None:
    """The weights' hash from the run's logged model, for runs that have no tag with it."""
    try:
        with tempfile.TemporaryDirectory(prefix="backprop-reproduce-") as tmp:
            folder = store.download_model_folder(f"runs:/{run_id}/model", Path(tmp))
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
            continue  # (per-class metrics: logged by runs before the per-class table)
        now = new.get(key)
        value = rounded(value)  # runs logged before rounding have every digit
        if now is None or not (now == value or (math.isnan(now) and math.isnan(value))):
            changes[key] = (value, now)
    return changes


def _code_note(tags: dict[str, Any], root: Path) -> str | None:
    """A warning when the code is not the code of the original run."""
    then = tags.get("git_commit")
    now = git_state(root)
    if then and then != "unknown" and now["git_commit"] not in ("unknown", then):
        return f"the code is at commit {now['git_commit'][:10]}, the run was at {then[:10]}"
    if tags.get("git_dirty") == "true":
        return "the run was trained from uncommitted changes, which may differ from these"
    if now["git_dirty"] == "true":
        return "the working tree has uncommitted changes"
    return None


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="RUN_ID")


def _run(args: argparse.Namespace) -> int:
    r = reproduce(args.run_id)
    if r.code_note:
        print(f"note: {r.code_note}")
    print(f"reproduced run {r.original_run_id} as run {r.run_id} (outputs in {r.outputs})")
    short = r.sha256[:16]
    if r.original_sha256 is None:
        print(f"  weights SHA-256: {short}... (the original run recorded none to compare)")
    elif r.same_weights:
        print(f"  weights SHA-256: identical ({short}...)")
    else:
        print(f"  weights SHA-256: DIFFER (was {r.original_sha256[:16]}..., now {short}...)")
    if r.metric_changes:
        shown = ", ".join(f"{k} {a:.6g} -> {b if b is None else format(b, '.6g')}"
                          for k, (a, b) in sorted(r.metric_changes.items()))  # fmt: skip
        print(f"  test metrics: DIFFER ({shown})")
    else:
        accuracy = r.test_metrics.get("test_accuracy")
        print(f"  test metrics: identical (test accuracy {accuracy:.4f})")
    print("bit-identical" if r.identical else "NOT identical")
    return 0 if r.identical else 1


REPRODUCE = Command(
    description="Read the composed config logged by MLflow run RUN_ID, check that the data "
    "has the SHA-256 the run recorded (refusing otherwise), run data -> preprocess -> "
    "train -> evaluate again (outputs under outputs/reproductions/, a new MLflow run "
    "tagged reproduces=RUN_ID) and report whether the weights' SHA-256 and the test "
    "metrics equal the original's. Exit status 0 if they do, 1 if not.",
    arguments=_arguments,
    run=_run,
)
