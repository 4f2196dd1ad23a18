"""sigmoid: ``a = 1 / (1 + e^-z)``, ``da/dz = a (1 - a)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from backprop.nn.activations.base import Activation
from backprop.schema import settings


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function of ``z`` into ``out`` (default: in place).

    Written as ``(1 + tanh(z / 2)) / 2``, which is the same function but never
    overflows: the article's ``1 / (1 + exp(-z))`` warns for z < -88 in float32.
    """
    out = z if out is None else out
    np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


@settings
class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return sigmoid(z, out)

    def derivative(self, delta, a, z, scratch) -> np.ndarray:
        np.subtract(1, a, out=scratch)
        delta *= a
        delta *= scratch
        return delta

    def reference(self, torch: Any, z: Any) -> Any:
        return torch.sigmoid(z)
