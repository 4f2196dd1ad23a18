"""The training loop: mini-batches, epochs, schedules, early stopping.

It knows nothing of files, tracking or progress bars: whoever wants to watch
passes ``callback``, called with an :class:`EpochMetrics` after every epoch.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated

import numpy as np
from annotated_types import Ge

from backprop.errors import ConfigError, TrainingDiverged
from backprop.nn.network import MLP, ModelConfig, one_hot
from backprop.nn.optimizers import OPTIMIZERS, OptimConfig, make_optimizer, scheduled_lr
from backprop.schema import RUN_OPTION, settings


@settings
class TrainConfig:
    """The ``train`` section: epochs, batches, the seed, early stopping.

    ``seed`` seeds the one Generator of a run (initial weights, then batch
    order): whoever builds the network makes it.  ``resume`` says how a run is
    carried out, not what it computes: the pipeline goes on from a checkpoint.
    """

    epochs: Annotated[int, Ge(1)] = 300
    batch_size: Annotated[int, Ge(1)] = 16
    seed: Annotated[int, Ge(0)] = 0
    # epochs without a better val_loss before stopping, restoring the best weights; null: never
    patience: Annotated[int, Ge(1)] | None = None
    min_delta: Annotated[float, Ge(0)] = 0.0
    resume: Annotated[bool, RUN_OPTION] = False


# An epoch whose mean training loss is this many times that of guessing every class
# alike has diverged, however finite: training that works never ends an epoch there.
DIVERGED_FACTOR = 10.0


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
    optim: OptimConfig,
    rng: np.random.Generator,
    X_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    callback: Callable[[EpochMetrics], None] | None = None,
    checkpoint: Callable[[TrainingState], None] | None = None,
    resume: TrainingState | None = None,
) -> History:
    """Train ``network`` in place by mini-batch gradient descent.

    X : (n_samples, n_features).  y : class indices of shape (n_samples,), or
    targets of shape (n_samples, n_outputs) for squared error.  ``optim`` is the
    update rule with its settings.  ``rng`` shuffles the batches; the same rng
    state, data and settings give bit-identical weights.

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
        raise ConfigError(
            "needs a validation split to stop early on; set it to null, or a val_fraction > 0",
            "patience",
        )

    batch_size = config.batch_size
    if batch_size > len(X):
        warnings.warn(
            f"batch_size {batch_size} is larger than the {len(X)} training rows; using {len(X)}",
            stacklevel=2,
        )
        batch_size = len(X)

    params, grads = network.parameters(), network.gradients()
    optimizer = make_optimizer(optim, params)
    fused_sgd = optimizer.fused  # the step inside the backward pass: MLP.sgd_step
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
        lr = scheduled_lr(optim, epoch, config.epochs)
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
                        f"the training loss became non-finite at epoch {epoch}, batch {batch}",
                        lr,
                        optim,
                    )
                total += loss * len(idx)
                if fused_sgd:
                    network.sgd_step(ws, batch_targets, lr, optim.weight_decay)
                else:
                    network.backward(ws, batch_targets, optim.weight_decay)
                    optimizer.step(params, grads, lr)
            if not all(np.isfinite(p).all() for p in params):
                raise _diverged(
                    f"the weights became non-finite during epoch {epoch} "
                    f"(checked after its last batch, {batch})",
                    lr,
                    optim,
                )

        train_loss = total / len(X)
        guessing = network.head.guessing(network.layer_sizes[-1])
        if train_loss > DIVERGED_FACTOR * guessing:
            raise _diverged(
                f"the training loss rose to {train_loss:.3g} in epoch {epoch}, over "
                f"{DIVERGED_FACTOR:g} times that of guessing ({guessing:.3g})",
                lr,
                optim,
            )

        val_loss = val_accuracy = None
        if has_val:
            val_loss, outputs = network.evaluate(X_val, val_targets)
            val_accuracy = float((outputs.argmax(1) == val_targets.argmax(1)).mean())
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            learning_rate=lr,
            seconds=time.perf_counter() - started,
        )
        history.epochs.append(metrics)

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
        # after the checkpoint: a callback that ends training (a pruner) leaves this epoch saved
        if callback is not None:
            callback(metrics)
        if history.stopped_early:
            break

    if best_params is not None:
        network.set_parameters(best_params)
    return history


def parameter_bytes(model: ModelConfig, n_inputs: int, n_outputs: int) -> int:
    """The bytes of one copy of the weights and biases of a network of ``model``."""
    sizes = [n_inputs, *model.hidden_sizes, n_outputs]
    n_params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return n_params * np.dtype(model.dtype).itemsize


def training_copies(optim: OptimConfig, config: TrainConfig) -> int:
    """How many arrays the size of the parameters training keeps for its whole length:
    weights, gradients, the optimizer's state and, with early stopping, the best weights."""
    return 2 + OPTIMIZERS[optim.name].copies(optim) + (config.patience is not None)


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


def _diverged(what: str, lr: float, optim: OptimConfig) -> TrainingDiverged:
    """The error, with a learning rate to try: the optimizer's default when ``lr`` is above
    it, else a tenth of ``lr``."""
    default = next(f.default for f in dataclasses.fields(optim) if f.name == "lr")
    if lr > default:
        hint = f"optim.lr={default:g}, the default of {optim.name}"
    else:
        hint = f"optim.lr={lr / 10:g}"
    return TrainingDiverged(
        f"training diverged: {what}, learning rate {lr:g}; try a smaller one, such as {hint}"
    )
