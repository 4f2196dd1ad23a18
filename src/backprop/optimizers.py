"""Update rules: given parameters and their gradients, move the parameters.

Each optimizer updates the arrays in place and may overwrite the gradient
arrays, which are scratch space refilled by every backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SGD:
    """The article's rule: ``w <- w - lr * dE/dw``."""

    def __init__(self, params: Sequence[np.ndarray]):
        pass

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
        for p, g in zip(params, grads):
            g *= lr
            p -= g

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        pass


class Momentum:
    """Heavy ball: ``v <- mu v + g``, ``w <- w - lr v`` (PyTorch's convention, so
    a learning-rate schedule scales the whole step)."""

    def __init__(self, params: Sequence[np.ndarray], momentum: float = 0.9):
        self.momentum = momentum
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
        for p, g, v in zip(params, grads, self.velocity):
            v *= self.momentum
            v += g
            np.multiply(v, lr, out=g)
            p -= g

    def state(self) -> dict[str, np.ndarray]:
        return {f"velocity_{i}": v for i, v in enumerate(self.velocity)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for i, v in enumerate(self.velocity):
            v[...] = state[f"velocity_{i}"]


class Adam:
    """Adam (Kingma & Ba, 2015) with bias-corrected first and second moments."""

    def __init__(
        self,
        params: Sequence[np.ndarray],
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Fold both bias corrections into the step size and epsilon.
        step = float(lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t))
        eps = float(self.eps * np.sqrt(1 - b2**self.t))
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            g *= g
            g *= 1 - b2
            v += g
            np.sqrt(v, out=g)
            g += eps
            np.divide(m, g, out=g)
            g *= step
            p -= g

    def state(self) -> dict[str, np.ndarray]:
        state = {"t": np.array(self.t)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            state[f"m_{i}"], state[f"v_{i}"] = m, v
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            m[...], v[...] = state[f"m_{i}"], state[f"v_{i}"]


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(name: str, params: Sequence[np.ndarray], **options: float):
    """The optimizer ``name`` for ``params``; ``options`` are its keyword arguments."""
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        known = ", ".join(OPTIMIZERS)
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {known}") from None
    return cls(params, **options)


SCHEDULES = ("constant", "step", "exponential", "cosine")


def scheduled_lr(
    schedule: str,
    lr: float,
    epoch: int,
    epochs: int,
    gamma: float = 0.5,
    step_size: int = 10,
    min_lr: float = 0.0,
) -> float:
    """Learning rate of ``epoch`` (1-based) under ``schedule``.

    constant: ``lr``; step: ``lr * gamma ** ((epoch - 1) // step_size)``;
    exponential: ``lr * gamma ** (epoch - 1)``; cosine: from ``lr`` at the
    first epoch down to ``min_lr`` at the last.
    """
    k = epoch - 1
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * gamma ** (k // step_size)
    if schedule == "exponential":
        return lr * gamma**k
    if schedule == "cosine":
        span = max(epochs - 1, 1)
        return float(min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(np.pi * k / span)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
