"""momentum: heavy ball, ``v <- mu v + g``, ``w <- w - lr v``.

PyTorch's convention (the learning rate outside the velocity), so that a
learning-rate schedule scales the whole step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from annotated_types import Interval

from backprop.nn.optimizers.base import LearningRate, OptimConfig, Optimizer
from backprop.schema import settings


@settings
class MomentumConfig(OptimConfig):
    name: str = "momentum"
    lr: LearningRate = 0.3
    momentum: Annotated[float, Interval(ge=0, lt=1)] = 0.9


class Momentum(Optimizer):
    name = "momentum"
    Config = MomentumConfig

    def __init__(self, params: Sequence[np.ndarray], config: MomentumConfig) -> None:
        super().__init__(params, config)
        self.momentum = config.momentum
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

    def reference(self, torch: Any, params: list[Any], lr: float) -> Any:
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum)
