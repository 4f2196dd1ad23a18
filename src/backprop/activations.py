"""Hidden-layer activations, each next to its derivative.

Every activation works in place on a pre-activation array ``z`` of shape
``(n_samples, n_units)`` and turns it into the layer's output ``a``.  Its
derivative is written in terms of that output ``a`` (never ``z``), so the
backward pass needs nothing but the activations kept from the forward pass:

    sigmoid   a = 1 / (1 + e^-z)      da/dz = a (1 - a)
    tanh      a = tanh(z)             da/dz = 1 - a^2
    relu      a = max(z, 0)           da/dz = 1 if a > 0 else 0

``DERIVATIVES[name](delta, a, scratch)`` turns dE/da into dE/dz in place;
``scratch`` is a spare array of a's shape, so the hot path allocates nothing.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function in place.

    Written as ``(1 + tanh(z / 2)) / 2``, which is the same function but never
    overflows: the article's ``1 / (1 + exp(-z))`` warns for z < -88 in float32.
    """
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z


def sigmoid_derivative(delta: np.ndarray, a: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    np.subtract(1, a, out=scratch)
    delta *= a
    delta *= scratch
    return delta


def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z, out=z)


def tanh_derivative(delta: np.ndarray, a: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    np.multiply(a, a, out=scratch)
    np.subtract(1, scratch, out=scratch)
    delta *= scratch
    return delta


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0, out=z)


def relu_derivative(delta: np.ndarray, a: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    np.greater(a, 0, out=scratch)  # 1.0 where the unit was active
    delta *= scratch
    return delta


ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "relu": relu}
DERIVATIVES = {"sigmoid": sigmoid_derivative, "tanh": tanh_derivative, "relu": relu_derivative}

# Glorot keeps the variance of sigmoid/tanh layers near their linear region; He
# doubles it for relu, which zeroes half of its inputs.  The article's unscaled
# randn gives a 784-input sigmoid layer pre-activations of standard deviation ~16,
# so every unit saturates and its gradient a (1 - a) vanishes.
INITIALISATION = {"sigmoid": "glorot", "tanh": "glorot", "relu": "he"}


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {name!r}; choose one of: {known}")
    return name


def init_scale(activation: str, fan_in: int, fan_out: int) -> float:
    """Standard deviation of a normal initialisation suited to ``activation``."""
    if INITIALISATION[activation] == "he":
        return float(np.sqrt(2.0 / fan_in))
    return float(np.sqrt(2.0 / (fan_in + fan_out)))
