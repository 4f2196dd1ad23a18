"""Labelled CSV files in, feature matrices and class indices out.

The layout is the article's: a header row, one example per row, numeric
features, and a label column (the first one unless named).  Labels may be
integers, floats written as ``3.0`` or strings; they are encoded as indices
into the sorted list of classes.

The common case is one fast pass of pandas' C parser straight into float32.
Only when that pass fails or finds a missing value does a second, slower pass
find the first offending cell, so that the error can name its column, its row
and its line.  Every problem is a :class:`DataError` with a one-line message.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backprop.memory import prefaulted_empty

SNIFF_BYTES = 64 * 1024


class DataError(ValueError):
    """A problem with the user's data file; the message says where and what to do."""


@dataclass(frozen=True)
class LabelledData:
    """Features and raw labels read from a CSV.

    columns : one numeric array of shape (n_samples,) per feature, as parsed
        (integer or float; every value fits float32).
    labels : (n_samples,) raw label values.
    rows : (n_samples,) 1-based data row numbers in the file (header excluded).

    The features stay in columns until :meth:`matrix` gathers the rows a
    caller asks for: a split then costs one copy of the data, not two.
    """

    columns: list[np.ndarray]
    labels: np.ndarray
    feature_names: list[str]
    label_column: str
    rows: np.ndarray

    def matrix(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Features of the given row positions (default all), float32 (n, n_features).

        The result is Fortran-ordered (each feature contiguous), which is how the
        columns are gathered fastest; ``np.ascontiguousarray`` makes it C-ordered.
        """
        n = len(self.labels) if rows is None else len(rows)
        out = prefaulted_empty((len(self.columns), n), np.float32)  # (n_features, n)
        gathered: dict[np.dtype, np.ndarray] = {}  # reused: fresh temporaries cost page faults
        for j, column in enumerate(self.columns):
            if rows is not None:
                buffer = gathered.get(column.dtype)
                if buffer is None:
                    buffer = gathered[column.dtype] = np.empty(n, column.dtype)
                column = np.take(column, rows, out=buffer)
            out[j] = column  # cast to float32
        return out.T

    @property
    def X(self) -> np.ndarray:
        return self.matrix()


def read_labelled_csv(
    path: str | os.PathLike, label_column: str | None = None, drop_missing: bool = False
) -> LabelledData:
    """Read a labelled CSV, refusing (DataError) anything that is not clean numeric data.

    With ``drop_missing`` rows with an empty or NaN cell are dropped, with a
    warning, instead of refused.
    """
    path = Path(path)
    header = read_header(path)
    label = _label_column(path, header, label_column)
    features = [name for name in header if name != label]
    if not features:
        raise DataError(f"{path}: no feature columns besides the label column {label!r}")

    frame = _parse(path, header, label, features, drop_missing)
    if len(frame) == 0:
        raise DataError(f"{path}: the header has no data rows below it")
    columns = [frame[name].to_numpy() for name in features]  # views, no copy
    labels = frame[label].to_numpy(dtype=object)
    rows = np.arange(1, len(frame) + 1)
    del frame

    missing = _missing_labels(labels)
    for column in columns:
        if column.dtype.kind == "f":
            missing |= np.isnan(column)
    if missing.any():
        _check_field_counts(path, len(header), np.flatnonzero(missing))
        first = int(np.flatnonzero(missing)[0])
        if not drop_missing:
            name = (
                label
                if _missing_labels(labels[first : first + 1])[0]
                else next(n for n, c in zip(features, columns) if np.isnan(c[first]))
            )
            raise DataError(
                f"{path}: missing value in column {name!r} at row {first + 1} "
                f"(line {_line_of(path, first)}); fill it in, or set drop_missing to drop such rows"
            )
        warnings.warn(
            f"{path}: dropped {int(missing.sum())} rows with missing values "
            f"(the first is row {first + 1})",
            stacklevel=2,
        )
        keep = ~missing
        columns = [c[keep] for c in columns]
        labels, rows = labels[keep], rows[keep]
        if len(labels) == 0:
            raise DataError(f"{path}: every row has a missing value")

    limit = np.finfo(np.float32).max
    for name, column in zip(features, columns):
        if column.dtype.kind == "f":
            too_large = ~(np.abs(column) <= limit)  # inf, or beyond float32
        elif column.dtype.itemsize > 4:
            too_large = (column > limit) | (column < -limit)
        else:
            continue
        if too_large.any():
            r = int(np.flatnonzero(too_large)[0])
            raise DataError(
                f"{path}: infinite value in column {name!r} at row {rows[r]} "
                f"(line {_line_of(path, rows[r] - 1)}); values must be finite and within "
                "float32 range"
            )
    return LabelledData(columns, labels, features, label, rows)


_NA = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "-nan", "#N/A"]


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Class indices (n,) int64 into ``classes``, the sorted distinct labels.

    Labels that all read as numbers are numbers (``"3"`` and ``"3.0"`` are the
    class 3); otherwise they are strings, sorted as strings.
    """
    values = np.asarray(labels, dtype=object)
    numbers = _as_numbers(values)
    if numbers is not None:
        if np.all(numbers == np.round(numbers)) and np.abs(numbers).max() < 2**53:
            values = numbers.astype(np.int64)
        else:
            values = numbers
    else:
        values = np.array([str(v).strip() for v in values], dtype=object)
    classes, indices = np.unique(values, return_inverse=True)
    return indices.astype(np.int64), [_plain(c) for c in classes]


def decode_labels(indices: np.ndarray, classes: list[Any]) -> np.ndarray:
    """The original labels of class indices (n,): the inverse of :func:`encode_labels`."""
    return np.asarray(classes, dtype=object)[np.asarray(indices)]


def label_indices(labels: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Indices into ``classes`` of raw labels read as text (n,); -1 for an unknown label.

    Read as :func:`encode_labels` reads them: with numeric classes ``"3"`` and
    ``"3.0"`` are the class 3.
    """
    values = np.asarray(labels, dtype=object)
    numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes)
    if numeric:
        lookup = {float(c): i for i, c in enumerate(classes)}

        def key(v: Any) -> Any:
            try:
                return float(v)
            except (TypeError, ValueError):
                return None
    else:
        lookup = {str(c): i for i, c in enumerate(classes)}

        def key(v: Any) -> Any:
            return str(v).strip()

    return np.array([lookup.get(key(v), -1) for v in values], dtype=np.int64)


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    try:
        numbers = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return numbers if np.isfinite(numbers).all() else None


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


# -- the header -----------------------------------------------------------------


def read_header(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a CSV file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    if not head.strip():
        raise DataError(f"{path}: the file is empty; expected a header row and data rows")
    if b"\x00" in head:
        raise DataError(f"{path}: not a text file (it contains NUL bytes); expected a CSV")
    try:
        first_line = head.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    header = next(csv.reader([first_line]))
    for i, name in enumerate(header, start=1):
        if not name.strip():
            raise DataError(f"{path}: column {i} of the header has no name")
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears more than once in the header")
        seen.add(name)
    if len(header) < 2:
        raise DataError(
            f"{path}: the header has {len(header)} column; expected a label and at least one "
            "feature, separated by commas"
        )
    return header


def _label_column(path: Path, header: list[str], label_column: str | None) -> str:
    if label_column is None:
        return header[0]
    if label_column not in header:
        shown = header if len(header) <= 12 else [*header[:6], "...", *header[-3:]]
        raise DataError(
            f"{path}: label column {label_column!r} not found; the columns are "
            f"{', '.join(shown)} ({len(header)} in all)"
        )
    return label_column


# -- the slow pass that finds the offending cell -----------------------------------


def _parse(path: Path, header: list[str], label: str, features: list[str], drop_missing: bool):
    """The CSV as a DataFrame: numeric feature columns, the label column as strings.

    The fast pass is pandas' own type inference with NA detection off, the
    speed of a plain ``read_csv``: integer pixels parse as integers, which is
    quicker than parsing them as floats.  Any empty, NA or non-numeric cell then
    leaves its column non-numeric, and :func:`first_bad_cell` names the cell;
    with ``drop_missing`` a second pass reads NA cells as NaN for the caller
    to drop.
    """
    import pandas as pd

    problem = None
    try:
        frame = pd.read_csv(path, dtype={label: str}, na_filter=False)
    except UnicodeDecodeError:
        problem = DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8")
    except pd.errors.ParserError as err:
        problem = DataError(f"{path}: {ragged_message(str(err), len(header))}")
    if problem is not None:
        close_abandoned_files()
        raise problem
    if len(frame) == 0 or all(frame[name].dtype.kind in "iuf" for name in features):
        return frame

    problem = first_bad_cell(path, header, features)
    if not (drop_missing and problem.missing):
        raise problem
    na_values = {name: _NA for name in features}
    na_values[label] = [""]  # an empty label is missing; "NA" may well be a class
    frame = pd.read_csv(path, dtype={label: str}, keep_default_na=False, na_values=na_values)
    if all(frame[name].dtype.kind in "iuf" for name in features):
        return frame
    raise first_bad_cell(path, header, features, skip_missing=True)


class _CellError(DataError):
    def __init__(self, message: str, missing: bool):
        super().__init__(message)
        self.missing = missing


def first_bad_cell(
    path: Path, header: list[str], features: list[str], skip_missing: bool = False,
    predicting: bool = False,
) -> _CellError:  # fmt: skip
    """The first feature cell (by row, then column) that is empty, NA or not a number.

    ``predicting``: the rows are to be predicted, so dropping them is no remedy.
    """
    import pandas as pd

    na_tokens = set(_NA)
    offset = 0
    with pd.read_csv(path, dtype=str, na_filter=False, chunksize=20_000) as chunks:
        for chunk in chunks:
            best = None  # (row in chunk, column position, value)
            for j, name in enumerate(features):
                cells = chunk[name]
                if cells.isna().any():  # pandas pads short rows with NaN
                    r = int(np.flatnonzero(cells.isna().to_numpy())[0])
                    _check_field_counts(path, len(header), np.array([offset + r]))
                bad = pd.to_numeric(cells, errors="coerce").isna().to_numpy()
                if skip_missing:
                    bad &= ~cells.isin(na_tokens).to_numpy()
                if bad.any():
                    r = int(np.flatnonzero(bad)[0])
                    if best is None or r < best[0]:
                        best = (r, j, cells.iloc[r])
            if best is not None:
                r, j, value = best
                row = offset + r
                _check_field_counts(path, len(header), np.array([row]))
                name, line = features[j], _line_of(path, row)
                if value in na_tokens:
                    return _CellError(
                        f"{path}: missing value in column {name!r} at row {row + 1} "
                        f"(line {line}); "
                        + (
                            "fill it in"
                            if predicting
                            else "fill it in, or set drop_missing to drop such rows"
                        ),  # fmt: skip
                        missing=True,
                    )
                return _CellError(
                    f"{path}: column {name!r}, row {row + 1} (line {line}): {value!r} is not "
                    "a number; features must be numeric",
                    missing=False,
                )
            offset += len(chunk)
    return _CellError(f"{path}: a feature value is not a number", missing=False)


def close_abandoned_files() -> None:
    """Close, quietly, the file pandas leaves open when its parser fails."""
    import gc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _missing_labels(labels: np.ndarray) -> np.ndarray:
    """True where a label cell is empty (only an empty cell: "NA" may well be a class)."""
    return np.array(
        [v is None or v == "" or (isinstance(v, float) and math.isnan(v)) for v in labels]
    )


def ragged_message(parser_message: str, n_header: int) -> str:
    # pandas: "Error tokenizing data. C error: Expected 3 fields in line 4, saw 4"
    import re

    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", parser_message)
    if m:
        return (
            f"line {m.group(2)} has {m.group(3)} fields but the header has {n_header}; "
            "every row needs one value per column"
        )
    return f"cannot parse the CSV ({parser_message.strip().splitlines()[-1]})"


def _data_rows(path: Path):
    """(0-based data row, line number, field count) for each non-blank row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        r = 0
        for fields in reader:
            if not fields:  # pandas skips blank lines, so they are not rows
                continue
            yield r, reader.line_num, len(fields)
            r += 1


def _line_of(path: Path, row: int) -> int:
    """Line number of 0-based data row ``row``."""
    for r, line, _ in _data_rows(path):
        if r == row:
            return line
    return row + 2


def _check_field_counts(path: Path, n_header: int, rows: np.ndarray) -> None:
    """Refuse short rows, which pandas pads with NaN as if cells were missing."""
    wanted = set(rows.tolist())
    last = max(wanted)
    for r, line, n_fields in _data_rows(path):
        if r in wanted and n_fields != n_header:
            raise DataError(
                f"{path}: line {line} has {n_fields} fields but the header has {n_header}; "
                "every row needs one value per column"
            )
        if r >= last:
            return
