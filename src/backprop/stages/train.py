"""Stage 3: train the network on the prepared splits.

Writes ``model_dir`` (``weights.npz`` + ``model.json``, which carries the
classes and the scaler, so the folder alone turns raw features into labels),
and into ``reports_dir`` ``history.csv`` (epoch, train_loss, val_loss,
val_accuracy) and ``training.png``.  Nothing written depends on the clock, so
equal settings give equal files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from backprop.config import PipelineConfig
from backprop.interrupt import Interrupted, deferred
from backprop.io import (
    ModelFileError,
    atomic_write_bytes,
    load_checkpoint,
    save_checkpoint,
    save_model,
)
from backprop.network import MLP
from backprop.stages.preprocess import Prepared, load_prepared
from backprop.training import EpochMetrics, History, TrainingState, train

HISTORY_FILE = "history.csv"
CURVES_FILE = "training.png"
CHECKPOINTS = "outputs/checkpoints"  # under the project root, git-ignored, not a DVC output


@dataclass
class Trained:
    network: MLP
    history: History
    prepared: Prepared


def build_network(config: PipelineConfig, n_features: int, n_classes: int, rng) -> MLP:
    m = config.model
    sizes = [n_features, *m.hidden_sizes, n_classes]
    return MLP(sizes, m.activation, m.output, m.loss, m.dtype, rng=rng)


class TrainingInterrupted(Interrupted):
    """Training stopped by a signal; ``checkpoint`` holds epoch ``epoch`` (0: none yet)."""

    def __init__(self, signal_name: str, epoch: int, checkpoint: Path | None) -> None:
        super().__init__(signal_name)
        self.epoch, self.checkpoint = epoch, checkpoint


def checkpoint_file(config: PipelineConfig, data_sha256: str, root: Path) -> Path:
    """Where training with these settings on this data keeps its checkpoint.

    Keyed by the data's SHA-256 and every setting that shapes the weights, so the DVC
    stage and the Hydra app find each other's checkpoints, and other settings never do.
    """
    settings = {
        "data": data_sha256,
        "label_column": config.data.label_column,
        "drop_missing": config.data.drop_missing,
        "preprocess": asdict(config.preprocess),
        "model": asdict(config.model),
        "optim": asdict(config.optim),
        "train": {k: v for k, v in asdict(config.train).items() if k != "resume"},
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return root / CHECKPOINTS / f"{key}.npz"


def read_checkpoint_extra(path: Path | None) -> dict:
    """The extra data of the checkpoint at ``path`` ({} if there is none)."""
    if path is None or not path.exists():
        return {}
    return load_checkpoint(path)[1]


def train_model(
    prepared_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    reports_dir: str | os.PathLike,
    config: PipelineConfig,
    callback: Callable[[EpochMetrics], None] | None = None,
    checkpoint: Path | None = None,
    checkpoint_extra: dict | None = None,
    on_resume: Callable[[TrainingState], None] | None = None,
) -> Trained:
    """Train on ``prepared_dir`` and write the model and the training reports.

    With ``checkpoint`` (a file path) the state after every epoch is saved there, and
    with ``train.resume`` training goes on from it; it is removed once the model is written.
    """
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
    state = None
    if checkpoint is not None and config.train.resume:
        if checkpoint.exists():
            state, _ = load_checkpoint(checkpoint)
            shapes = [p.shape for p in network.parameters()]
            if [p.shape for p in state.parameters] != shapes:
                raise ModelFileError(f"{checkpoint}: made for other layer sizes than these")
            if on_resume is not None:
                on_resume(state)
        else:
            print(
                f"backprop: train.resume is set but there is no checkpoint for these settings "
                f"({checkpoint}); training from the first epoch",
                file=sys.stderr,
            )
    saved = [state.epoch if state else 0]

    def save(s: TrainingState) -> None:
        with deferred():  # a Ctrl-C or SIGTERM now waits for the checkpoint to be complete
            save_checkpoint(checkpoint, s, checkpoint_extra or {})
            saved[0] = s.epoch

    try:
        history = train(
            network,
            prepared.X["train"],
            prepared.y["train"],
            train_config,
            rng,
            prepared.X["val"] if has_val else None,
            prepared.y["val"] if has_val else None,
            callback=callback,
            checkpoint=save if checkpoint is not None else None,
            resume=state,
        )
    except KeyboardInterrupt as err:
        name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
        raise TrainingInterrupted(name, saved[0], checkpoint) from None
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
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # the model is written: nothing left to resume
    return Trained(network, history, prepared)


def history_csv(history: History) -> str:
    out = io.StringIO()
    out.write("epoch,train_loss,val_loss,val_accuracy\n")
    for m in history.epochs:
        cells = [m.epoch, m.train_loss, m.val_loss, m.val_accuracy]
        out.write(",".join("" if c is None else repr(c) for c in cells) + "\n")
    return out.getvalue()
