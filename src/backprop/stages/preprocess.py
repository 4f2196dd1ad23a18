"""Stage 2: read a labelled CSV, split it, fit min-max scaling on the training part.

Writes into ``out_dir`` (replaced as a whole, atomically):

- ``train.npz``, ``val.npz``, ``test.npz``: ``X`` float32 (n, n_features)
  scaled, ``y`` int64 (n,) class indices, ``rows`` int64 (n,) the data row
  numbers in the CSV (1-based, header excluded);
- ``scaler.json``: the fitted scaler and the feature names;
- ``classes.json``: the label column and the sorted classes, so that class
  index i means ``classes[i]``;
- ``source.json``: the input CSV's path, SHA-256 and row count, so later
  stages can name the data set they were trained on without reading it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backprop.config import PreprocessConfig
from backprop.data import DataError, encode_labels, read_labelled_csv
from backprop.io import atomic_write_dir, file_digest, json_bytes, npz_bytes, read_npz
from backprop.scaling import MinMaxScaler
from backprop.split import stratified_split

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Prepared:
    """What ``preprocess`` wrote, loaded back."""

    X: dict[str, np.ndarray]  # split name -> (n, n_features) float32
    y: dict[str, np.ndarray]  # split name -> (n,) int64
    rows: dict[str, np.ndarray]
    scaler: MinMaxScaler
    feature_names: list[str]
    classes: list[Any]
    label_column: str
    source: dict[str, Any] | None = None  # path, sha256 and rows of the input CSV


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
        split = stratified_split(y, config.val_fraction, config.test_fraction, config.seed, classes)
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


def write_prepared(prepared: Prepared, out_dir: str | os.PathLike) -> None:
    """Replace ``out_dir`` by the files described in the module docstring."""
    p = prepared
    files = {
        f"{name}.npz": npz_bytes({"X": p.X[name], "y": p.y[name], "rows": p.rows[name]})
        for name in SPLITS
    }
    files["scaler.json"] = json_bytes({**p.scaler.to_dict(), "feature_names": p.feature_names})
    files["classes.json"] = json_bytes({"label_column": p.label_column, "classes": p.classes})
    if p.source is not None:
        files["source.json"] = json_bytes(p.source)
    atomic_write_dir(out_dir, files)


def preprocess(
    input_csv: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PreprocessConfig,
    label_column: str | None = None,
    drop_missing: bool = False,
) -> dict[str, Any]:
    """The stage: prepare, then write.  Returns a summary (row counts, classes)."""
    prepared = prepare(input_csv, config, label_column, drop_missing)
    source = {
        "path": Path(input_csv).as_posix(),
        "sha256": file_digest(input_csv),
        "rows": sum(len(y) for y in prepared.y.values()),
    }
    write_prepared(dataclasses.replace(prepared, source=source), out_dir)
    return {
        "rows": {name: len(prepared.y[name]) for name in SPLITS},
        "features": len(prepared.feature_names),
        "classes": prepared.classes,
    }


def read_source(out_dir: str | os.PathLike) -> dict | None:
    """The input CSV's path, SHA-256 and row count recorded in ``out_dir`` (None if absent)."""
    import json

    path = Path(out_dir) / "source.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def load_prepared(out_dir: str | os.PathLike) -> Prepared:
    import json

    out_dir = Path(out_dir)
    arrays = {name: read_npz(out_dir / f"{name}.npz") for name in SPLITS}
    scaler_meta = json.loads((out_dir / "scaler.json").read_text(encoding="utf-8"))
    class_meta = json.loads((out_dir / "classes.json").read_text(encoding="utf-8"))
    source = read_source(out_dir)
    return Prepared(
        X={name: a["X"] for name, a in arrays.items()},
        y={name: a["y"] for name, a in arrays.items()},
        rows={name: a["rows"] for name, a in arrays.items()},
        scaler=MinMaxScaler.from_dict(scaler_meta),
        feature_names=scaler_meta["feature_names"],
        classes=class_meta["classes"],
        label_column=class_meta["label_column"],
        source=source,
    )
