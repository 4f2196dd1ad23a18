import json

import numpy as np
import pytest

from backprop.errors import ConfigError
from backprop.nn.metrics import classification_report, confusion_matrix, precision_recall_f1
from backprop.pipeline.settings import Settings
from backprop.pipeline.stages.digits import write_digits
from backprop.pipeline.stages.evaluate import evaluate
from backprop.pipeline.stages.preprocess import preprocess
from backprop.pipeline.stages.train import train


def settings(**sections) -> Settings:
    return Settings.from_params(sections, "test")


def train_model(prepared, model, reports, config, callback=None):
    class Seen:  # the RunLog a stage talks to: here, only its per-epoch callback
        run_id = None

        def __call__(self, metrics):
            if callback is not None:
                callback(metrics)

        def __getattr__(self, name):
            return lambda *args: None

    return train(config, prepared=prepared, model=model, reports=reports, log=Seen())


def evaluate_model(model, prepared, reports):
    return evaluate(None, model=model, prepared=prepared, reports=reports)


def test_confusion_and_scores_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    precision, recall, f1 = precision_recall_f1(cm)
    np.testing.assert_allclose(precision, [1, 0.5, 0.5])
    np.testing.assert_allclose(recall, [2 / 3, 0.5, 1])
    np.testing.assert_allclose(f1, [0.8, 0.5, 2 / 3])
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["per_class"]["c"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }


def test_a_class_never_predicted_scores_zero_without_warnings():
    _, _, f1 = precision_recall_f1(confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2))
    assert f1[1] == 0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    write_digits(root / "digits.csv")
    preprocess(settings(), csv=root / "digits.csv", prepared=root / "prepared")
    return root


def small_config(**optim):
    return settings(
        model={"hidden_sizes": [32]},
        optim={"lr": 0.5} | optim,
        train={"epochs": 8, "batch_size": 32, "patience": 3},
    )


def test_train_then_evaluate_writes_model_reports_and_figures(prepared, tmp_path):
    seen = []
    trained = train_model(
        prepared / "prepared", tmp_path / "model", tmp_path / "reports", small_config(), seen.append
    )
    assert [m.epoch for m in seen] == list(range(1, len(trained.history.epochs) + 1))
    history = (tmp_path / "reports" / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_loss,val_accuracy"
    assert len(history) == 1 + len(seen)
    assert (tmp_path / "reports" / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["layer_sizes"] == [64, 32, 10] and meta["classes"] == list(range(10))
    assert meta["extra"]["scaler"]["mode"] == "per_feature"

    evaluated = evaluate_model(tmp_path / "model", prepared / "prepared", tmp_path / "reports")
    metrics = evaluated.metrics
    assert metrics == json.loads((tmp_path / "reports" / "metrics.json").read_text())
    # the headline, named as in MLflow; per class elsewhere
    assert set(metrics) == {"test_accuracy", "test_loss", "test_macro_f1", "kept_val_accuracy",
                            "kept_val_loss", "epochs", "kept_epoch"}  # fmt: skip
    assert metrics["test_accuracy"] > 0.85 and 0 < metrics["test_loss"] < 1
    # the validation scores and epochs of the weights kept, as training recorded them
    kept = trained.history.kept()
    assert metrics["kept_val_accuracy"] == kept.val_accuracy
    assert metrics["kept_val_loss"] == kept.val_loss
    assert metrics["epochs"] == len(trained.history.epochs)
    assert metrics["kept_epoch"] == (trained.history.best_epoch or len(trained.history.epochs))
    per_class = (tmp_path / "reports" / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,precision,recall,f1,support" and len(per_class) == 11
    assert [row["class"] for row in evaluated.per_class] == [str(c) for c in range(10)]
    assert sum(row["support"] for row in evaluated.per_class) == 269
    confusion = (tmp_path / "reports" / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 269
    figures = sorted(p.name for p in (tmp_path / "reports" / "figures").iterdir())
    assert figures == ["confusion.png", "first_layer.png", "misclassified.png"]


def test_same_config_same_bytes(prepared, tmp_path):
    for name in ("a", "b"):
        train_model(
            prepared / "prepared",
            tmp_path / name / "model",
            tmp_path / name / "reports",
            small_config(),
        )
        evaluate_model(
            tmp_path / name / "model", prepared / "prepared", tmp_path / name / "reports"
        )
    files = [
        "model/weights.npz",
        "model/model.json",
        "reports/history.csv",
        "reports/training.png",
        "reports/metrics.json",
        "reports/per_class.csv",
        "reports/confusion.csv",
        "reports/figures/confusion.png",
    ]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_features_that_are_not_a_square_image_get_no_image_figures(tmp_path):
    rows = [f"{i % 2},{i},{i % 7},{(i * 3) % 5}" for i in range(60)]
    (tmp_path / "t.csv").write_text("label,a,b,c\n" + "\n".join(rows) + "\n")
    preprocess(settings(), csv=tmp_path / "t.csv", prepared=tmp_path / "prepared")
    train_model(tmp_path / "prepared", tmp_path / "model", tmp_path / "reports", small_config())
    evaluate_model(tmp_path / "model", tmp_path / "prepared", tmp_path / "reports")
    assert [p.name for p in (tmp_path / "reports" / "figures").iterdir()] == ["confusion.png"]


def test_patience_without_a_validation_split_is_refused(tmp_path):
    rows = [f"{i % 2},{i}" for i in range(40)]
    (tmp_path / "t.csv").write_text("label,a\n" + "\n".join(rows) + "\n")
    no_val = settings(preprocess={"val_fraction": 0.0})
    preprocess(no_val, csv=tmp_path / "t.csv", prepared=tmp_path / "prepared")
    with pytest.raises(ConfigError, match="train.patience needs a validation split"):
        train_model(tmp_path / "prepared", tmp_path / "model", tmp_path / "reports", small_config())


def test_train_shows_a_progress_bar_on_a_terminal_only(prepared, tmp_path):
    import os
    import pty
    import subprocess
    import sys

    import yaml

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"epochs": 3, "patience": None}}))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    args = [sys.executable, "-m", "backprop", "train", str(prepared / "prepared"),
            str(tmp_path / "m"), str(tmp_path / "r"), "--params", str(params)]  # fmt: skip

    piped = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert "epoch" not in piped.stderr and "it/s" not in piped.stderr

    leader, follower = pty.openpty()
    # A terminal of 100 columns: a fresh pty has none, and tqdm draws no bar in zero width.
    import fcntl
    import struct
    import termios

    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    tty = subprocess.run(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert tty.returncode == 0
    assert "3/3" in shown and "val_acc=" in shown and "loss=" in shown


def test_input_example_comes_from_the_csv_or_from_unscaled_rows(prepared):
    import dataclasses

    import pandas as pd

    from backprop.pipeline.prepared import load_prepared
    from backprop.tracking.pyfunc import input_example as _input_example

    p = load_prepared(prepared / "prepared")
    assert p.source["rows"] == 1797 and len(p.source["sha256"]) == 64
    from_csv = _input_example(p)
    assert list(from_csv.columns) == p.feature_names and from_csv.dtypes.iloc[0].kind == "i"
    raw = pd.read_csv(p.source["path"], nrows=5)[p.feature_names]
    assert (from_csv.to_numpy() == raw.to_numpy()).all()  # the CSV's first rows
    gone = dataclasses.replace(p, source={**p.source, "path": "/nonexistent.csv"})
    unscaled = _input_example(gone)
    assert list(unscaled.columns) == p.feature_names and unscaled.shape == (5, 64)
    assert unscaled.to_numpy().min() >= 0 and unscaled.to_numpy().max() <= 16 + 1e-4


@pytest.mark.parametrize("optim, copies", [("sgd", 3), ("momentum", 4), ("adam", 5)])
def test_a_network_larger_than_memory_is_refused_before_allocating(
    prepared, tmp_path, monkeypatch, optim, copies
):
    """The message says what training needs: one array of the parameters' size each for the
    weights, the gradients, the best epoch (patience is set) and the optimizer's state."""
    from backprop.pipeline.stages import train as stage

    n_params = (64 + 1) * 32 + (32 + 1) * 10  # digits: 64 pixels, 10 classes
    monkeypatch.setattr(stage, "available_memory", lambda: copies * n_params * 4 - 1)
    config = settings(
        model={"hidden_sizes": [32]}, optim={"name": optim, "lr": 0.01},
        train={"epochs": 1, "patience": 3},
    )  # fmt: skip
    model = tmp_path / "model"
    with pytest.raises(ConfigError, match=rf"model.hidden_sizes \[32\] needs [\d.]+ MiB to train "
                                          rf"\({copies} copies of its"):  # fmt: skip
        train_model(prepared / "prepared", model, tmp_path / "reports", config)
    assert not model.exists()
    monkeypatch.setattr(stage, "available_memory", lambda: copies * n_params * 4)
    train_model(prepared / "prepared", model, tmp_path / "reports", config)
    assert (model / "weights.npz").exists()


def test_class_names_the_font_lacks_draw_without_a_warning_per_character():
    """pytest turns warnings into errors here: matplotlib warns once per missing glyph."""
    from backprop.pipeline import plots

    png = plots.confusion(np.eye(3, dtype=int) * 5, ["猫", "犬", "鳥"])
    assert png.startswith(b"\x89PNG")
