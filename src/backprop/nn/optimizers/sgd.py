"""sgd: the article's rule, ``w <- w - lr * dE/dw``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from backprop.nn.optimizers.base import OptimConfig, Optimizer
from backprop.schema import settings


@settings
class SGDConfig(OptimConfig):
    name: str = "sgd"


class SGD(Optimizer):
    name = "sgd"
    Config = SGDConfig
    # Plain SGD needs no state, so the network updates its weights inside the
    # backward pass (MLP.sgd_step), saving a pass over every matrix.
    fused = True

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
        for p, g in zip(params, grads):
            g *= lr
            p -= g

    def reference(self, torch: Any, params: list[Any], lr: float) -> Any:
        return torch.optim.SGD(params, lr=lr)
