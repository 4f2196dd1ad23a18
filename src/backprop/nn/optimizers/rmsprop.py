"""rmsprop: ``v <- rho v + (1 - rho) g^2``, ``w <- w - lr g / (sqrt(v) + eps)``.

Each weight's step is its gradient divided by a running root mean square of
its recent gradients, so weights with small, steady gradients move as far as
those with large ones.  PyTorch's convention: ``eps`` outside the root, and no
bias correction (``v`` starts at 0, so the first steps are larger than lr).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from annotated_types import Gt, Interval

from backprop.nn.optimizers.base import LearningRate, OptimConfig, Optimizer
from backprop.schema import settings


@settings
class RMSpropConfig(OptimConfig):
    name: str = "rmsprop"
    lr: LearningRate = 0.001
    rho: Annotated[float, Interval(ge=0, lt=1)] = 0.9
    eps: Annotated[float, Gt(0)] = 1e-8


class RMSprop(Optimizer):
    name = "rmsprop"
    Config = RMSpropConfig

    def __init__(self, params: Sequence[np.ndarray], config: RMSpropConfig) -> None:
        super().__init__(params, config)
        self.rho, self.eps = config.rho, config.eps
        self.v = [np.zeros_like(p) for p in params]
        # Room for g^2 and then the denominator, which g itself cannot hold: the
        # step needs g after v has taken g^2.  Not state: refilled every step.
        self._room = [np.empty_like(p) for p in params]

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
        rho = self.rho
        for p, g, v, room in zip(params, grads, self.v, self._room):
            v *= rho
            np.multiply(g, g, out=room)
            room *= 1 - rho
            v += room
            np.sqrt(v, out=room)
            room += self.eps
            np.divide(g, room, out=g)
            g *= lr
            p -= g

    def state(self) -> dict[str, np.ndarray]:
        return {f"v_{i}": v for i, v in enumerate(self.v)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for i, v in enumerate(self.v):
            v[...] = state[f"v_{i}"]

    def reference(self, torch: Any, params: list[Any], lr: float) -> Any:
        return torch.optim.RMSprop(params, lr=lr, alpha=self.rho, eps=self.eps)
