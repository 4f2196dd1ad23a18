"""``backprop predict``: labels and class probabilities for the rows of a CSV.

The model is a folder written by the train stage (``data/model``) or an MLflow
model URI (``runs:/<run id>/model``, ``models:/<name>/<version>``,
``models:/<name>@<alias>``), whose pyfunc model holds that same folder.  The
CSV has the training layout: a header with the feature columns (matched by
name, in any order) and, if it is there, the label column, in which case the
accuracy is reported too.  Rows are read, scaled with the stored min-max
scaler, predicted and written in chunks, so a file larger than memory works;
the output appears whole or not at all.  It holds a ``predicted`` column (the
predicted label) and a ``proba_<class>`` column per class.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from backprop.app.command import Command, positive_int
from backprop.errors import DataError, UserError
from backprop.pipeline.files import (
    WholeWrites,
    atomic_file,
    check_output_file,
    is_stream,
    readable_file,
    writing,
)
from backprop.pipeline.predictor import PREDICTED, Predictor
from backprop.tables.labels import label_indices
from backprop.tables.reader import read_feature_chunks
from backprop.tracking.store import Store

CHUNK_ROWS = 10_000


@dataclass
class Summary:
    rows: int
    labelled: bool
    correct: int = 0
    unknown_labels: int = 0  # rows whose label is not one of the model's classes
    unlabelled: int = 0  # rows whose label cell is empty: predicted, not scored

    @property
    def scored(self) -> int:
        return self.rows - self.unlabelled

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored if self.labelled and self.scored else None


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
                "models:/<name>/<version>, models:/<name>@<alias>)"
            )
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="backprop-model-") as tmp:
        yield Store().download_model_folder(model, Path(tmp))


def predict_csv(
    model_dir: Path, input_path: str | os.PathLike, output: str | os.PathLike | None,
    chunk_rows: int = CHUNK_ROWS, progress: bool = True,
) -> Summary:  # fmt: skip
    """Predict every row of ``input_path`` into ``output`` (a CSV path; None: stdout)."""
    predictor = Predictor(str(model_dir))
    path = Path(input_path)
    classes = predictor.classes
    chunks = read_feature_chunks(path, predictor.feature_names, predictor.label_column, chunk_rows)
    first = next(chunks, None)  # the header is checked before anything is written
    if first is None:
        raise DataError(f"{input_path}: has a header but no rows; nothing to predict")
    summary = Summary(rows=0, labelled=first.labels is not None)
    bar = _progress(path, progress and output is not None)
    label_values = np.asarray(classes)  # int64 or str: the labels as the CSV had them
    schema = _schema(label_values, predictor.network.dtype, [f"proba_{c}" for c in classes])
    with _destination(output) as out, _csv_writer(out, schema) as writer:
        try:
            for chunk in _incomplete_if_failing(output, summary, itertools.chain([first], chunks)):
                proba = predictor.predict_matrix(chunk.X)
                predicted = proba.argmax(axis=1)
                writer.write_table(_table(schema, label_values[predicted], proba))
                if chunk.labels is not None:
                    truth = label_indices(chunk.labels, classes)
                    empty = np.char.strip(chunk.labels.astype(str)) == ""
                    summary.correct += int((truth == predicted).sum())
                    summary.unknown_labels += int(((truth < 0) & ~empty).sum())
                    summary.unlabelled += int(empty.sum())
                summary.rows += len(chunk.X)
                bar.update(chunk.bytes_read)
        finally:
            bar.close()
    return summary


def _incomplete_if_failing(output: Any, summary: Summary, chunks: Iterator[Any]) -> Iterator[Any]:
    """A bad row found after rows went to a stream (stdout, a pipe) cannot take them back:
    the error says so.  A file given with -o is replaced only when every row is written."""
    try:
        yield from chunks
    except UserError as err:
        if summary.rows and (output is None or is_stream(output)):
            where = "standard output" if output is None else str(output)
            raise type(err)(
                f"{err}; the {summary.rows} rows written to {where} before it are incomplete "
                "(-o FILE writes all rows or none)"
            ) from None
        raise


@contextlib.contextmanager
def _destination(output: str | os.PathLike | None) -> Iterator[IO[bytes]]:
    if output is None:
        sys.stdout.flush()
        with writing("standard output", stream=True):  # a full disk behind `>`: one line
            yield WholeWrites(sys.stdout.buffer)  # unbuffered (PYTHONUNBUFFERED) writes a part
            sys.stdout.buffer.flush()
        return
    with atomic_file(output) as f:
        yield f


def _schema(labels: np.ndarray, dtype: np.dtype, proba_names: list[str]):
    import pyarrow as pa

    fields = [pa.field(PREDICTED, pa.from_numpy_dtype(labels.dtype) if labels.dtype.kind in "iuf"
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


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model folder or MLflow model URI")
    p.add_argument("input", metavar="INPUT.csv", help="rows to predict")
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="output CSV, written whole or not at all (its folder is created if missing); "
        "a device or pipe is written as it goes (default: standard output)",
    )  # fmt: skip
    p.add_argument(
        "--chunk-rows", type=positive_int, default=CHUNK_ROWS,
        help=f"rows per chunk (default {CHUNK_ROWS})",
    )  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    if args.output is not None and os.path.abspath(args.output) == os.path.abspath(args.input):
        raise UserError(f"{args.output}: the output would overwrite the input; pick another -o")
    if args.output is not None:
        check_output_file(args.output)
    with model_folder(args.model) as folder, readable_file(args.input) as rows:
        summary = predict_csv(folder, rows, args.output, args.chunk_rows)
    where = f" -> {args.output}" if args.output else ""
    line = f"predicted {summary.rows} rows{where}"
    if summary.labelled and summary.rows and not summary.scored:
        line += f"; none of the {summary.rows} rows has a label, so none was scored"
    if summary.accuracy is not None:
        line += f"; accuracy {summary.accuracy:.4f} ({summary.correct} of {summary.scored} right)"
        if summary.unlabelled:
            line += f"; {summary.unlabelled} rows without a label were not scored"
        if summary.unknown_labels:
            line += f"; {summary.unknown_labels} rows have a label the model was not trained on"
    # the summary never mixes with rows that go to a stream (-o /dev/stdout, a pipe)
    streamed = args.output is None or is_stream(args.output)
    print(line, file=sys.stderr if streamed else sys.stdout)
    return 0


PREDICT = Command(
    description="Predict every row of INPUT.csv (the training layout: a header naming the "
    "feature columns, in any order, and optionally the label column) with MODEL: a model "
    "folder written by `backprop train` (such as data/model) or an MLflow model URI "
    "(runs:/<run id>/model, models:/<name>/<version>, models:/<name>@<alias>; tracking store "
    "MLFLOW_TRACKING_URI, else ./mlflow.db). The stored min-max scaler is applied. Writes a "
    f"CSV with the predicted label ({PREDICTED}) and one proba_<class> column per class, row "
    "for row, to -o (whole or not at all) or to standard output; with labels in the input "
    "it reports the accuracy. "
    "Reads and writes in chunks, so files larger than memory work.",
    arguments=_arguments,
    run=_run,
)
