"""Momentum and Adam steps against their formulas, worked out element by element."""

import math

import numpy as np
import pytest

from backprop.errors import ConfigError
from backprop.nn.activations import make_activation
from backprop.nn.network import MLP, one_hot
from backprop.nn.optimizers import OPTIMIZERS, make_optimizer, optim_config
from backprop.nn.optimizers.adam import Adam
from backprop.nn.optimizers.momentum import Momentum


def test_momentum_accumulates_velocity():
    p = np.array([1.0, -2.0])
    opt = Momentum([p], optim_config(name="momentum", momentum=0.9))
    g1, g2 = np.array([0.5, 0.1]), np.array([-0.2, 0.3])
    opt.step([p], [g1.copy()], lr=0.1)
    np.testing.assert_allclose(p, [1.0 - 0.1 * 0.5, -2.0 - 0.1 * 0.1])
    opt.step([p], [g2.copy()], lr=0.1)
    v = 0.9 * np.array([0.5, 0.1]) + g2
    np.testing.assert_allclose(p, [1.0 - 0.05 - 0.1 * v[0], -2.0 - 0.01 - 0.1 * v[1]])


def test_adam_matches_the_paper_with_bias_correction():
    p = np.array([0.5, -1.5, 2.0])
    expected = p.copy()
    opt = Adam([p], optim_config(name="adam", beta1=0.9, beta2=0.999, eps=1e-8))
    m = np.zeros(3)
    v = np.zeros(3)
    for t, g in enumerate([np.array([0.1, -0.3, 0.0]), np.array([0.2, 0.1, -1.0])], start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
        expected -= 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)
        opt.step([p], [g.copy()], lr=0.01)
        np.testing.assert_allclose(p, expected, rtol=1e-12, atol=1e-15)


def test_unknown_optimizer_lists_the_known_ones():
    with pytest.raises(
        ConfigError, match=f"name must be one of {', '.join(OPTIMIZERS)}, got 'lbfgs'"
    ):
        optim_config(name="lbfgs")


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_every_optimizer_steps_as_pytorchs_own(torch, optimizer):
    """Eight steps of a schedule on a small network, against the PyTorch optimizer that
    ``reference`` names, from the same weights and the same gradients, in float64."""
    rng = np.random.default_rng(7)
    net = MLP([6, 5, 3], "tanh", dtype="float64", rng=rng)
    config = optim_config(name=optimizer, lr=0.05, schedule="exponential", gamma=0.8)
    ours = make_optimizer(config, net.parameters())
    theirs = [torch.tensor(p.copy(), requires_grad=True) for p in net.parameters()]
    reference = ours.reference(torch, theirs, lr=0.05)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(reference, gamma=0.8)
    for step in range(8):
        X = rng.standard_normal((4, 6))
        T = one_hot(rng.integers(0, 3, 4), 3, "float64")
        ws = net.workspace(4)
        net.forward(X, ws)
        net.backward(ws, T)
        for p, g in zip(theirs, net.gradients(), strict=True):
            p.grad = torch.tensor(g.copy())
        reference.step()
        ours.step(net.parameters(), net.gradients(), 0.05 * 0.8**step)
        scheduler.step()
        for p, q in zip(net.parameters(), theirs, strict=True):
            np.testing.assert_allclose(p, q.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "activation,rule", [("sigmoid", "glorot"), ("tanh", "glorot"), ("relu", "he")]
)
def test_initialisation_is_scaled_for_the_activation_and_biases_are_zero(activation, rule):
    net = MLP([400, 300, 10], activation, rng=np.random.default_rng(0))
    w = net.weights[0]
    expected = math.sqrt(2 / 400) if rule == "he" else math.sqrt(2 / (400 + 300))
    assert make_activation(activation).init_std(400, 300) == pytest.approx(expected)
    assert w.std() == pytest.approx(expected, rel=0.02)
    assert abs(w.mean()) < 0.01 * expected * 10
    assert all(not b.any() for b in net.biases)


def test_batch_gradient_is_the_mean_of_per_sample_gradients():
    rng = np.random.default_rng(1)
    net = MLP([4, 5, 3], "tanh", dtype="float64", rng=rng)
    X = rng.standard_normal((6, 4))
    T = one_hot(rng.integers(0, 3, 6), 3, "float64")

    def grads(x, t):
        ws = net.workspace(len(x))
        net.forward(x, ws)
        net.backward(ws, t)
        return [g.copy() for g in net.gradients()]

    batch = grads(X, T)
    singles = [grads(X[i : i + 1], T[i : i + 1]) for i in range(6)]
    for k, g in enumerate(batch):
        np.testing.assert_allclose(g, np.mean([s[k] for s in singles], axis=0), rtol=1e-12)
