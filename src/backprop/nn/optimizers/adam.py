"""adam: Adam (Kingma & Ba, 2015) with bias-corrected first and second moments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from annotated_types import Gt, Interval

from backprop.nn.optimizers.base import LearningRate, OptimConfig, Optimizer
from backprop.schema import settings


@settings
class AdamConfig(OptimConfig):
    name: str = "adam"
    lr: LearningRate = 0.001
    beta1: Annotated[float, Interval(ge=0, lt=1)] = 0.9
    beta2: Annotated[float, Interval(ge=0, lt=1)] = 0.999
    eps: Annotated[float, Gt(0)] = 1e-8


class Adam(Optimizer):
    name = "adam"
    Config = AdamConfig

    def __init__(self, params: Sequence[np.ndarray], config: AdamConfig) -> None:
        super().__init__(params, config)
        self.beta1, self.beta2, self.eps = config.beta1, config.beta2, config.eps
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

    def reference(self, torch: Any, params: list[Any], lr: float) -> Any:
        return torch.optim.Adam(params, lr=lr, betas=(self.beta1, self.beta2), eps=self.eps)
