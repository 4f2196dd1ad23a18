"""Same data, config and seed: bit-identical weights, also across processes."""

import hashlib
import subprocess
import sys

SCRIPT = """
import sys
import numpy as np
from backprop.nn.network import MLP
from backprop.nn.optimizers import optim_config
from backprop.nn.training import TrainConfig, train
from backprop.pipeline.model_files import save_model

seed = int(sys.argv[2])
data = np.random.default_rng(123)
X = data.random((600, 64), dtype=np.float32)
y = data.integers(0, 10, 600)
rng = np.random.default_rng(seed)
net = MLP([64, 32, 16, 10], rng=rng)
train(net, X[:500], y[:500], TrainConfig(epochs=3, batch_size=32, patience=2),
      optim_config(name="adam", lr=0.01), rng, X[500:], y[500:])
save_model(sys.argv[1], net, classes=list(range(10)))
"""


def run(tmp_path, name, seed):
    out = tmp_path / name
    subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(seed)], check=True)
    return hashlib.sha256((out / "weights.npz").read_bytes()).hexdigest()


def test_two_processes_write_identical_weight_files(tmp_path):
    first, second = run(tmp_path, "a", 0), run(tmp_path, "b", 0)
    assert first == second
    assert run(tmp_path, "c", 1) != first
    assert (tmp_path / "a" / "model.json").read_bytes() == (
        tmp_path / "b" / "model.json"
    ).read_bytes()
