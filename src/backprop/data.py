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

SNIFF_BYTES = 64 * 1024


class DataError(ValueError):
    """A problem with the user's data file; the message says where and what to do."""


@dataclass(frozen=True)
class LabelledData:
    """Features and raw labels read from a CSV.

    X : float32 (n_samples, n_features).  labels : (n_samples,) raw label values.
    rows : (n_samples,) 1-based data row numbers in the file (header excluded).
    """

    X: np.ndarray
    labels: np.ndarray
    feature_names: list[str]
    label_column: str
    rows: np.ndarray


def read_labelled_csv(
    path: str | os.PathLike, label_column: str | None = None, drop_missing: bool = False
) -> LabelledData:
    """Read a labelled CSV, refusing (DataError) anything that is not clean numeric data.

    With ``drop_missing`` rows with an empty or NaN cell are dropped, with a
    warning, instead of refused.
    """
    path = Path(path)
    header = _read_header(path)
    label = _label_column(path, header, label_column)
    features = [name for name in header if name != label]
    if not features:
        raise DataError(f"{path}: no feature columns besides the label column {label!r}")

    import pandas as pd

    dtypes: dict[str, Any] = {name: np.float32 for name in features}
    dtypes[label] = str
    # Only an empty cell is a missing label: "NA" may well be a class.
    na_values = {name: _NA for name in features}
    na_values[label] = [""]
    try:
        # Our own handle, closed even when the parser fails half-way; overflow to
        # inf in the float32 cast is reported below with its cell, not warned.
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = pd.read_csv(f, dtype=dtypes, keep_default_na=False, na_values=na_values)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: {_ragged_message(str(err), len(header))}") from None
    except ValueError:
        # A cell float32 cannot parse: find which, the slow way.
        raise _first_non_numeric(path, features) from None
    if len(frame) == 0:
        raise DataError(f"{path}: the header has no data rows below it")

    X = frame[features].to_numpy(dtype=np.float32)
    labels = frame[label].to_numpy(dtype=object)
    rows = np.arange(1, len(frame) + 1)
    del frame

    missing = np.isnan(X).any(axis=1) | _missing_labels(labels)
    if missing.any():
        _check_field_counts(path, len(header), np.flatnonzero(missing))
        if not drop_missing:
            r = int(np.flatnonzero(missing)[0])
            column = label if _missing_labels(labels[r : r + 1])[0] else features[_first(X[r])]
            raise DataError(
                f"{path}: missing value in column {column!r} at row {r + 1} "
                f"(line {_line_of(path, r)}); fill it in, or set drop_missing to drop such rows"
            )
        warnings.warn(
            f"{path}: dropped {int(missing.sum())} rows with missing values "
            f"(the first is row {int(np.flatnonzero(missing)[0]) + 1})",
            stacklevel=2,
        )
        keep = ~missing
        X, labels, rows = X[keep], labels[keep], rows[keep]
        if len(X) == 0:
            raise DataError(f"{path}: every row has a missing value")

    infinite = np.isinf(X)
    if infinite.any():
        r = int(np.flatnonzero(infinite.any(axis=1))[0])
        column = features[int(np.flatnonzero(infinite[r])[0])]
        raise DataError(
            f"{path}: infinite value in column {column!r} at row {rows[r]} "
            f"(line {_line_of(path, rows[r] - 1)}); values must be finite and within float32 range"
        )
    return LabelledData(X, labels, features, label, rows)


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


def _read_header(path: Path) -> list[str]:
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


def _first_non_numeric(path: Path, features: list[str]) -> DataError:
    import pandas as pd

    offset = 0
    with pd.read_csv(
        path, dtype=str, keep_default_na=False, na_values=_NA, chunksize=20_000
    ) as chunks:
        for chunk in chunks:
            for name in features:
                column = chunk[name]
                parsed = pd.to_numeric(column, errors="coerce")
                bad = parsed.isna().to_numpy() & column.notna().to_numpy()
                if bad.any():
                    r = offset + int(np.flatnonzero(bad)[0])
                    value = column.iloc[r - offset]
                    return DataError(
                        f"{path}: column {name!r}, row {r + 1} (line {_line_of(path, r)}): "
                        f"{value!r} is not a number; features must be numeric"
                    )
            offset += len(chunk)
    return DataError(f"{path}: a feature value is not a number")


def _missing_labels(labels: np.ndarray) -> np.ndarray:
    return np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in labels])


def _first(row: np.ndarray) -> int:
    return int(np.flatnonzero(np.isnan(row))[0])


def _ragged_message(parser_message: str, n_header: int) -> str:
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
