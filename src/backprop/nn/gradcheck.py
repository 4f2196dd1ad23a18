"""Check backpropagation against central finite differences.

For a parameter ``p`` the numerical gradient is ``(E(p + h) - E(p - h)) / 2h``;
its error is O(h^2), so in float64 with h = 1e-6 analytic and numerical
gradients agree to about 1e-9 relative error where the maths is right, and
disagree visibly where it is not.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from backprop.nn.activations import ACTIVATIONS
from backprop.nn.losses import HEADS
from backprop.nn.network import MLP, one_hot

TOLERANCE = 1e-6


@dataclass(frozen=True)
class TensorCheck:
    activation: str
    output: str
    loss: str
    tensor: str  # "W0", "b0", ...
    max_relative_error: float

    @property
    def ok(self) -> bool:
        return self.max_relative_error < TOLERANCE


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """|a - n| / max(|a| + |n|, 1e-8): relative, but not blown up where both are ~0."""
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)


def numerical_gradients(
    network: MLP, X: np.ndarray, targets: np.ndarray, weight_decay: float, h: float
) -> list[np.ndarray]:
    """Central differences of ``network.objective`` for every parameter entry."""
    grads = []
    for p in network.parameters():
        g = np.empty_like(p)
        flat_p, flat_g = p.reshape(-1), g.reshape(-1)
        for j in range(flat_p.size):
            old = flat_p[j]
            flat_p[j] = old + h
            plus = network.objective(X, targets, weight_decay)
            flat_p[j] = old - h
            minus = network.objective(X, targets, weight_decay)
            flat_p[j] = old
            flat_g[j] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


def check_network(
    network: MLP,
    X: np.ndarray,
    targets: np.ndarray,
    weight_decay: float = 0.0,
    h: float = 1e-6,
) -> list[tuple[str, float]]:
    """(tensor name, max relative error) for every parameter tensor of ``network``."""
    ws = network.workspace(len(X))
    network.forward(X, ws)
    network.backward(ws, targets, weight_decay)
    analytic = [g.copy() for g in network.gradients()]
    numeric = numerical_gradients(network, X, targets, weight_decay, h)
    names = [f"{kind}{i}" for i in range(network.n_layers) for kind in "Wb"]
    return [
        (name, float(relative_error(a, n).max()))
        for name, a, n in zip(names, analytic, numeric, strict=True)
    ]


def check_all(
    seed: int = 0,
    layer_sizes: tuple[int, ...] = (5, 4, 3, 3),
    n_samples: int = 7,
    weight_decay: float = 1e-2,
) -> list[TensorCheck]:
    """Gradient check of every hidden activation x output/loss pair, in float64.

    Each pair draws its network and data from a Generator seeded by ``seed`` and the
    names of the pair, so that adding an activation leaves the other checks as they were.
    """
    results = []
    for activation in ACTIVATIONS:
        for output, loss in HEADS:
            names = f"{activation} {output} {loss}".encode()
            rng = np.random.default_rng([seed, zlib.crc32(names)])
            network = MLP(layer_sizes, activation, output, loss, dtype="float64", rng=rng)
            # Random non-zero biases so that no relu input sits at its kink by construction.
            for b in network.biases:
                b[...] = rng.uniform(-0.5, 0.5, b.shape)
            X = rng.standard_normal((n_samples, layer_sizes[0]))
            if loss == "cross_entropy":
                targets = one_hot(
                    rng.integers(0, layer_sizes[-1], n_samples), layer_sizes[-1], "float64"
                )
            else:
                targets = rng.uniform(0, 1, (n_samples, layer_sizes[-1]))
            for tensor, error in check_network(network, X, targets, weight_decay):
                results.append(TensorCheck(activation, output, loss, tensor, error))
    return results
