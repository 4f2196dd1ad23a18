"""The evaluate stage as the DVC pipeline runs it (``backprop evaluate``).

It completes the MLflow run the train stage opened (``data/.mlflow-run``) and,
with ``registered_model_name`` set, registers the run's model.
"""

from __future__ import annotations

from pathlib import Path

from backprop.pipeline.project import RUN_FILE
from backprop.pipeline.registry import Stage
from backprop.pipeline.settings import Settings
from backprop.tracking.store import Store
from backprop.tracking.tracker import Tracker


def run(stage: Stage, settings: Settings, source: str | None, ports: dict[str, Path]) -> int:
    store = Store()
    run_id = RUN_FILE.read_text().strip() if RUN_FILE.exists() else None
    run_id = run_id if run_id and store.run_exists(run_id) else None
    with Tracker.open(
        store, settings.experiment_name, resume_run_id=run_id, extra_reports=("dvc.lock",)
    ) as tracker:
        result = stage.function(settings, **ports, log=tracker)
    print(f"{result.summary} (MLflow run {tracker.run_id})")
    name = settings.registered_model_name
    if name and tracker.offline is None:
        version = store.register_model(tracker.run_id, name)
        print(f"registered the model of run {tracker.run_id} as models:/{name}/{version} "
              f"(models:/{name}@champion)")  # fmt: skip
    return 0
