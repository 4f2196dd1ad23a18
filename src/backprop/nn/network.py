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

import dataclasses
import typing
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge, MinLen

from backprop.errors import ConfigError
from backprop.nn.activations import ACTIVATIONS, Activation, make_activation
from backprop.nn.gemm import gemm
from backprop.nn.losses import HEADS, get_head
from backprop.schema import build, choice, keys_of, settings

DTYPES = {"float32": np.float32, "float64": np.float64}


@settings
class ModelConfig:
    """The network: hidden layers, activation, output/loss pair, precision.

    The chosen activation's own options (the fields of its class, a slope say) are
    settings of this section too: :func:`model_config` adds them.
    """

    name: str = "seed"  # the conf/model option these settings came from: a label
    hidden_sizes: Annotated[list[Annotated[int, Ge(1)]], MinLen(1)] = dataclasses.field(
        default_factory=lambda: [256, 64]
    )
    activation: Annotated[str, choice(ACTIVATIONS)] = "sigmoid"
    output: str = "softmax"
    loss: str = "cross_entropy"
    dtype: Annotated[str, choice(DTYPES)] = "float32"

    def __post_init__(self) -> None:
        if (self.output, self.loss) not in HEADS:
            pairs = ", ".join(f"{o} + {loss}" for o, loss in HEADS)
            raise ConfigError(
                f"must be paired with its loss as one of {pairs}, got "
                f"'{self.output} + {self.loss}'",
                "output",
            )

    def make_activation(self) -> Activation:
        options = {k: getattr(self, k) for k in keys_of(ACTIVATIONS[self.activation])}
        return make_activation(self.activation, **options)


def model_config(values: dict[str, Any] | None) -> ModelConfig:
    """The model section: :class:`ModelConfig` plus the options of its activation."""
    values = dict(values or {})
    name = values.get("activation", "sigmoid")
    if not isinstance(name, str) or name not in ACTIVATIONS:
        return build(ModelConfig, values)  # refuses the name, listing the known ones
    return build(_with_options(ACTIVATIONS[name]), values)


@cache
def _with_options(activation: type[Activation]) -> type[ModelConfig]:
    """ModelConfig with the fields of ``activation`` (its options) added."""
    own = dataclasses.fields(activation)
    if not own:
        return ModelConfig
    hints = typing.get_type_hints(activation, include_extras=True)
    namespace: dict[str, Any] = {
        "__annotations__": {f.name: hints[f.name] for f in own},
        "__module__": __name__,
        **{f.name: f.default for f in own},
    }
    return settings(type(f"{activation.__name__}ModelConfig", (ModelConfig,), namespace))


class Workspace:
    """Buffers for one batch size: pre-activations, hidden outputs, the output, the deltas.

    ``zs[i]`` holds layer i's pre-activation of shape (n, fan_out).  An in-place
    activation overwrites it with the layer's output, so ``hidden[i]`` is the same
    array; one whose derivative needs ``z`` gets an array of its own.
    ``scratch[i]`` is spare room of the same shape for the backward pass.
    """

    def __init__(self, layer_sizes: Sequence[int], n: int, dtype: np.dtype, in_place: bool = True):
        self.n = n
        self.zs = [np.empty((n, size), dtype) for size in layer_sizes[1:]]
        self.hidden = [z if in_place else np.empty_like(z) for z in self.zs[:-1]]
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
    activation : hidden activation: a name from ``ACTIVATIONS`` (with its default
        options) or an :class:`Activation`.
    output, loss : the output activation and loss, a pair of ``losses.HEADS``.
    dtype : ``"float32"`` (fast, the default) or ``"float64"``.
    rng : a Generator to draw initial weights from; without one the weights are
        zeros and must be set (for instance by ``files.load_model``).
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str | Activation = "sigmoid",
        output: str = "softmax",
        loss: str = "cross_entropy",
        dtype: str = "float32",
        rng: np.random.Generator | None = None,
    ):
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ConfigError(
                f"layer_sizes must list at least an input and an output size, all >= 1; got {sizes}"
            )
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
        self.layer_sizes = sizes
        act = make_activation(activation) if isinstance(activation, str) else activation
        self.activation: Activation = act
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

    @classmethod
    def from_config(
        cls, config: ModelConfig, n_inputs: int, n_outputs: int, rng: np.random.Generator | None
    ) -> MLP:
        sizes = [n_inputs, *config.hidden_sizes, n_outputs]
        act = config.make_activation()
        return cls(sizes, act, config.output, config.loss, config.dtype, rng=rng)

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def initialise(self, rng: np.random.Generator) -> None:
        """Normal weights scaled for the activation (Glorot or He), zero biases."""
        for i, w in enumerate(self.weights):
            fan_in, fan_out = w.shape
            # The output layer feeds softmax/sigmoid, which Glorot suits.
            if i < self.n_layers - 1:
                scale = self.activation.init_std(fan_in, fan_out)
            else:
                scale = float(np.sqrt(2.0 / (fan_in + fan_out)))
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
            ws = self._workspaces[n] = self._workspace(n)
        return ws

    def _workspace(self, n: int) -> Workspace:
        return Workspace(self.layer_sizes, n, self.dtype, self.activation.in_place)

    # -- forward / backward -------------------------------------------------

    def forward(self, X: np.ndarray, ws: Workspace | None = None) -> np.ndarray:
        """Output of shape (n, n_outputs) for C-contiguous X (n, n_features) of the network's dtype.

        With a workspace the result lives in its buffers (overwritten by the
        next call with the same workspace) and ``backward`` may follow.
        """
        if ws is None:
            ws = self._workspace(len(X))
        ws.inputs = a = X
        act = self.activation
        last = self.n_layers - 1
        for i, (w, b, z) in enumerate(zip(self.weights, self.biases, ws.zs)):
            np.copyto(z, b)  # broadcast the bias over the rows, then add the product
            gemm(z, a, w, 1.0, 1.0)  # z = a @ w + b: (n, fan_in) @ (fan_in, fan_out)
            a = act.forward(z, ws.hidden[i]) if i < last else self.head.forward(z, ws.output)
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
            a_prev = ws.inputs if i == 0 else ws.hidden[i - 1]  # (n, fan_in)
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
            a_prev = ws.inputs if i == 0 else ws.hidden[i - 1]
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
        return self.activation.derivative(below, ws.hidden[i - 1], ws.zs[i - 1], ws.scratch[i - 1])

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
        ws = self._workspace(len(X))
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
