"""One error hierarchy: a user's mistake is one line and exit 2; a bug keeps its traceback.

Front doors catch ``backprop.errors.UserError`` and nothing wider, so a bug that
happens to raise ``ValueError`` (a NumPy shape mismatch) is never mistaken for a
bad setting.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from backprop.app.cli import main
from backprop.errors import ConfigError, DataError, ModelFileError, TrackingError, UserError
from backprop.nn.training import TrainingDiverged
from backprop.pipeline.stages import digits

# The `backprop` command with a NumPy shape bug injected into the network's forward pass.
BUGGY = """
import sys
import numpy as np
from backprop.nn import network

def forward(self, X, ws=None):
    return np.ones((2, 3)) @ np.ones((4, 5))  # shapes that do not fit: a bug, not a mistake

network.MLP.forward = forward
from backprop.app.cli import main
sys.exit(main())
"""


def test_every_user_error_is_one_class_and_none_is_a_value_error():
    for kind in (ConfigError, DataError, ModelFileError, TrackingError, TrainingDiverged):
        assert issubclass(kind, UserError) and not issubclass(kind, ValueError)


def test_a_bug_in_a_stage_raises_through_the_front_door(monkeypatch, tmp_path):
    def broken(settings, **paths):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(digits, "digits", broken)
    with pytest.raises(ValueError, match="could not be broadcast"):
        main(["digits", str(tmp_path / "d.csv")])


def test_a_user_error_in_a_stage_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    def refused(settings, **paths):
        raise DataError("d.csv: the file is empty; expected a header row and data rows")

    monkeypatch.setattr(digits, "digits", refused)
    assert main(["digits", str(tmp_path / "d.csv")]) == 2
    assert capsys.readouterr().err == (
        "backprop digits: error: d.csv: the file is empty; expected a header row and data rows\n"
    )


def test_a_bug_exits_1_with_its_traceback(tmp_path):
    prepare = [sys.executable, "-m", "backprop"]
    subprocess.run([*prepare, "digits", "d.csv"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([*prepare, "preprocess", "d.csv", "p"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 1\n  patience: null\n")
    result = subprocess.run(
        [sys.executable, "-c", BUGGY, "train", "p", "m", "r"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 't.db'}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "matmul" in result.stderr
    assert not result.stderr.startswith("backprop train: error:")


def test_a_tracking_uri_mlflow_cannot_use_is_one_line_and_leaves_nothing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("backprop runs: error: MLFLOW_TRACKING_URI=bogus://x is not a tracking")
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml"]


@pytest.mark.parametrize(
    "params, how",
    [
        ("params.yaml", "resume with `dvc exp run -S train.resume=true`"),
        ("other.yaml", "resume with `resume: true` under `train:` in other.yaml, then the same"),
    ],
)
def test_an_interrupted_train_stage_says_how_to_resume_its_own_way(
    tmp_path, monkeypatch, capsys, params, how
):
    """Resuming goes through the params file the command read: DVC's or the user's own."""
    from backprop.pipeline.stages import train

    def interrupted(settings, **ports):
        raise train.TrainingInterrupted("SIGINT", 3, tmp_path / "ckpt.npz")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 't.db'}")
    (tmp_path / params).write_text("train:\n  epochs: 1\n")
    monkeypatch.setattr(train, "train", interrupted)
    assert main(["train", "--params", params, "p", "m", "r"]) == 130
    err = capsys.readouterr().err
    assert "epoch 3 is saved in" in err and how in err


def test_the_hydra_app_outside_a_project_is_a_user_error(tmp_path, monkeypatch, capsys):
    from backprop.app.experiment import main as experiment_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["backprop-experiment"])
    with pytest.raises(SystemExit) as exit:
        experiment_main()
    assert exit.value.code == 2
    assert "no conf/config.yaml in" in capsys.readouterr().err
