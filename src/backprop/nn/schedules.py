"""Learning-rate schedules: the rate of each epoch (1-based) out of ``epochs``."""

from __future__ import annotations

import math
from collections.abc import Callable


def constant(lr: float, k: int, epochs: int, gamma: float, step_size: int, min_lr: float) -> float:
    return lr


def step(lr: float, k: int, epochs: int, gamma: float, step_size: int, min_lr: float) -> float:
    """``lr * gamma ** ((epoch - 1) // step_size)``."""
    return lr * gamma ** (k // step_size)


def exponential(
    lr: float, k: int, epochs: int, gamma: float, step_size: int, min_lr: float
) -> float:
    """``lr * gamma ** (epoch - 1)``."""
    return lr * gamma**k


def cosine(lr: float, k: int, epochs: int, gamma: float, step_size: int, min_lr: float) -> float:
    """From ``lr`` at the first epoch down to ``min_lr`` at the last."""
    span = max(epochs - 1, 1)
    return float(min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * k / span)))


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "step": step,
    "exponential": exponential,
    "cosine": cosine,
}
