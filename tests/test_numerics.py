"""No overflow, invalid-value or divide warnings, whatever the input.

pytest runs with warnings as errors (pyproject.toml), so any RuntimeWarning from
NumPy fails these tests; one test also runs a separate ``python -W error``.
"""

import subprocess
import sys

import numpy as np
import pytest

from backprop.nn.activations import ACTIVATIONS
from backprop.nn.losses import HEADS
from backprop.nn.network import MLP, one_hot


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_give_finite_outputs_losses_and_gradients(activation, head, dtype):
    net = MLP([3, 4, 3], activation, *head, dtype=dtype, rng=np.random.default_rng(0))
    net.weights[-1][...] = 0
    X = np.ones((4, 3))
    # Logits of +-1e4 reach the output layer through its bias.
    for bias in ([1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 1e4]):
        net.biases[-1][...] = bias
        ws = net.workspace(4)
        out = net.forward(X.astype(dtype), ws)
        targets = one_hot(np.array([1, 0, 2, 1]), 3, dtype)
        loss = net.loss(ws, targets)
        net.backward(ws, targets)
        assert np.isfinite(out).all() and np.isfinite(loss)
        assert all(np.isfinite(g).all() for g in net.gradients())
    if head == ("softmax", "cross_entropy"):
        net.biases[-1][...] = [1e4, -1e4, 0.0]
        ws = net.workspace(1)
        net.forward(np.ones((1, 3), dtype), ws)
        # Log-sum-exp: a confident wrong answer costs its full 2e4, not inf.
        assert net.loss(ws, one_hot(np.array([1]), 3, dtype)) == pytest.approx(2e4, rel=1e-3)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_extreme_hidden_pre_activations(activation):
    net = MLP([2, 3, 2], activation, dtype="float32", rng=np.random.default_rng(0))
    X = np.array([[1e4, -1e4], [-1e4, 1e4], [3e38, -3e38]], dtype=np.float32)
    net.weights[0][...] = 1.0
    out = net.predict_proba(X)
    assert np.isfinite(out).all()


def test_a_fresh_interpreter_with_warnings_as_errors():
    code = (
        "import numpy as np\n"
        "from backprop.nn.network import MLP\n"
        "net = MLP([784, 256, 64, 10], rng=np.random.default_rng(0))\n"
        "net.biases[-1][...] = np.linspace(-1e4, 1e4, 10)\n"
        "X = np.random.default_rng(1).normal(0, 1e3, (32, 784)).astype(np.float32)\n"
        "p = net.predict_proba(X)\n"
        "assert np.isfinite(p).all()\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
