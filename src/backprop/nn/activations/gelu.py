"""gelu: exact GELU, ``a = z Phi(z)``, ``da/dz = Phi(z) + z phi(z)``.

``Phi`` is the standard normal distribution function, ``(1 + erf(z / sqrt 2)) / 2``,
and ``phi = Phi'`` its density: a unit passes its input weighted by how likely a
standard normal variable is to lie below it.  The output does not determine the
input (``a`` dips to -0.17 near z = -0.75 and comes back to 0 on both sides), so
the derivative needs ``z``: the activation is not in place, and the network keeps
``z`` and gives ``a`` an array of its own.

``Phi`` is ``scipy.special.ndtr``, which is ``(1 + erf(z / sqrt 2)) / 2`` computed
through ``erfc`` for negative z, where ``1 + erf`` would cancel to nothing.

The derivative has one spare array, ``scratch``, so it is written as a product of
factors that each depend on ``z`` alone and are multiplied into ``delta`` one at
a time::

    Phi(z) + z phi(z) = Phi(z) (1 + z H(z)),   H = phi / Phi = sqrt(2/pi) / erfcx(-z / sqrt 2)

``erfcx(x) = e^(x^2) erfc(x)`` gives the ratio without computing ``e^(-z^2/2)``
and ``Phi(z)`` separately (both underflow for z < -38, where ``H(z)`` is still
about ``-z``).  Its argument is clipped: above z = 13, ``erfcx`` would overflow
float32 while ``H`` is below 1e-37 and ``1 + z H`` is 1; below z = -40, ``Phi(z)``
is exactly 0 in both precisions, so any finite ``H`` gives the true 0.  In both
precisions the derivative is then exact to rounding for |z| < 1e20 and finite
for |z| < 1e36 (``z H`` overflows float32 beyond); the forward pass, for any z.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from backprop.nn.activations.base import Activation
from backprop.schema import settings

# Bounds of z for H(z): see the module docstring.
_LOW, _HIGH = -40.0, 13.0
_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


@settings
class GELU(Activation):
    name = "gelu"
    # Like relu, it passes (about) half of its inputs and zeroes the rest.
    initialisation = "he"
    in_place = False

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        special.ndtr(z, out=out)  # Phi(z)
        out *= z
        return out

    def derivative(self, delta, a, z, scratch) -> np.ndarray:
        special.ndtr(z, out=scratch)  # Phi(z), in [0, 1]: first, so that delta stays bounded
        delta *= scratch
        np.clip(z, _LOW, _HIGH, out=scratch)
        scratch *= -_SQRT_HALF
        special.erfcx(scratch, out=scratch)  # sqrt(pi/2) Phi/phi at the clipped z
        np.divide(z, scratch, out=scratch)
        scratch *= _SQRT_2_OVER_PI  # z H(z)
        scratch += 1
        delta *= scratch
        return delta

    def reference(self, torch: Any, z: Any) -> Any:
        return torch.nn.functional.gelu(z)  # approximate="none": the erf form
