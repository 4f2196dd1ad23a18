import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from backprop.app.cli import main
from backprop.errors import ConfigError
from backprop.nn.network import MLP
from backprop.pipeline.model_files import save_model
from backprop.pipeline.predictor import Predictor
from backprop.pipeline.prepared import SPLITS, load_prepared
from backprop.pipeline.settings import Settings
from backprop.pipeline.stages.digits import write_digits
from backprop.pipeline.stages.preprocess import preprocess as preprocess_stage
from backprop.tables.config import PreprocessConfig
from backprop.tables.reader import read_feature_chunks


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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_scales_a_row_exactly_as_preprocess_did(tmp_path, capsys, monkeypatch, dtype):
    """The same raw row, read and scaled by predict, gives the bits preprocess stored, and so
    the probabilities the network gives for the stored row, whatever the network's dtype."""
    monkeypatch.chdir(tmp_path)  # the default settings, not a params.yaml
    rng = np.random.default_rng(0)
    n = 120
    columns = {
        "decimal": [f"{v:.12g}" for v in rng.normal(0, 1, n)],
        "offset": [f"{1e8 + v:.4f}" for v in rng.uniform(0, 1000, n)],
        "integer": [str(v) for v in rng.integers(-(2**30), 2**30, n)],
        "tiny": [f"{v:.6e}" for v in rng.uniform(1e-30, 1e-29, n)],
    }
    lines = ["y," + ",".join(columns)]
    lines += [f"{i % 3}," + ",".join(c[i] for c in columns.values()) for i in range(n)]
    csv = tmp_path / "rows.csv"
    csv.write_text("\n".join(lines) + "\n")
    assert main(["preprocess", str(csv), str(tmp_path / "prepared")]) == 0
    p = load_prepared(tmp_path / "prepared")
    network = MLP([len(columns), 5, 3], dtype=dtype, rng=np.random.default_rng(1))
    extra = {"label_column": p.label_column, "feature_names": p.feature_names,
             "scaler": p.scaler.to_dict()}  # fmt: skip
    save_model(tmp_path / "model", network, p.classes, extra)
    stored = np.empty((n, len(columns)), np.float32)  # the prepared rows, in the file's order
    for name in SPLITS:
        stored[p.rows[name] - 1] = p.X[name]

    predictor = Predictor(str(tmp_path / "model"))
    (chunk,) = read_feature_chunks(csv, predictor.feature_names, predictor.label_column)
    scaled = predictor.scale(chunk.X)
    assert scaled.dtype == np.float32
    assert scaled.view(np.uint32).tolist() == stored.view(np.uint32).tolist()

    capsys.readouterr()
    assert main(["predict", str(tmp_path / "model"), str(csv), "-o", str(tmp_path / "p.csv")]) == 0
    written = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3),
                         dtype=dtype)  # fmt: skip
    assert written.tolist() == network.predict_proba(stored).tolist()


def test_integer_labels_past_two_to_the_53_stay_apart(tmp_path):
    big = ["9007199254740992", "9007199254740993", "9007199254740994"]
    rows = [f"{big[i % 3]},{i % 3 + 0.1 * (i % 7)},{i}" for i in range(60)]
    (tmp_path / "ids.csv").write_text("id,a,b\n" + "\n".join(rows) + "\n")
    preprocess(tmp_path / "ids.csv", tmp_path / "out", PreprocessConfig())
    p = load_prepared(tmp_path / "out")
    assert p.classes == [int(b) for b in big]
    for name in SPLITS:
        assert [str(p.classes[i]) for i in p.y[name]] == [rows[r - 1].split(",")[0]
                                                           for r in p.rows[name]]  # fmt: skip


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
            "p.yaml: unknown key preprocess.scalng; did you mean preprocess.scaling? "
            "(the keys of preprocess are",
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
        (
            "preprocess:\n  seed: 3\n  clip: false\n  seed: 4\n",
            "p.yaml: not valid YAML at line 4, column 3: found duplicate key seed; give each key "
            "once",
        ),
        ("train:\n  epochs: 2\ntrain:\n  epochs: 3\n", "p.yaml: not valid YAML at line 3"),
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
