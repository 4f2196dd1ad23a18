"""Stage 3: train the network on the prepared splits.

Writes ``model`` (``weights.npz`` + ``model.json``, which carries the classes
and the scaler, so the folder alone turns raw features into labels), and into
``reports`` ``history.csv`` (epoch, train_loss, val_loss, val_accuracy) and
``training.png``.  Nothing written depends on the clock, so equal settings give
equal files.  After every epoch the state is checkpointed (see
``checkpoints.py``); with ``train.resume`` training goes on from it.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from backprop.errors import ConfigError, ModelFileError
from backprop.nn.network import MLP
from backprop.nn.training import (
    EpochMetrics,
    History,
    TrainingState,
    parameter_bytes,
    training_copies,
)
from backprop.nn.training import train as train_network
from backprop.pipeline import plots
from backprop.pipeline.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from backprop.pipeline.files import atomic_write_bytes, check_output_folder
from backprop.pipeline.interrupt import Interrupted, deferred
from backprop.pipeline.model_files import save_model
from backprop.pipeline.prepared import Prepared, load_prepared
from backprop.pipeline.project import project_root
from backprop.pipeline.registry import stage_key
from backprop.pipeline.runlog import NO_LOG, RunLog
from backprop.tables.memory import available_memory, gib

if TYPE_CHECKING:
    from backprop.pipeline.settings import Settings

HISTORY_FILE = "history.csv"
CURVES_FILE = "training.png"


@dataclass
class Trained:
    network: MLP
    history: History
    prepared: Prepared
    model: Path

    @property
    def summary(self) -> str:
        history = self.history
        kept = f" (kept epoch {history.best_epoch})" if history.best_epoch else ""
        accuracy = history.kept().val_accuracy  # of the weights written, not of the last epoch
        val = f", validation accuracy {accuracy:.4f}" if accuracy is not None else ""
        return f"trained {len(history.epochs)} epochs{kept}{val} -> {self.model}"


class TrainingInterrupted(Interrupted):
    """Training stopped by a signal; ``checkpoint`` holds epoch ``epoch`` (0: none yet)."""

    def __init__(self, signal_name: str, epoch: int, checkpoint: Path | None) -> None:
        super().__init__(signal_name)
        self.epoch, self.checkpoint = epoch, checkpoint

    def message(self, prog: str, how: str) -> str:
        """What to say: which epoch is saved and how to go on (``how``)."""
        if self.epoch and self.checkpoint is not None:
            return (
                f"{prog}: interrupted by {self.signal_name}; epoch {self.epoch} is saved in "
                f"{self.checkpoint}; resume with {how}"
            )
        return (
            f"{prog}: interrupted by {self.signal_name} before an epoch was saved; "
            "nothing to resume"
        )


def checkpoint_of(settings: Settings, data_sha256: str, root: Path | None = None) -> Path:
    """Where training with these settings on this data keeps its checkpoint."""
    return checkpoint_path(root or project_root(), stage_key("train", settings, data_sha256))


def train(
    settings: Settings,
    *,
    prepared: Path,
    model: Path,
    reports: Path,
    log: RunLog = NO_LOG,
    progress: bool = True,
) -> Trained:
    """The stage: train on ``prepared``, write the model and the training reports.

    ``log`` records the run and sees every epoch; ``progress`` shows a bar on a terminal.
    """
    check_output_folder(model, None, "model")  # before the work: they are written after it
    check_output_folder(reports, None, "training reports")
    data = load_prepared(prepared)
    log.training_started(settings, data.source)
    # One Generator from the seed: first the initial weights, then the batch order.
    rng = np.random.default_rng(settings.train.seed)
    network = _network(settings, len(data.feature_names), len(data.classes), rng)
    has_val = len(data.y["val"]) > 0
    if not has_val and settings.train.patience is not None:
        raise ConfigError(
            "needs a validation split, but preprocess.val_fraction is 0; "
            "set train.patience=null or a val_fraction > 0",
            "train.patience",
        )
    checkpoint = checkpoint_of(settings, data.source["sha256"]) if data.source else None
    state = _resume_state(settings, checkpoint, network)
    bar = _progress_bar(settings.train.epochs, progress)
    if state is not None:
        log.resumed_from(state)
        bar.update(state.epoch)
    saved = [state.epoch if state else 0]

    def save(s: TrainingState) -> None:
        with deferred():  # a Ctrl-C or SIGTERM now waits for the checkpoint to be complete
            save_checkpoint(checkpoint, s, {"mlflow_run_id": log.run_id})
            saved[0] = s.epoch

    def on_epoch(metrics: EpochMetrics) -> None:
        log(metrics)
        bar.update(1)
        shown = {"loss": f"{metrics.train_loss:.4f}"}
        if metrics.val_accuracy is not None:
            shown["val_acc"] = f"{metrics.val_accuracy:.4f}"
        bar.set_postfix(shown)

    try:
        history = train_network(
            network,
            data.X["train"],
            data.y["train"],
            settings.train,
            settings.optim,
            rng,
            data.X["val"] if has_val else None,
            data.y["val"] if has_val else None,
            callback=on_epoch,
            checkpoint=save if checkpoint is not None else None,
            resume=state,
        )
    except KeyboardInterrupt as err:
        name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
        raise TrainingInterrupted(name, saved[0], checkpoint) from None
    finally:
        bar.close()
    save_model(
        model,
        network,
        classes=data.classes,
        extra={
            "label_column": data.label_column,
            "feature_names": data.feature_names,
            "scaler": data.scaler.to_dict(),
            "training": training_summary(history),
        },
    )
    reports = Path(reports)
    atomic_write_bytes(reports / HISTORY_FILE, history_csv(history).encode())
    rows = history.epochs
    curves = plots.training_curves(
        [m.epoch for m in rows],
        [m.train_loss for m in rows],
        [m.val_loss for m in rows],
        [m.val_accuracy for m in rows],
        history.best_epoch,
        title=describe(settings, network),
    )
    atomic_write_bytes(reports / CURVES_FILE, curves)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # the model is written: nothing left to resume
    log.model_trained(Path(model), [reports / HISTORY_FILE, reports / CURVES_FILE], data, history)
    return Trained(network, history, data, Path(model))


def describe(settings: Settings, network: MLP) -> str:
    """The run in a line, for its figures: ``64-256-64-10 sigmoid, sgd lr=1, batch 16, seed 0``."""
    layers = "-".join(str(n) for n in network.layer_sizes)
    optim, train = settings.optim, settings.train
    return (f"{layers} {settings.model.activation}, {optim.name} lr={optim.lr:g}, "
            f"batch {train.batch_size}, seed {train.seed}")  # fmt: skip


def training_summary(history: History) -> dict[str, float | int | None]:
    """What evaluate reports of the training (model.json carries it): epochs trained,
    the epoch kept, and the validation scores of the weights kept."""
    kept = history.kept()
    return {
        "epochs": len(history.epochs),
        "kept_epoch": history.best_epoch or len(history.epochs),
        "val_accuracy": kept.val_accuracy,
        "val_loss": kept.val_loss,
    }


def _network(settings: Settings, n_inputs: int, n_outputs: int, rng: np.random.Generator) -> MLP:
    """The network, or a ConfigError saying what it needs before it fails to allocate."""
    one = parameter_bytes(settings.model, n_inputs, n_outputs)
    copies = training_copies(settings.optim, settings.train)
    needed = one * copies
    available = available_memory()
    sizes = list(settings.model.hidden_sizes)
    if available is not None and needed > available:
        raise ConfigError(
            f"{{key}} {sizes} needs {gib(needed)} to train ({copies} copies of its "
            f"{gib(one)} of parameters: weights, gradients, optimizer state, best epoch), "
            f"more than the {gib(available)} of memory available; choose smaller layers",
            "model.hidden_sizes",
        )
    try:
        return MLP.from_config(settings.model, n_inputs, n_outputs, rng)
    except MemoryError as err:
        raise ConfigError(f"{{key}} {sizes}: {err}; choose smaller layers",
                          "model.hidden_sizes") from None  # fmt: skip


def _resume_state(
    settings: Settings, checkpoint: Path | None, network: MLP
) -> TrainingState | None:
    if checkpoint is None or not settings.train.resume:
        return None
    if not checkpoint.exists():
        print(
            f"backprop: train.resume is set but there is no checkpoint for these settings "
            f"({checkpoint}); training from the first epoch",
            file=sys.stderr,
        )
        return None
    state, _ = load_checkpoint(checkpoint)
    if [p.shape for p in state.parameters] != [p.shape for p in network.parameters()]:
        raise ModelFileError(f"{checkpoint}: made for other layer sizes than these")
    return state


def _progress_bar(total: int, enabled: bool) -> tqdm:
    """A progress bar over epochs on a terminal; silent otherwise."""
    return tqdm(total=total, unit="epoch", disable=not (enabled and sys.stderr.isatty()),
                leave=False)  # fmt: skip


def history_csv(history: History) -> str:
    out = io.StringIO()
    out.write("epoch,train_loss,val_loss,val_accuracy\n")
    for m in history.epochs:
        cells = [m.epoch, m.train_loss, m.val_loss, m.val_accuracy]
        out.write(",".join("" if c is None else repr(c) for c in cells) + "\n")
    return out.getvalue()
