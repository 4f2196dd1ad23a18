"""A multi-layer perceptron: forward pass, backward pass, nothing else.

Shapes are batch-first: inputs ``X`` of shape ``(n_samples, n_features)``,
weights ``W[i]`` of shape ``(fan_in, fan_out)``, biases ``b[i]`` of shape
``(fan_out,)``, so a layer is ``a_next = f(a @ W + b)``.

The hot path works in preallocated buffers (a :class:`Workspace` per batch
size): a training epoch then allocates almost nothing, and every operation
runs in place on arrays of the network's dtype.  Matrix products go through
``gemm``, which accumulates into its output: the bias is written first and the
product added to it, and plain SGD (:meth:`MLP.sgd_step`) adds ``-lr * A.T @
delta`` straight into the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backprop.activations import ACTIVATIONS, DERIVATIVES, check_activation, init_scale
from backprop.gemm import gemm
from backprop.losses import get_head

DTYPES = ("float32", "float64")


class Workspace:
    """Buffers for one batch size: pre-activations, the output and the deltas.

    ``zs[i]`` holds layer i's pre-activation of shape (n, fan_out); hidden
    activations overwrite it in place, so it then holds the layer's output.
    ``scratch[i]`` is spare room of the same shape for the backward pass.
    """

    def __init__(self, layer_sizes: Sequence[int], n: int, dtype: np.dtype):
        self.n = n
        self.zs = [np.empty((n, size), dtype) for size in layer_sizes[1:]]
        self.output = np.empty((n, layer_sizes[-1]), dtype)
        self.deltas = [np.empty((n, size), dtype) for size in layer_sizes[1:]]
        self.scratch = [np.empty((n, size), dtype) for size in layer_sizes[1:-1]]
        self.inputs: np.ndarray | None = None


class MLP:
    """A fully connected network trained by backpropagation.

    Parameters
    ----------
    layer_sizes : sizes of all layers, input first and output last,
        e.g. ``[784, 256, 64, 10]`` for the article's network.
    activation : hidden activation, one of ``ACTIVATIONS``.
    output, loss : the output activation and loss, a pair of ``losses.HEADS``.
    dtype : ``"float32"`` (fast, the default) or ``"float64"``.
    rng : a Generator to draw initial weights from; without one the weights are
        zeros and must be set (for instance by ``io.load_model``).
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "sigmoid",
        output: str = "softmax",
        loss: str = "cross_entropy",
        dtype: str = "float32",
        rng: np.random.Generator | None = None,
    ):
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(
                f"layer_sizes must list at least an input and an output size, all >= 1; got {sizes}"
            )
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        self.layer_sizes = sizes
        self.activation = check_activation(activation)
        self.head = get_head(output, loss)
        self.output, self.loss_name = output, loss
        self.dtype = np.dtype(dtype)
        self.weights = [np.zeros((a, b), self.dtype) for a, b in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.zeros(b, self.dtype) for b in sizes[1:]]
        self.grad_weights = [np.empty_like(w) for w in self.weights]
        self.grad_biases = [np.empty_like(b) for b in self.biases]
        self._workspaces: dict[int, Workspace] = {}
        if rng is not None:
            self.initialise(rng)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def initialise(self, rng: np.random.Generator) -> None:
        """Normal weights scaled for the activation (Glorot or He), zero biases."""
        for i, w in enumerate(self.weights):
            fan_in, fan_out = w.shape
            # The output layer feeds softmax/sigmoid, which Glorot suits.
            act = self.activation if i < self.n_layers - 1 else "sigmoid"
            scale = init_scale(act, fan_in, fan_out)
            w[...] = rng.standard_normal(w.shape) * scale
            self.biases[i][...] = 0

    def parameters(self) -> list[np.ndarray]:
        """[W0, b0, W1, b1, ...]: the arrays themselves, not copies."""
        return [p for pair in zip(self.weights, self.biases) for p in pair]

    def gradients(self) -> list[np.ndarray]:
        """Gradients of the last ``backward`` call, in the order of ``parameters``."""
        return [g for pair in zip(self.grad_weights, self.grad_biases) for g in pair]

    def workspace(self, n: int) -> Workspace:
        """The buffers for batches of n rows, kept for the next call with the same n."""
        ws = self._workspaces.get(n)
        if ws is None:
            if len(self._workspaces) >= 8:  # many odd tail sizes: keep memory bounded
                self._workspaces.clear()
            ws = self._workspaces[n] = Workspace(self.layer_sizes, n, self.dtype)
        return ws

    # -- forward / backward -------------------------------------------------

    def forward(self, X: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
        """Output of shape (n, n_outputs) for C-contiguous X (n, n_features) of the network's dtype.

        With a workspace the result lives in its buffers (overwritten by the
        next call with the same workspace) and ``backward`` may follow.
        """
        if ws is None:
            ws = Workspace(self.layer_sizes, len(X), self.dtype)
        ws.inputs = a = X
        act = ACTIVATIONS[self.activation]
        last = self.n_layers - 1
        for i, (w, b, z) in enumerate(zip(self.weights, self.biases, ws.zs)):
            np.copyto(z, b)  # broadcast the bias over the rows, then add the product
            gemm(z, a, w, 1.0, 1.0)  # z = a @ w + b: (n, fan_in) @ (fan_in, fan_out)
            a = act(z) if i < last else self.head.forward(z, ws.output)
        return a

    def loss(self, ws: Workspace, targets: np.ndarray) -> float:
        """Mean data loss of the last ``forward`` through ``ws`` against targets (n, k)."""
        return self.head.value(ws.zs[-1], ws.output, targets)

    def backward(self, ws: Workspace, targets: np.ndarray, weight_decay: float = 0.0) -> None:
        """Gradients of the mean loss (+ weight_decay/2 * sum W^2) for the last forward.

        Fills ``grad_weights`` and ``grad_biases``.  ``targets`` (n, k) are one-hot
        classes or, for squared error, any real targets.
        """
        delta = self.head.delta(ws.zs[-1], ws.output, targets, ws.deltas[-1])  # (n, k)
        for i in range(self.n_layers - 1, -1, -1):
            a_prev = ws.inputs if i == 0 else ws.zs[i - 1]  # (n, fan_in)
            gemm(self.grad_weights[i], a_prev.T, delta)  # (fan_in, n) @ (n, fan_out)
            np.sum(delta, axis=0, out=self.grad_biases[i])
            if weight_decay:
                self.grad_weights[i] += weight_decay * self.weights[i]
            if i > 0:
                delta = self._delta_below(ws, i, delta)

    def sgd_step(
        self, ws: Workspace, targets: np.ndarray, lr: float, weight_decay: float = 0.0
    ) -> None:
        """Backward pass and the update ``p <- p - lr * dE/dp`` in one sweep.

        The same result as ``backward`` followed by ``optimizers.SGD.step`` (up
        to rounding), but each weight matrix is updated by the matrix product
        that computes its gradient, so no gradient array is written or read.
        """
        delta = self.head.delta(ws.zs[-1], ws.output, targets, ws.deltas[-1])
        for i in range(self.n_layers - 1, -1, -1):
            a_prev = ws.inputs if i == 0 else ws.zs[i - 1]
            grad_b = np.sum(delta, axis=0, out=self.grad_biases[i])
            grad_b *= lr
            self.biases[i] -= grad_b
            below = self._delta_below(ws, i, delta) if i > 0 else None  # needs W before the step
            if weight_decay:
                self.weights[i] *= 1 - lr * weight_decay
            gemm(self.weights[i], a_prev.T, delta, -lr, 1.0)  # W <- W - lr a_prev.T @ delta
            delta = below

    def _delta_below(self, ws: Workspace, i: int, delta: np.ndarray) -> np.ndarray:
        """dE/dz of layer i-1 from dE/dz of layer i: (delta @ W[i].T) * f'(a[i-1])."""
        below = ws.deltas[i - 1]
        gemm(below, delta, self.weights[i].T)  # dE/da of layer i-1, (n, fan_in)
        return DERIVATIVES[self.activation](below, ws.zs[i - 1], ws.scratch[i - 1])

    # -- conveniences ---------------------------------------------------------

    def predict_proba(self, X: np.ndarray, chunk_size: int = 4096) -> np.ndarray:
        """Output activations of shape (n, n_outputs), computed in chunks."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        out = np.empty((len(X), self.layer_sizes[-1]), self.dtype)
        for start in range(0, len(X), chunk_size):
            chunk = X[start : start + chunk_size]
            out[start : start + len(chunk)] = self.forward(chunk, self.workspace(len(chunk)))
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class indices of shape (n,)."""
        return self.predict_proba(X).argmax(axis=1)

    def evaluate(
        self, X: np.ndarray, targets: np.ndarray, chunk_size: int = 4096
    ) -> tuple[float, np.ndarray]:
        """Mean loss and the outputs (n, k) over X, in chunks."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        outputs = np.empty((len(X), self.layer_sizes[-1]), self.dtype)
        total = 0.0
        for start in range(0, len(X), chunk_size):
            chunk = X[start : start + chunk_size]
            ws = self.workspace(len(chunk))
            outputs[start : start + len(chunk)] = self.forward(chunk, ws)
            total += self.loss(ws, targets[start : start + len(chunk)]) * len(chunk)
        return total / max(len(X), 1), outputs

    def objective(self, X: np.ndarray, targets: np.ndarray, weight_decay: float = 0.0) -> float:
        """Mean loss plus the L2 penalty: the function ``backward`` differentiates."""
        ws = Workspace(self.layer_sizes, len(X), self.dtype)
        self.forward(np.ascontiguousarray(X, dtype=self.dtype), ws)
        penalty = 0.5 * weight_decay * sum(float((w * w).sum()) for w in self.weights)
        return self.loss(ws, targets) + penalty

    def copy_parameters(self) -> list[np.ndarray]:
        return [p.copy() for p in self.parameters()]

    def set_parameters(self, values: Sequence[np.ndarray]) -> None:
        for p, v in zip(self.parameters(), values, strict=True):
            p[...] = v


def one_hot(y: np.ndarray, n_classes: int, dtype: np.dtype | str = "float32") -> np.ndarray:
    """Targets of shape (n, n_classes) from class indices of shape (n,).

    The article subtracted integer labels from a (n, k) softmax output, which
    broadcasts into nonsense instead of failing; targets are one-hot rows.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"class indices must be a 1-d integer array; got {y.dtype} of shape {y.shape}"
        )
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"class indices must lie in [0, {n_classes}); found {y.min()} to {y.max()}"
        )
    targets = np.zeros((len(y), n_classes), dtype)
    targets[np.arange(len(y)), y] = 1
    return targets
