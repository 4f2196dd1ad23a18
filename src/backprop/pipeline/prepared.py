"""The prepared data: what the preprocess stage writes and the later stages read.

A folder holding, replaced as a whole (atomically):

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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backprop.errors import DataError, ModelFileError
from backprop.pipeline.files import atomic_write_dir, json_bytes, npz_bytes, read_npz
from backprop.tables.scaling import MinMaxScaler

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


# Every file the folder may hold (source.json only when the CSV is known).
PREPARED_FILES = (*(f"{name}.npz" for name in SPLITS), "scaler.json", "classes.json", "source.json")


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
    atomic_write_dir(out_dir, files, ours=PREPARED_FILES)


def read_source(out_dir: str | os.PathLike) -> dict | None:
    """The input CSV's path, SHA-256 and row count recorded in ``out_dir`` (None if absent)."""
    path = Path(out_dir) / "source.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def load_prepared(out_dir: str | os.PathLike) -> Prepared:
    """What ``preprocess`` wrote into ``out_dir``; DataError if it is not there."""
    out_dir = Path(out_dir)
    try:
        arrays = {name: read_npz(out_dir / f"{name}.npz") for name in SPLITS}
        scaler_meta = json.loads((out_dir / "scaler.json").read_text(encoding="utf-8"))
        class_meta = json.loads((out_dir / "classes.json").read_text(encoding="utf-8"))
        source = read_source(out_dir)
    except (OSError, ValueError, ModelFileError) as err:
        raise DataError(
            f"{out_dir}: not prepared data ({err}); run `backprop preprocess` into it first"
        ) from None
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
