"""One SGD step on the article's 2-2-2 network, against numbers worked by hand."""

import math

import numpy as np
import pytest

from backprop.nn.network import MLP
from backprop.nn.optimizers import optim_config
from backprop.nn.optimizers.sgd import SGD


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_one_sgd_step_matches_the_chain_rule_by_hand():
    x1, x2 = 0.05, 0.10
    t1, t2 = 0.32, 0.22
    w1, w2, w3, w4 = 0.15, 0.20, 0.25, 0.30
    w5, w6, w7, w8 = -0.90, -1.00, -1.20, -1.30
    bh1, bh2, bo1, bo2 = 0.35, 0.35, 0.00, -0.30
    lr = 0.6

    # Forward, one scalar at a time.
    h1 = sig(w1 * x1 + w2 * x2 + bh1)
    h2 = sig(w3 * x1 + w4 * x2 + bh2)
    o1 = sig(w5 * h1 + w6 * h2 + bo1)
    o2 = sig(w7 * h1 + w8 * h2 + bo2)
    # Output deltas dE/dnet_o = (out - target) out (1 - out).
    d_o1 = (o1 - t1) * o1 * (1 - o1)
    d_o2 = (o2 - t2) * o2 * (1 - o2)
    # Hidden deltas: the error of both outputs flows back through w5..w8.
    d_h1 = (d_o1 * w5 + d_o2 * w7) * h1 * (1 - h1)
    d_h2 = (d_o1 * w6 + d_o2 * w8) * h2 * (1 - h2)
    expected_W0 = [
        [w1 - lr * d_h1 * x1, w3 - lr * d_h2 * x1],
        [w2 - lr * d_h1 * x2, w4 - lr * d_h2 * x2],
    ]
    expected_W1 = [
        [w5 - lr * d_o1 * h1, w7 - lr * d_o2 * h1],
        [w6 - lr * d_o1 * h2, w8 - lr * d_o2 * h2],
    ]
    expected_b0 = [bh1 - lr * d_h1, bh2 - lr * d_h2]
    expected_b1 = [bo1 - lr * d_o1, bo2 - lr * d_o2]

    net = MLP([2, 2, 2], "sigmoid", "sigmoid", "squared_error", dtype="float64")
    net.weights[0][...] = [[w1, w3], [w2, w4]]
    net.weights[1][...] = [[w5, w7], [w6, w8]]
    net.biases[0][...] = [bh1, bh2]
    net.biases[1][...] = [bo1, bo2]
    ws = net.workspace(1)
    out = net.forward(np.array([[x1, x2]]), ws)
    assert out[0].tolist() == pytest.approx([o1, o2], abs=1e-15)
    assert net.loss(ws, np.array([[t1, t2]])) == pytest.approx(
        0.5 * (t1 - o1) ** 2 + 0.5 * (t2 - o2) ** 2, abs=1e-15
    )
    net.backward(ws, np.array([[t1, t2]]))
    SGD(net.parameters(), optim_config()).step(net.parameters(), net.gradients(), lr)

    np.testing.assert_allclose(net.weights[0], expected_W0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.weights[1], expected_W1, rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.biases[0], expected_b0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(net.biases[1], expected_b1, rtol=0, atol=1e-15)
    # The article's w5 chain: (out_o1 - target_o1) * out_o1 (1 - out_o1) * out_h1.
    assert net.weights[1][0, 0] == pytest.approx(
        w5 - lr * (o1 - t1) * o1 * (1 - o1) * h1, abs=1e-15
    )
    assert w5 - net.weights[1][0, 0] < 0  # o1 is below its target, so w5 grows


def test_softmax_cross_entropy_step_uses_y_hat_minus_y():
    net = MLP([2, 3], activation="sigmoid", dtype="float64")  # no hidden layer: logits = x W + b
    net.weights[0][...] = [[0.1, -0.2, 0.3], [0.0, 0.4, -0.1]]
    x = np.array([[1.0, 2.0]])
    z = x @ net.weights[0]
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    ws = net.workspace(1)
    net.forward(x, ws)
    net.backward(ws, np.array([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(net.grad_biases[0], p[0] - [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(net.grad_weights[0], x.T @ (p - [0, 1, 0]), atol=1e-15)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_fused_sgd_step_equals_backward_then_sgd(activation, weight_decay):
    rng = np.random.default_rng(0)
    a = MLP([6, 5, 4, 3], activation, dtype="float64", rng=rng)
    b = MLP([6, 5, 4, 3], activation, dtype="float64")
    b.set_parameters(a.parameters())
    X = rng.standard_normal((8, 6))
    T = np.eye(3)[rng.integers(0, 3, 8)]
    for _ in range(3):
        ws = a.workspace(8)
        a.forward(X, ws)
        a.backward(ws, T, weight_decay)
        SGD(a.parameters(), optim_config()).step(a.parameters(), a.gradients(), 0.3)
        ws = b.workspace(8)
        b.forward(X, ws)
        b.sgd_step(ws, T, 0.3, weight_decay)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    assert not np.allclose(a.weights[0], MLP([6, 5, 4, 3], rng=np.random.default_rng(0)).weights[0])
