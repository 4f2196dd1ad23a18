"""leaky_relu: ``a = z if z > 0 else s z``, ``da/dz = 1 if a > 0 else s``.

The slope ``s`` (``negative_slope``, in [0, 1)) keeps a unit that has gone
negative learning: relu's derivative is 0 there, so a unit pushed below zero
for every input never comes back.  For ``s >= 0`` the output has the sign of
the input (``a > 0`` exactly when ``z > 0``), so the derivative can be read off
the output and the activation works in place, as relu does.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from annotated_types import Interval

from backprop.nn.activations.base import Activation
from backprop.schema import settings


@settings
class LeakyReLU(Activation):
    name = "leaky_relu"
    initialisation = "he"

    negative_slope: Annotated[float, Interval(ge=0, lt=1)] = 0.01

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        # max(z, s z) for s in [0, 1).  One temporary of the batch's size: a masked
        # multiply of the negative entries alone is many times slower (short runs).
        return np.maximum(z, z * self.negative_slope, out=out)

    def derivative(self, delta, a, z, scratch) -> np.ndarray:
        s = self.negative_slope
        np.greater(a, 0, out=scratch)  # 1.0 where the unit was active, else 0.0
        scratch *= 1 - s
        scratch += s  # 1 where active, s elsewhere
        delta *= scratch
        return delta

    def reference(self, torch: Any, z: Any) -> Any:
        return torch.nn.functional.leaky_relu(z, negative_slope=self.negative_slope)
