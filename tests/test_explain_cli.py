import subprocess
import sys

import pytest

from backprop.app.cli import main
from backprop.nn.activations import ACTIVATIONS
from backprop.nn.explain import explain
from backprop.nn.losses import HEADS


def test_the_worked_example_starts_near_the_articles_numbers():
    e = explain()
    assert e.targets == (0.32, 0.22)
    assert e.outputs[0] == pytest.approx(0.24, abs=0.005)
    assert e.outputs[1] == pytest.approx(0.14, abs=0.005)
    assert [f.name for f in e.factors] == ["dE/dout_o1", "dout_o1/dnet_o1", "dnet_o1/dw5"]
    out_o1, out_h1 = e.outputs[0], e.hidden[0]
    assert [f.value for f in e.factors] == pytest.approx(
        [out_o1 - 0.32, out_o1 * (1 - out_o1), out_h1], abs=1e-15
    )
    assert e.chain_rule == pytest.approx(e.finite_difference, rel=1e-7)
    assert e.chain_rule == pytest.approx(e.backward, rel=1e-12)
    assert e.updated_weight == pytest.approx(-0.90 - 0.6 * e.chain_rule, abs=1e-15)
    assert e.updated_loss < e.loss


@pytest.mark.parametrize("weight", ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"])
def test_every_weight_agrees_with_backward_and_finite_differences(weight):
    e = explain(weight=weight, inputs=(0.3, -0.7), targets=(0.9, 0.1), learning_rate=0.1)
    assert e.chain_rule == pytest.approx(e.backward, rel=1e-12)
    assert e.chain_rule == pytest.approx(e.finite_difference, rel=1e-6)


def test_explain_command_prints_the_walkthrough(capsys):
    assert main(["explain", "--weight", "w6", "--lr", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "dnet_o1/dw6     = out_h2" in out
    assert "w6 <- w6 - 0.5 * dE/dw6" in out
    assert "finite difference" in out and "backward pass of the network" in out


def test_gradcheck_command_passes_and_lists_every_tensor(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    assert out.count("  ok") == len(ACTIVATIONS) * len(HEADS) * 6  # W and b of 3 layers each
    assert f"all {len(ACTIVATIONS) * len(HEADS) * 6} tensors below 1e-06" in out


@pytest.mark.parametrize(
    "args,message",
    [
        (["explain", "--weight", "w9"], "invalid choice: 'w9'"),
        (["explain", "--lr", "-1"], "argument --lr: must be > 0, got -1"),
        (["explain", "--inputs", "1", "x"], "invalid float value: 'x'"),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_bad_command_lines_get_one_line_and_exit_2(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "backprop.app.cli", *args], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
