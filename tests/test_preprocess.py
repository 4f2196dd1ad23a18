import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from backprop.errors import ConfigError
from backprop.pipeline.prepared import load_prepared
from backprop.pipeline.settings import Settings
from backprop.pipeline.stages.digits import write_digits
from backprop.pipeline.stages.preprocess import preprocess as preprocess_stage
from backprop.tables.config import PreprocessConfig


def preprocess(csv, out, config: PreprocessConfig):
    settings = Settings.from_params({"preprocess": dataclasses.asdict(config)}, "test")
    return preprocess_stage(settings, csv=csv, prepared=out)


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("raw") / "digits.csv")


def test_preprocess_writes_scaled_float32_splits_and_the_class_list(digits_csv, tmp_path):
    summary = preprocess(digits_csv, tmp_path / "prepared", PreprocessConfig())
    assert summary.rows == {"train": 1259, "val": 269, "test": 269}
    p = load_prepared(tmp_path / "prepared")
    assert p.classes == list(range(10)) and p.label_column == "label"
    assert p.feature_names == [f"pixel{i}" for i in range(64)]
    for name in ("train", "val", "test"):
        assert p.X[name].dtype == np.float32 and p.X[name].shape[1] == 64
        assert p.y[name].dtype == np.int64
        assert p.X[name].min() >= 0 and p.X[name].max() <= 1
    # Scaling was fitted on the training rows alone: they span [0, 1] exactly per feature.
    train = p.X["train"]
    varying = p.scaler.data_max > p.scaler.data_min
    assert np.allclose(train[:, varying].min(axis=0), 0) and np.allclose(
        train[:, varying].max(axis=0), 1
    )
    assert not train[:, ~varying].any()
    rows = np.concatenate([p.rows[n] for n in ("train", "val", "test")])
    assert sorted(rows.tolist()) == list(range(1, 1798))


def test_same_settings_same_bytes_other_seed_other_split(digits_csv, tmp_path):
    config = PreprocessConfig(seed=3)
    preprocess(digits_csv, tmp_path / "a", config)
    preprocess(digits_csv, tmp_path / "b", config)
    preprocess(digits_csv, tmp_path / "c", PreprocessConfig(seed=4))
    for name in ("train.npz", "val.npz", "test.npz", "scaler.json", "classes.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "test.npz").read_bytes() != (tmp_path / "c" / "test.npz").read_bytes()


def test_string_labels_map_back_through_the_class_list(tmp_path):
    rows = [f"{['setosa', 'versicolor', 'virginica'][i % 3]},{i},{i % 5}" for i in range(60)]
    (tmp_path / "iris.csv").write_text("species,a,b\n" + "\n".join(rows) + "\n")
    preprocess(tmp_path / "iris.csv", tmp_path / "out", PreprocessConfig(scaling="global"))
    p = load_prepared(tmp_path / "out")
    assert p.classes == ["setosa", "versicolor", "virginica"]
    assert json.loads((tmp_path / "out" / "scaler.json").read_text())["mode"] == "global"
    for name in ("train", "val", "test"):
        originals = [rows[r - 1].split(",")[0] for r in p.rows[name]]
        assert [p.classes[i] for i in p.y[name]] == originals


def run(cwd, *args):
    return subprocess.run(
        [sys.executable, "-m", "backprop", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_reads_params_yaml_or_the_named_file_or_defaults(digits_csv, tmp_path):
    result = run(tmp_path, "preprocess", str(digits_csv), "defaults")
    assert result.returncode == 0, result.stderr
    assert "1259 train / 269 validation / 269 test rows, 64 features, 10 classes" in result.stdout
    (tmp_path / "params.yaml").write_text(
        "preprocess:\n  test_fraction: 0.5\n  val_fraction: 0.1\n"
    )
    assert run(tmp_path, "preprocess", str(digits_csv), "from_yaml").returncode == 0
    assert len(load_prepared(tmp_path / "from_yaml").y["test"]) == pytest.approx(1797 * 0.5, abs=5)
    (tmp_path / "other.yaml").write_text("preprocess:\n  scaling: global\n  test_fraction: 0.2\n")
    assert (
        run(tmp_path, "preprocess", str(digits_csv), "named", "--params", "other.yaml").returncode
        == 0
    )
    assert load_prepared(tmp_path / "named").scaler.mode == "global"


@pytest.mark.parametrize(
    "yaml_text,message",
    [
        (
            "preprocess:\n  scalng: global\n",
            "p.yaml: unknown key preprocess.scalng; the keys of preprocess are",
        ),
        (
            "preprocess:\n  test_fraction: 1.5\n",
            "p.yaml: preprocess.test_fraction must be a number in (0, 1), got 1.5",
        ),
        (
            "preprocess:\n  val_fraction: 0.6\n  test_fraction: 0.5\n",
            "preprocess.val_fraction must be small enough",
        ),
        (
            "preprocess:\n  scaling: log\n",
            "preprocess.scaling must be one of per_feature, global, got 'log'",
        ),
        (
            "data:\n  drop_missing: sometimes\n",
            "data.drop_missing must be true or false, got 'sometimes'",
        ),
        ("preprocess: [1, 2\n", "p.yaml: not valid YAML at line"),
        ("preprocess: fast\n", "p.yaml: preprocess must be a mapping of its settings"),
        ("preprocess:\n\tseed: 3\n", "p.yaml: not valid YAML at line 2, column 1: a tab, which"),
        ("optim: [1, 2]\n", "p.yaml: optim must be a mapping of its settings"),
    ],
)
def test_bad_params_name_the_file_and_key(digits_csv, tmp_path, yaml_text, message):
    (tmp_path / "p.yaml").write_text(yaml_text)
    result = run(tmp_path, "preprocess", str(digits_csv), "out", "--params", "p.yaml")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_params_file_is_an_error(digits_csv, tmp_path):
    result = run(tmp_path, "preprocess", str(digits_csv), "out", "--params", "nope.yaml")
    assert result.returncode == 2 and "nope.yaml: params file not found" in result.stderr


def test_config_checks_values_itself():
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -1"):
        PreprocessConfig(seed=-1)


def test_preprocess_help_documents_the_defaults():
    result = run(".", "preprocess", "--help")
    assert result.returncode == 0
    for text in ("params.yaml", "val_fraction", "0.15", "per_feature", "global", "clip"):
        assert text in result.stdout
