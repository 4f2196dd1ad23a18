"""The train and evaluate stages with their tracking: what every front door calls.

``backprop train``/``backprop evaluate`` (the DVC stages) and the Hydra app
(``experiment.py``) run these inside an active MLflow run, so a run holds the
same things whichever way it was started.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from backprop import tracking
from backprop.config import PipelineConfig
from backprop.stages.evaluate import CONFUSION_FILE, FIGURES_DIR, METRICS_FILE, evaluate_model
from backprop.stages.train import CURVES_FILE, HISTORY_FILE, Trained, train_model


def tracked_train(
    config: PipelineConfig,
    params: dict[str, Any] | None,
    params_file: str | None,
    prepared_dir: str,
    model_dir: str,
    reports_dir: str,
    show_progress: bool = True,
    checkpoint: Path | None = None,
    resuming: bool = False,
) -> Trained:
    """Train and log params, tags, the dataset, per-epoch metrics, the model and its figures.

    ``checkpoint``: where to keep the state after each epoch (with ``train.resume``, where
    to go on from); ``resuming``: the active run is the checkpoint's, params already logged.
    """
    if params is not None and not resuming:
        tracking.log_training_start(params, source_of(prepared_dir), params_file)
    progress = progress_bar(config.train.epochs, show_progress)  # its clock starts here
    epochs = tracking.EpochLog()

    def on_resume(state) -> None:
        epochs.backfill(state.history.epochs)  # those a killed process had not sent yet
        tracking.set_tag("resumed_after_epoch", str(state.epoch))
        progress.update(state.epoch)

    def on_epoch(metrics) -> None:
        epochs.add(metrics)
        progress.update(1)
        shown = {"loss": f"{metrics.train_loss:.4f}"}
        if metrics.val_accuracy is not None:
            shown["val_acc"] = f"{metrics.val_accuracy:.4f}"
        progress.set_postfix(shown)

    try:
        trained = train_model(
            prepared_dir, model_dir, reports_dir, config, callback=on_epoch,
            checkpoint=checkpoint, on_resume=on_resume,
            checkpoint_extra={"mlflow_run_id": tracking.active_run_id()},
        )  # fmt: skip
    except BaseException:
        progress.close()
        with contextlib.suppress(Exception):  # the epochs of a run that failed or was stopped
            epochs.flush()
        raise
    progress.close()
    epochs.flush()
    kept = trained.history.kept().val_accuracy
    if kept is not None:  # the validation accuracy of the weights kept, to rank runs by
        tracking.log_metric("kept_val_accuracy", kept)
    tracking.log_trained_model(
        model_dir,
        [os.path.join(reports_dir, HISTORY_FILE), os.path.join(reports_dir, CURVES_FILE)],
        input_example(trained.prepared),
        trained.history.best_epoch,
    )
    return trained


def tracked_evaluate(
    model_dir: str, prepared_dir: str, reports_dir: str, extra_files: list[str] = ()
) -> dict[str, Any]:
    """Evaluate and log the test metrics, reports and figures."""
    metrics = evaluate_model(model_dir, prepared_dir, reports_dir)
    files = [os.path.join(reports_dir, name) for name in (METRICS_FILE, CONFUSION_FILE)]
    tracking.log_evaluation(metrics, [*files, *extra_files], os.path.join(reports_dir, FIGURES_DIR))
    return metrics


def source_of(prepared_dir: str) -> dict | None:
    """What the prepared data was made from: its source.json, not the splits' arrays."""
    from backprop.stages.preprocess import read_source

    try:
        return read_source(prepared_dir)
    except (OSError, ValueError):
        return None  # train_model reports the problem with the prepared data


def input_example(prepared):
    """A few raw rows for the MLflow signature: from the training CSV when it is there, else
    unscaled rows.  The CSV's column types stay: MLflow's Python API refuses integer columns
    for a float signature (int64 -> float64 "is not safe"), and CSVs of pixels are integers."""
    import numpy as np
    import pandas as pd

    path = (prepared.source or {}).get("path")
    if path and os.path.exists(path):
        return pd.read_csv(path, nrows=5)[prepared.feature_names]
    s = prepared.scaler
    raw = prepared.X["train"][:5] * (s.data_max - s.data_min) + s.data_min
    return pd.DataFrame(np.asarray(raw, dtype=np.float64), columns=prepared.feature_names)


def progress_bar(total: int, enabled: bool = True):
    """A progress bar over epochs on a terminal; silent otherwise."""
    from tqdm import tqdm

    disable = not (enabled and sys.stderr.isatty())
    return tqdm(total=total, unit="epoch", disable=disable, leave=False)


def checkpoint_for(config: PipelineConfig, prepared_dir: str) -> Path | None:
    """The checkpoint file of these settings on the data ``prepared_dir`` was made from."""
    from backprop.stages.train import checkpoint_file

    source = source_of(prepared_dir)
    if not source:
        return None
    return checkpoint_file(config, source["sha256"], tracking.project_root())


def run_to_resume(config: PipelineConfig, checkpoint: Path | None) -> str | None:
    """With ``train.resume``, the MLflow run of the checkpoint, if the store still has it."""
    from backprop.stages.train import read_checkpoint_extra

    if not config.train.resume:
        return None
    run_id = read_checkpoint_extra(checkpoint).get("mlflow_run_id")
    return run_id if run_id and tracking.run_exists(run_id) else None
