"""Stage 2: read a labelled CSV, split it, fit min-max scaling on the training part.

Or, for ``data=mnist_idx``, read MNIST's four idx files straight into arrays: MNIST's
own test set is the test split, validation is carved from its training set.

Writes the prepared folder described in ``pipeline/prepared.py``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backprop.errors import DataError
from backprop.pipeline.files import check_output_folder, data_digest, readable_file
from backprop.pipeline.prepared import PREPARED_FILES, SPLITS, Prepared, write_prepared
from backprop.pipeline.runlog import NO_LOG, RunLog
from backprop.pipeline.settings import IDX
from backprop.tables.config import PreprocessConfig
from backprop.tables.idx import MnistArrays, read_mnist_folder
from backprop.tables.labels import encode_labels
from backprop.tables.reader import read_labelled_csv
from backprop.tables.scaling import MinMaxScaler
from backprop.tables.split import stratified_split

if TYPE_CHECKING:
    from backprop.pipeline.settings import Settings


def prepare(
    input_csv: str | os.PathLike,
    config: PreprocessConfig,
    label_column: str | None = None,
    drop_missing: bool = False,
) -> Prepared:
    """Read, split and scale, in memory."""
    data = read_labelled_csv(input_csv, label_column, drop_missing)
    y, classes = encode_labels(data.labels)
    if len(classes) < 2:
        raise DataError(
            f"{input_csv}: column {data.label_column!r} holds a single class ({classes[0]!r}); "
            "classification needs at least 2"
        )
    try:
        split = stratified_split(y, config, classes)
    except DataError as err:
        raise DataError(f"{input_csv}: {err}") from None
    parts = {name: getattr(split, name) for name in SPLITS}
    X = {name: data.matrix(idx) for name, idx in parts.items()}  # the one copy of the data
    scaler = MinMaxScaler.fit(X["train"], config.scaling, config.clip)
    for part in X.values():
        scaler.transform_in_place(part)
    return Prepared(
        X=X,
        y={name: y[idx] for name, idx in parts.items()},
        rows={name: data.rows[idx] for name, idx in parts.items()},
        scaler=scaler,
        feature_names=data.feature_names,
        classes=classes,
        label_column=data.label_column,
    )


def prepare_mnist(mnist: MnistArrays, config: PreprocessConfig) -> Prepared:
    """MNIST's arrays split and scaled: validation carved from its training set
    (stratified, ``val_fraction`` of it), its test set whole; ``test_fraction`` unused."""
    labels_file = mnist.path("train_labels")
    classes_found, y_train = np.unique(mnist.train_labels, return_inverse=True)
    classes = [int(c) for c in classes_found]
    if len(classes) < 2:
        raise DataError(
            f"{labels_file}: every training label is {classes[0]}; classification needs at "
            "least 2 classes: not MNIST's labels"
        )
    unseen = np.setdiff1d(mnist.test_labels, classes_found)
    if unseen.size:
        raise DataError(
            f"{mnist.path('test_labels')}: label {int(unseen[0])} is in the test set but never in "
            "the training set, which the network could not learn; not MNIST's labels"
        )
    y_test = np.searchsorted(classes_found, mnist.test_labels)
    try:
        split = stratified_split(y_train.astype(np.int64), config, classes, test_fraction=0.0)
    except DataError as err:
        raise DataError(f"{labels_file}: {err}") from None
    parts = {"train": split.train, "val": split.val}
    X = {name: mnist.train_images[idx].astype(np.float32) for name, idx in parts.items()}
    X["test"] = mnist.test_images.astype(np.float32)
    scaler = MinMaxScaler.fit(X["train"], config.scaling, config.clip)
    for part in X.values():
        scaler.transform_in_place(part)
    return Prepared(
        X=X,
        y={**{n: y_train[i].astype(np.int64) for n, i in parts.items()},
           "test": y_test.astype(np.int64)},
        # 1-based item numbers in the file each split comes from
        rows={**{n: i + 1 for n, i in parts.items()},
              "test": np.arange(1, len(y_test) + 1, dtype=np.int64)},
        scaler=scaler,
        feature_names=[f"pixel{i}" for i in range(mnist.train_images.shape[1])],
        classes=classes,
        label_column="label",
    )  # fmt: skip


@dataclass(frozen=True)
class Preprocessed:
    csv: Path
    prepared: Path
    rows: dict[str, int]
    features: int
    classes: list[Any]
    scaling: str
    note: str = ""  # what else to know about the data read

    @property
    def summary(self) -> str:
        r = self.rows
        return (
            f"{self.csv}: {r['train']} train / {r['val']} validation / {r['test']} test rows, "
            f"{self.features} features, {len(self.classes)} classes, {self.scaling} min-max "
            f"scaling -> {self.prepared}{self.note}"
        )


def preprocess(
    settings: Settings, *, csv: Path, prepared: Path, log: RunLog = NO_LOG, progress: bool = True
) -> Preprocessed:
    """The stage: read, split and scale ``csv``, then replace the folder ``prepared``."""
    check_output_folder(prepared, PREPARED_FILES, "prepared splits", [csv])  # before the work
    data = settings.data
    note = ""
    if data.name == IDX:
        mnist = read_mnist_folder(csv)
        result = prepare_mnist(mnist, settings.preprocess)
        digest = mnist.digest  # data_digest(csv), without reading the files again
        files = [f.record() for f in mnist.files]
        del mnist
        published = sum(f["published"] for f in files)
        match = {4: "match", 0: "are not"}.get(published, f"are not all ({published} of 4 match)")
        note = f" (test: MNIST's own test set; the idx files {match} the published ones)"
    else:
        if Path(csv).is_dir():
            raise DataError(
                f"{csv}: a folder, not a CSV file; set data.path to a CSV, or for MNIST's idx "
                "files choose data=mnist_idx with data.dir"
            )
        files = None
        with readable_file(csv) as local:  # a pipe is read once, into a temporary file
            result = prepare(local, settings.preprocess, data.label_column, data.drop_missing)
            digest = data_digest(local)
    source: dict[str, Any] = {
        "path": Path(csv).as_posix(),
        "sha256": digest,
        "rows": sum(len(y) for y in result.y.values()),
    }
    if files is not None:
        source["files"] = files
    write_prepared(dataclasses.replace(result, source=source), prepared)
    return Preprocessed(
        csv=Path(csv),
        prepared=Path(prepared),
        rows={name: len(result.y[name]) for name in SPLITS},
        features=len(result.feature_names),
        classes=result.classes,
        scaling=settings.preprocess.scaling,
        note=note,
    )
