"""relu: ``a = max(z, 0)``, ``da/dz = 1 if a > 0 else 0``."""

from __future__ import annotations

from typing import Any

import numpy as np

from backprop.nn.activations.base import Activation
from backprop.schema import settings


@settings
class ReLU(Activation):
    name = "relu"
    initialisation = "he"

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0, out=out)

    def derivative(self, delta, a, z, scratch) -> np.ndarray:
        np.greater(a, 0, out=scratch)  # 1.0 where the unit was active
        delta *= scratch
        return delta

    def reference(self, torch: Any, z: Any) -> Any:
        return torch.relu(z)
