"""The article's worked example: one gradient, by the chain rule, on a 2-2-2 network.

Inputs x1, x2 feed sigmoid hidden units h1, h2, which feed sigmoid outputs o1,
o2; the loss is the squared error ``E = sum 1/2 (target - out)^2``.  Weights
are named as in the article's figure:

    w1: x1->h1  w2: x2->h1  w3: x1->h2  w4: x2->h2   (W0, shape (2, 2))
    w5: h1->o1  w6: h2->o1  w7: h1->o2  w8: h2->o2   (W1, shape (2, 2))

For an output weight such as w5 the chain rule has three factors,

    dE/dw5 = dE/dout_o1 * dout_o1/dnet_o1 * dnet_o1/dw5
           = (out_o1 - target_o1) * out_o1 (1 - out_o1) * out_h1,

and for a hidden weight such as w1 the error reaching h1 is the sum over
both outputs.  The product is checked against a finite difference and
against the network's own backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backprop.errors import ConfigError
from backprop.nn.network import MLP

# Inputs, weights and biases chosen so the outputs start near the article's
# 0.24 and 0.14 while the targets are 0.32 and 0.22.
DEFAULT_INPUTS = (0.05, 0.10)
DEFAULT_TARGETS = (0.32, 0.22)
DEFAULT_LEARNING_RATE = 0.6
DEFAULT_WEIGHTS = {
    "w1": 0.15, "w2": 0.20, "w3": 0.25, "w4": 0.30,
    "w5": -0.90, "w6": -1.00, "w7": -1.20, "w8": -1.30,
}  # fmt: skip
DEFAULT_HIDDEN_BIASES = (0.35, 0.35)
DEFAULT_OUTPUT_BIASES = (0.00, -0.30)

# name -> (layer, row = from-unit, column = to-unit) in W[layer] of shape (fan_in, fan_out)
WEIGHT_INDEX = {
    "w1": (0, 0, 0), "w2": (0, 1, 0), "w3": (0, 0, 1), "w4": (0, 1, 1),
    "w5": (1, 0, 0), "w6": (1, 1, 0), "w7": (1, 0, 1), "w8": (1, 1, 1),
}  # fmt: skip


@dataclass(frozen=True)
class Factor:
    name: str
    formula: str
    value: float


@dataclass(frozen=True)
class Explanation:
    weight: str
    inputs: tuple[float, float]
    targets: tuple[float, float]
    learning_rate: float
    weights: dict[str, float]
    hidden: tuple[float, float]  # out_h1, out_h2
    outputs: tuple[float, float]  # out_o1, out_o2
    loss: float
    factors: list[Factor]
    chain_rule: float  # the product of the factors
    finite_difference: float
    backward: float  # from MLP.backward
    updated_weight: float
    updated_loss: float


def build_network(weights: dict[str, float]) -> MLP:
    network = MLP([2, 2, 2], "sigmoid", "sigmoid", "squared_error", dtype="float64")
    for name, (layer, row, col) in WEIGHT_INDEX.items():
        network.weights[layer][row, col] = weights[name]
    network.biases[0][...] = DEFAULT_HIDDEN_BIASES
    network.biases[1][...] = DEFAULT_OUTPUT_BIASES
    return network


def explain(
    weight: str = "w5",
    inputs: tuple[float, float] = DEFAULT_INPUTS,
    targets: tuple[float, float] = DEFAULT_TARGETS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    weights: dict[str, float] | None = None,
) -> Explanation:
    if weight not in WEIGHT_INDEX:
        raise ConfigError(f"unknown weight {weight!r}; choose one of: {', '.join(WEIGHT_INDEX)}")
    weights = dict(DEFAULT_WEIGHTS, **(weights or {}))
    network = build_network(weights)
    X = np.array([inputs], dtype=float)
    T = np.array([targets], dtype=float)

    ws = network.workspace(1)
    network.forward(X, ws)
    hidden = ws.zs[0][0].copy()
    out = ws.output[0].copy()
    loss = network.loss(ws, T)
    network.backward(ws, T)
    layer, row, col = WEIGHT_INDEX[weight]
    backward = float(network.grad_weights[layer][row, col])

    if layer == 1:  # hidden -> output: three factors
        o, h = col, row
        factors = [
            Factor(f"dE/dout_o{o + 1}", f"out_o{o + 1} - target_o{o + 1}", out[o] - T[0, o]),
            Factor(
                f"dout_o{o + 1}/dnet_o{o + 1}",
                f"out_o{o + 1} (1 - out_o{o + 1})",
                out[o] * (1 - out[o]),
            ),
            Factor(f"dnet_o{o + 1}/d{weight}", f"out_h{h + 1}", hidden[h]),
        ]
    else:  # input -> hidden: the error reaching h sums over both outputs
        h, i = col, row
        delta_out = (out - T[0]) * out * (1 - out)
        w_out = network.weights[1][h]  # weights from h to o1, o2
        names = [n for n, (lay, r, _) in WEIGHT_INDEX.items() if lay == 1 and r == h]
        factors = [
            Factor(
                f"dE/dout_h{h + 1}",
                " + ".join(
                    f"(out_o{k + 1} - target_o{k + 1}) out_o{k + 1} (1 - out_o{k + 1}) {names[k]}"
                    for k in range(2)
                ),
                float(delta_out @ w_out),
            ),
            Factor(
                f"dout_h{h + 1}/dnet_h{h + 1}",
                f"out_h{h + 1} (1 - out_h{h + 1})",
                hidden[h] * (1 - hidden[h]),
            ),
            Factor(f"dnet_h{h + 1}/d{weight}", f"x{i + 1}", X[0, i]),
        ]
    chain_rule = float(np.prod([f.value for f in factors]))

    def loss_with(value: float) -> float:
        return build_network(dict(weights, **{weight: value})).objective(X, T)

    eps = 1e-6
    w = weights[weight]
    finite_difference = (loss_with(w + eps) - loss_with(w - eps)) / (2 * eps)
    updated = w - learning_rate * chain_rule
    return Explanation(
        weight=weight,
        inputs=tuple(inputs),
        targets=tuple(targets),
        learning_rate=learning_rate,
        weights=weights,
        hidden=(float(hidden[0]), float(hidden[1])),
        outputs=(float(out[0]), float(out[1])),
        loss=loss,
        factors=[Factor(f.name, f.formula, float(f.value)) for f in factors],
        chain_rule=chain_rule,
        finite_difference=float(finite_difference),
        backward=backward,
        updated_weight=float(updated),
        updated_loss=loss_with(updated),
    )


def render(e: Explanation) -> str:
    x1, x2 = e.inputs
    t1, t2 = e.targets
    weights = "  ".join(f"{k}={v:+.2f}" for k, v in e.weights.items())
    lines = [
        "A 2-2-2 sigmoid network, squared error E = sum 1/2 (target - out)^2",
        f"  inputs   x1={x1:g}  x2={x2:g}      targets  o1={t1:g}  o2={t2:g}",
        f"  weights  {weights}",
        f"  biases   hidden={DEFAULT_HIDDEN_BIASES}  output={DEFAULT_OUTPUT_BIASES}",
        "",
        "Forward pass",
        f"  out_h1 = sigmoid(w1 x1 + w2 x2 + b_h1) = {e.hidden[0]:.6f}",
        f"  out_h2 = sigmoid(w3 x1 + w4 x2 + b_h2) = {e.hidden[1]:.6f}",
        f"  out_o1 = sigmoid(w5 out_h1 + w6 out_h2 + b_o1) = {e.outputs[0]:.6f}",
        f"  out_o2 = sigmoid(w7 out_h1 + w8 out_h2 + b_o2) = {e.outputs[1]:.6f}",
        f"  E = 1/2 ({t1:g} - {e.outputs[0]:.6f})^2 + 1/2 ({t2:g} - {e.outputs[1]:.6f})^2"
        f" = {e.loss:.8f}",
        "",
        f"Chain rule for dE/d{e.weight}",
    ]
    width = max(len(f.name) for f in e.factors)
    for f in e.factors:
        lines.append(f"  {f.name:<{width}} = {f.formula} = {f.value:+.8f}")
    lines += [
        f"  dE/d{e.weight} = product of the factors = {e.chain_rule:+.10f}",
        f"  finite difference (E(w+h) - E(w-h)) / 2h  = {e.finite_difference:+.10f}",
        f"  backward pass of the network              = {e.backward:+.10f}",
        "",
        "Gradient-descent update",
        f"  {e.weight} <- {e.weight} - {e.learning_rate:g} * dE/d{e.weight}"
        f" = {e.weights[e.weight]:+.6f} - {e.learning_rate:g} * ({e.chain_rule:+.8f})"
        f" = {e.updated_weight:+.6f}",
        f"  E after the update = {e.updated_loss:.8f} (was {e.loss:.8f})",
    ]
    return "\n".join(lines)
