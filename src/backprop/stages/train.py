"""Stage 3: train the network on the prepared splits.

Writes ``model_dir`` (``weights.npz`` + ``model.json``, which carries the
classes and the scaler, so the folder alone turns raw features into labels),
and into ``reports_dir`` ``history.csv`` (epoch, train_loss, val_loss,
val_accuracy) and ``training.png``.  Nothing written depends on the clock, so
equal settings give equal files.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backprop.config import PipelineConfig
from backprop.io import atomic_write_bytes, save_model
from backprop.network import MLP
from backprop.stages.preprocess import Prepared, load_prepared
from backprop.training import EpochMetrics, History, train

HISTORY_FILE = "history.csv"
CURVES_FILE = "training.png"


@dataclass
class Trained:
    network: MLP
    history: History
    prepared: Prepared


def build_network(config: PipelineConfig, n_features: int, n_classes: int, rng) -> MLP:
    m = config.model
    sizes = [n_features, *m.hidden_sizes, n_classes]
    return MLP(sizes, m.activation, m.output, m.loss, m.dtype, rng=rng)


def train_model(
    prepared_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    reports_dir: str | os.PathLike,
    config: PipelineConfig,
    callback: Callable[[EpochMetrics], None] | None = None,
) -> Trained:
    """Train on ``prepared_dir`` and write the model and the training reports."""
    from backprop import plots

    prepared = load_prepared(prepared_dir)
    # One Generator from the seed: first the initial weights, then the batch order.
    rng = np.random.default_rng(config.train.seed)
    network = build_network(config, len(prepared.feature_names), len(prepared.classes), rng)
    has_val = len(prepared.y["val"]) > 0
    train_config = config.train_config()
    if not has_val and train_config.patience is not None:
        raise ValueError(
            "train.patience needs a validation split, but preprocess.val_fraction is 0; "
            "set train.patience=null or a val_fraction > 0"
        )
    history = train(
        network,
        prepared.X["train"],
        prepared.y["train"],
        train_config,
        rng,
        prepared.X["val"] if has_val else None,
        prepared.y["val"] if has_val else None,
        callback=callback,
    )
    save_model(
        model_dir,
        network,
        classes=prepared.classes,
        extra={
            "label_column": prepared.label_column,
            "feature_names": prepared.feature_names,
            "scaler": prepared.scaler.to_dict(),
        },
    )
    reports_dir = Path(reports_dir)
    atomic_write_bytes(reports_dir / HISTORY_FILE, history_csv(history).encode())
    rows = history.epochs
    atomic_write_bytes(
        reports_dir / CURVES_FILE,
        plots.training_curves(
            [m.epoch for m in rows],
            [m.train_loss for m in rows],
            [m.val_loss for m in rows],
            [m.val_accuracy for m in rows],
            history.best_epoch,
        ),
    )
    return Trained(network, history, prepared)


def history_csv(history: History) -> str:
    out = io.StringIO()
    out.write("epoch,train_loss,val_loss,val_accuracy\n")
    for m in history.epochs:
        cells = [m.epoch, m.train_loss, m.val_loss, m.val_accuracy]
        out.write(",".join("" if c is None else repr(c) for c in cells) + "\n")
    return out.getvalue()
