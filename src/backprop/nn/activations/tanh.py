"""tanh: ``a = tanh(z)``, ``da/dz = 1 - a^2``."""

from __future__ import annotations

from typing import Any

import numpy as np

from backprop.nn.activations.base import Activation
from backprop.schema import settings


@settings
class Tanh(Activation):
    name = "tanh"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.tanh(z, out=out)

    def derivative(self, delta, a, z, scratch) -> np.ndarray:
        np.multiply(a, a, out=scratch)
        np.subtract(1, scratch, out=scratch)
        delta *= scratch
        return delta

    def reference(self, torch: Any, z: Any) -> Any:
        return torch.tanh(z)
