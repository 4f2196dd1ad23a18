import numpy as np
import pytest

from backprop.nn.activations import ACTIVATIONS, make_activation
from backprop.nn.activations.sigmoid import Sigmoid
from backprop.nn.activations.tanh import Tanh
from backprop.nn.gradcheck import TOLERANCE, check_all, check_network
from backprop.nn.losses import HEADS
from backprop.nn.network import MLP, one_hot

RESULTS = check_all(seed=0)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("head", sorted(HEADS))
def test_backprop_matches_central_differences(activation, head):
    output, loss = head
    checked = [r for r in RESULTS if (r.activation, r.output, r.loss) == (activation, output, loss)]
    assert [r.tensor for r in checked] == ["W0", "b0", "W1", "b1", "W2", "b2"]
    for r in checked:
        assert r.max_relative_error < TOLERANCE, r


def test_gradient_check_catches_a_wrong_derivative(monkeypatch):
    # The check must be able to fail: a sigmoid slope of a instead of a (1 - a).
    def wrong(self, delta, a, z, scratch):
        delta *= a
        return delta

    monkeypatch.setattr(Sigmoid, "derivative", wrong)
    rng = np.random.default_rng(3)
    net = MLP([4, 3, 2], "sigmoid", dtype="float64", rng=rng)
    X = rng.standard_normal((5, 4))
    errors = dict(check_network(net, X, one_hot(np.array([0, 1, 1, 0, 1]), 2, "float64")))
    assert errors["W1"] < TOLERANCE  # the output layer does not use the hidden slope
    assert errors["W0"] > 1e-2


def test_weight_decay_gradient_is_checked_too():
    rng = np.random.default_rng(4)
    net = MLP([3, 4, 2], "tanh", dtype="float64", rng=rng)
    X = rng.standard_normal((6, 3))
    T = one_hot(rng.integers(0, 2, 6), 2, "float64")
    ws = net.workspace(6)
    net.forward(X, ws)
    net.backward(ws, T, weight_decay=0.0)
    plain = net.grad_weights[0].copy()
    net.forward(X, ws)
    net.backward(ws, T, weight_decay=0.5)
    np.testing.assert_allclose(net.grad_weights[0] - plain, 0.5 * net.weights[0], rtol=1e-12)
    assert all(e < TOLERANCE for _, e in check_network(net, X, T, weight_decay=0.5))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("head", sorted(HEADS))
def test_outputs_and_gradients_match_pytorch_autograd(torch, activation, head):
    """Every activation against PyTorch's own function of the same name and options,
    in the seed network's shape, with both output/loss pairs."""
    output, loss = head
    rng = np.random.default_rng(5)
    act = make_activation(activation)
    net = MLP([20, 16, 8, 4], act, output, loss, dtype="float64", rng=rng)
    for b in net.biases:  # away from relu's kink by construction
        b[...] = rng.uniform(-0.5, 0.5, b.shape)
    X = rng.standard_normal((9, 20))
    y = rng.integers(0, 4, 9)
    targets = one_hot(y, 4, "float64") if loss == "cross_entropy" else rng.uniform(0, 1, (9, 4))
    ws = net.workspace(9)
    ours = net.forward(X, ws).copy()
    net.backward(ws, targets)

    params = [torch.tensor(p, requires_grad=True) for p in net.parameters()]
    a = torch.tensor(X)
    for i in range(0, len(params), 2):
        a = a @ params[i] + params[i + 1]
        if i < len(params) - 2:
            a = act.reference(torch, a)
    if loss == "cross_entropy":
        theirs = torch.softmax(a, dim=1)
        torch.nn.functional.cross_entropy(a, torch.tensor(y)).backward()
    else:
        theirs = torch.sigmoid(a)
        (0.5 * ((theirs - torch.tensor(targets)) ** 2).sum(dim=1).mean()).backward()
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-15)
    for g, p in zip(net.gradients(), params, strict=True):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-9, atol=1e-14)


def test_gradcheck_command_exits_1_when_a_derivative_is_wrong(monkeypatch, capsys):
    from backprop.app.cli import main

    def wrong(self, delta, a, z, scratch):
        delta *= 1 - a * a * a
        return delta

    monkeypatch.setattr(Tanh, "derivative", wrong)
    assert main(["gradcheck"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out
    assert "tensors above 1e-06" in captured.err
