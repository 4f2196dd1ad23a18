"""``backprop predict``: labels and class probabilities for the rows of a CSV.

The model is a folder written by the train stage (``data/model``) or an MLflow
model URI (``runs:/<run id>/model``, ``models:/<name>/<version>``), whose
pyfunc model holds that same folder.  The CSV has the training layout: a
header with the feature columns (matched by name, in any order) and, if it is
there, the label column, in which case the accuracy is reported too.  Rows are
read, scaled with the stored min-max scaler, predicted and written in chunks,
so a file larger than memory works; the output appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from backprop.data import DataError

CHUNK_ROWS = 10_000


@dataclass
class Summary:
    rows: int
    labelled: bool
    correct: int = 0
    unknown_labels: int = 0  # rows whose label is not one of the model's classes

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.rows if self.labelled and self.rows else None


def is_model_uri(model: str) -> bool:
    return model.startswith(("runs:/", "models:/", "models:", "m-")) or "://" in model


@contextlib.contextmanager
def model_folder(model: str) -> Iterator[Path]:
    """The model folder of ``model``: a local folder, or an MLflow model URI downloaded."""
    if not is_model_uri(model):
        path = Path(model)
        if not path.is_dir():
            raise DataError(
                f"{model}: no such model folder; give a folder written by `backprop train` "
                "(such as data/model) or an MLflow model URI (runs:/<run id>/model, "
                "models:/<name>/<version>)"
            )
        yield path
        return
    from backprop import tracking

    with tempfile.TemporaryDirectory(prefix="backprop-model-") as tmp:
        yield tracking.download_model_folder(model, Path(tmp))


@dataclass
class _Columns:
    """Where the model's features and the label are in the CSV's header."""

    features: list[str]  # the CSV's names for the model's features, in the model's order
    label: str | None


def match_columns(path: Path, header: list[str], feature_names: list[str], label: str | None):
    """The model's features by name in ``header``; a one-line error listing any mismatch."""
    has_label = label is not None and label in header
    given = [name for name in header if not (has_label and name == label)]
    missing = [name for name in feature_names if name not in given]
    extra = [name for name in given if name not in feature_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_names(missing)}")
        if extra:
            parts.append(f"unexpected {_names(extra)}")
        expected = f"{label} (optional), " if label else ""
        raise DataError(
            f"{path}: the columns do not match the model: {'; '.join(parts)}; expected "
            f"{expected}{_names(feature_names)} ({len(feature_names)} features)"
        )
    return _Columns(list(feature_names), label if has_label else None)


def _names(names: list[str], show: int = 6) -> str:
    if len(names) <= show:
        return ", ".join(names)
    return f"{', '.join(names[:show])} and {len(names) - show} more"


def predict_csv(
    model_dir: Path, input_path: str | os.PathLike, output: str | os.PathLike | None,
    chunk_rows: int = CHUNK_ROWS, progress: bool = True,
) -> Summary:  # fmt: skip
    """Predict every row of ``input_path`` into ``output`` (a CSV path; None: stdout)."""
    import pandas as pd

    from backprop.data import (
        close_abandoned_files,
        first_bad_cell,
        label_indices,
        ragged_message,
        read_header,
    )
    from backprop.predictor import Predictor

    predictor = Predictor(str(model_dir))
    path = Path(input_path)
    header = read_header(path)
    columns = match_columns(path, header, predictor.feature_names, predictor.label_column)
    classes = predictor.classes
    summary = Summary(rows=0, labelled=columns.label is not None)
    dtypes = {columns.label: str} if columns.label else None
    bar = _progress(path, progress and output is not None)
    label_values = np.asarray(classes)  # int64 or str: the labels as the CSV had them
    schema = _schema(label_values, predictor.network.dtype, [f"proba_{c}" for c in classes])
    with _destination(output) as out, _csv_writer(out, schema) as writer:
        try:
            chunks = pd.read_csv(path, dtype=dtypes, na_filter=False, chunksize=chunk_rows)
            with chunks:
                for chunk in chunks:
                    if not all(chunk[name].dtype.kind in "iuf" for name in columns.features):
                        raise first_bad_cell(path, header, columns.features, predicting=True)
                    X = chunk[columns.features].to_numpy(dtype=np.float64)
                    _check_finite(path, X, columns.features, summary.rows)
                    proba = predictor.predict_matrix(X)
                    predicted = proba.argmax(axis=1)
                    writer.write_table(_table(schema, label_values[predicted], proba))
                    if columns.label:
                        truth = label_indices(chunk[columns.label].to_numpy(), classes)
                        summary.correct += int((truth == predicted).sum())
                        summary.unknown_labels += int((truth < 0).sum())
                    summary.rows += len(chunk)
                    bar.update(_bytes_read(chunks))
        except pd.errors.ParserError as err:
            close_abandoned_files()
            raise DataError(f"{path}: {ragged_message(str(err), len(header))}") from None
        except UnicodeDecodeError:
            close_abandoned_files()
            raise DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
        finally:
            bar.close()
    return summary


def _check_finite(path: Path, X: np.ndarray, features: list[str], offset: int) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        r, j = np.argwhere(bad)[0]
        raise DataError(
            f"{path}: column {features[j]!r}, row {offset + r + 1}: {X[r, j]} is not a finite "
            "number; features must be finite"
        )


@contextlib.contextmanager
def _destination(output: str | os.PathLike | None) -> Iterator[IO[bytes]]:
    if output is None:
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    from backprop.io import atomic_file

    with atomic_file(output) as f:
        yield f


def _schema(labels: np.ndarray, dtype: np.dtype, proba_names: list[str]):
    import pyarrow as pa

    fields = [pa.field("label", pa.from_numpy_dtype(labels.dtype) if labels.dtype.kind in "iuf"
                       else pa.string())]  # fmt: skip
    fields += [pa.field(name, pa.from_numpy_dtype(dtype)) for name in proba_names]
    return pa.schema(fields)


def _table(schema, labels: np.ndarray, proba: np.ndarray):
    """One chunk of results.  Probabilities are written in the network's precision, each
    with the fewest digits that read back to the same number (float32: ~9)."""
    import pyarrow as pa

    columns = [pa.array(labels, type=schema.field(0).type)]
    columns += [pa.array(proba[:, i]) for i in range(proba.shape[1])]
    return pa.Table.from_arrays(columns, schema=schema)


@contextlib.contextmanager
def _csv_writer(out: IO[bytes], schema) -> Iterator[Any]:
    """pyarrow's CSV writer: eight times pandas' ``to_csv`` on columns of floats."""
    import pyarrow.csv

    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(schema.names)  # quoted only if needed
    out.write(header.getvalue().encode("utf-8"))
    options = pyarrow.csv.WriteOptions(include_header=False, quoting_style="needed")
    with pyarrow.csv.CSVWriter(out, schema, write_options=options) as writer:
        yield writer


def _progress(path: Path, enabled: bool):
    """A progress bar in bytes of the input, on a terminal."""
    from tqdm import tqdm

    disable = not (enabled and sys.stderr.isatty())
    return _ByteBar(tqdm(total=path.stat().st_size, unit="B", unit_scale=True, disable=disable,
                         leave=False, desc="predict"))  # fmt: skip


class _ByteBar:
    def __init__(self, bar) -> None:
        self.bar, self.done = bar, 0

    def update(self, position: int | None) -> None:
        if position is not None and position > self.done:
            self.bar.update(position - self.done)
            self.done = position

    def close(self) -> None:
        self.bar.close()


def _bytes_read(reader) -> int | None:
    """How far pandas' chunked reader is into its file, if it tells."""
    handle = getattr(getattr(reader, "handles", None), "handle", None)
    try:
        return handle.tell() if handle is not None else None
    except (OSError, ValueError):
        return None
