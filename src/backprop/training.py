"""The training loop: mini-batches, epochs, schedules, early stopping.

It knows nothing of files, tracking or progress bars: whoever wants to watch
passes ``callback``, called with an :class:`EpochMetrics` after every epoch.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from backprop.network import MLP, one_hot
from backprop.optimizers import OPTIMIZERS, SCHEDULES, make_optimizer, scheduled_lr


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite numbers."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Invalid values fail here, with the offending value quoted."""

    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_gamma: float = 0.5
    lr_step_size: int = 10
    lr_min: float = 0.0
    patience: int | None = None  # early stopping on val_loss; None turns it off
    min_delta: float = 0.0

    def __post_init__(self):
        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{key} must be {rule}, got {getattr(self, key)!r}")

        need(_is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1")
        need(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(_positive(self.learning_rate), "learning_rate", "a number > 0")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}")
        need(_in_unit(self.momentum), "momentum", "in [0, 1)")
        need(_in_unit(self.beta1), "beta1", "in [0, 1)")
        need(_in_unit(self.beta2), "beta2", "in [0, 1)")
        need(_positive(self.eps), "eps", "a number > 0")
        need(_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.lr_schedule in SCHEDULES, "lr_schedule", f"one of {', '.join(SCHEDULES)}")
        need(_positive(self.lr_gamma), "lr_gamma", "a number > 0")
        need(_is_int(self.lr_step_size) and self.lr_step_size >= 1, "lr_step_size", ">= 1")
        need(_number(self.lr_min) and self.lr_min >= 0, "lr_min", ">= 0")
        need(
            self.patience is None or (_is_int(self.patience) and self.patience >= 1),
            "patience",
            "an integer >= 1 or null",
        )
        need(_number(self.min_delta) and self.min_delta >= 0, "min_delta", ">= 0")

    def optimizer_options(self) -> dict[str, float]:
        if self.optimizer == "momentum":
            return {"momentum": self.momentum}
        if self.optimizer == "adam":
            return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}
        return {}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v) -> bool:
    return _number(v) and v > 0


def _in_unit(v) -> bool:
    """In [0, 1)."""
    return _number(v) and 0 <= v < 1


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch produced; val_* are None without a validation set."""

    epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass
class History:
    epochs: list[EpochMetrics] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights were kept, with early stopping
    stopped_early: bool = False

    def kept(self) -> EpochMetrics:
        """The metrics of the epoch whose weights the network ended with."""
        if self.best_epoch is not None:
            return self.epochs[self.best_epoch - 1]
        return self.epochs[-1]


@dataclass
class TrainingState:
    """Everything training needs to go on after ``epoch`` exactly as if never stopped."""

    epoch: int  # epochs completed
    parameters: list[np.ndarray]  # W0, b0, W1, b1, ...
    optimizer: dict[str, np.ndarray]
    rng: dict  # the Generator's bit_generator.state
    history: History
    best_loss: float = math.inf
    best_parameters: list[np.ndarray] | None = None
    waited: int = 0

    @property
    def finished(self) -> bool:
        return self.history.stopped_early


def train(
    network: MLP,
    X: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    rng: np.random.Generator,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    callback: Callable[[EpochMetrics], None] | None = None,
    checkpoint: Callable[[TrainingState], None] | None = None,
    resume: TrainingState | None = None,
) -> History:
    """Train ``network`` in place by mini-batch gradient descent.

    X : (n_samples, n_features).  y : class indices of shape (n_samples,), or
    targets of shape (n_samples, n_outputs) for squared error.  ``rng``
    shuffles the batches; the same rng state, data and config give
    bit-identical weights.

    ``checkpoint`` is called with the :class:`TrainingState` after every epoch;
    training from ``resume`` (such a state) ends with the very weights an
    uninterrupted run would have.
    """
    X = np.ascontiguousarray(X, dtype=network.dtype)
    targets = _targets(y, network)
    if len(X) != len(targets):
        raise ValueError(f"X has {len(X)} rows but y has {len(targets)}")
    if len(X) == 0:
        raise ValueError("cannot train on an empty data set")
    has_val = X_val is not None and y_val is not None
    if has_val:
        X_val = np.ascontiguousarray(X_val, dtype=network.dtype)
        val_targets = _targets(y_val, network)
    if config.patience is not None and not has_val:
        raise ValueError("early stopping (patience) needs a validation set")

    batch_size = config.batch_size
    if batch_size > len(X):
        warnings.warn(
            f"batch_size {batch_size} is larger than the {len(X)} training rows; using {len(X)}",
            stacklevel=2,
        )
        batch_size = len(X)

    params, grads = network.parameters(), network.gradients()
    optimizer = make_optimizer(config.optimizer, params, **config.optimizer_options())
    # Plain SGD needs no optimizer state, so the network updates its weights
    # inside the backward pass (MLP.sgd_step), saving a pass over every matrix.
    fused_sgd = config.optimizer == "sgd"
    history = History()
    best_loss, best_params, waited = math.inf, None, 0
    first = 1
    if resume is not None:
        network.set_parameters(resume.parameters)
        optimizer.load_state(resume.optimizer)
        rng.bit_generator.state = resume.rng
        history = resume.history
        best_loss, best_params, waited = resume.best_loss, resume.best_parameters, resume.waited
        first = config.epochs + 1 if resume.finished else resume.epoch + 1

    for epoch in range(first, config.epochs + 1):
        started = time.perf_counter()
        lr = scheduled_lr(
            config.lr_schedule,
            config.learning_rate,
            epoch,
            config.epochs,
            gamma=config.lr_gamma,
            step_size=config.lr_step_size,
            min_lr=config.lr_min,
        )
        order = rng.permutation(len(X))
        total = 0.0
        # Overflow is not a warning here but an error: the checks below turn
        # it into TrainingDiverged, with the epoch and batch where it happened.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for batch, start in enumerate(range(0, len(X), batch_size), start=1):
                idx = order[start : start + batch_size]
                batch_targets = targets[idx]
                ws = network.workspace(len(idx))
                network.forward(X[idx], ws)
                loss = network.loss(ws, batch_targets)
                if not math.isfinite(loss):
                    raise _diverged(
                        f"the training loss became non-finite at epoch {epoch}, batch {batch}", lr
                    )
                total += loss * len(idx)
                if fused_sgd:
                    network.sgd_step(ws, batch_targets, lr, config.weight_decay)
                else:
                    network.backward(ws, batch_targets, config.weight_decay)
                    optimizer.step(params, grads, lr)
            if not all(np.isfinite(p).all() for p in params):
                raise _diverged(
                    f"the weights became non-finite during epoch {epoch} "
                    f"(checked after its last batch, {batch})",
                    lr,
                )

        val_loss = val_accuracy = None
        if has_val:
            val_loss, outputs = network.evaluate(X_val, val_targets)
            val_accuracy = float((outputs.argmax(1) == val_targets.argmax(1)).mean())
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=total / len(X),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            learning_rate=lr,
            seconds=time.perf_counter() - started,
        )
        history.epochs.append(metrics)
        if callback is not None:
            callback(metrics)

        if config.patience is not None:
            if val_loss < best_loss - config.min_delta:
                best_loss, best_params, waited = val_loss, network.copy_parameters(), 0
                history.best_epoch = epoch
            else:
                waited += 1
                if waited >= config.patience:
                    history.stopped_early = True
        if checkpoint is not None:
            checkpoint(
                TrainingState(
                    epoch=epoch,
                    parameters=network.parameters(),  # the caller saves them before we go on
                    optimizer=optimizer.state(),
                    rng=rng.bit_generator.state,
                    history=history,
                    best_loss=best_loss,
                    best_parameters=best_params,
                    waited=waited,
                )
            )
        if history.stopped_early:
            break

    if best_params is not None:
        network.set_parameters(best_params)
    return history


def _targets(y: np.ndarray, network: MLP) -> np.ndarray:
    y = np.asarray(y)
    n_outputs = network.layer_sizes[-1]
    if y.ndim == 1:
        return one_hot(y, n_outputs, network.dtype)
    if y.ndim == 2 and y.shape[1] == n_outputs:
        return np.ascontiguousarray(y, dtype=network.dtype)
    raise ValueError(
        f"y must be class indices of shape (n,) or targets of shape (n, {n_outputs}); "
        f"got shape {y.shape}"
    )


def _diverged(what: str, lr: float) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged: {what}, learning rate {lr:g}; "
        f"try a smaller learning rate (for instance {lr / 10:g})"
    )
