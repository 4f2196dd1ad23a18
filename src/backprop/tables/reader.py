"""Labelled CSV files in, feature columns and raw labels out: one reader, train and predict.

The layout is the article's: a header row, one example per row, numeric
features, and a label column (the first one unless named).  The label column
is kept as text; ``labels.py`` decides what its values mean.

pyarrow parses the file with every feature typed as a number, so the parser
itself stops at a cell that is not one and names its column and row, and it
hands over each row with too many or too few fields as it meets it.  A
missing cell arrives as a null and a value beyond float32 as just that, so
checking a block of rows is a few array operations.  Only the line of an
error message needs another look at the file, because blank lines and quoted
newlines make lines and rows differ; that scan runs only when a message is
being written.  Every problem is a :class:`DataError` with a one-line message.

Features are parsed as integers when they can be: pixel files hold integers,
and pyarrow parses those faster than floats.  The first cell that is a number
but not an integer restarts the read with float features.  Either way each
value is rounded once to float64, correctly, and once to float32, which are
the values pandas gave before.  Rows go block by block into float32 columns
sized by the file's newlines, so the data is in memory once plus a few
blocks; the predict reader holds one chunk, for files larger than memory.
"""

from __future__ import annotations

import csv
import functools
import math
import mmap
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from backprop.errors import DataError
from backprop.tables.memory import prefaulted_empty

SNIFF_BYTES = 64 * 1024

_NA = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "-nan", "#N/A"]
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT64_MAX = float(np.finfo(np.float64).max)
# pyarrow reads about 32 blocks ahead of the one it parses, so blocks stay small; a
# MiB is also about the fastest size (larger ones parse slower, out of the CPU's caches).
_BLOCK_BYTES = 2**20


@dataclass(frozen=True)
class LabelledData:
    """Features and raw labels read from a CSV.

    columns : one float32 array of shape (n_samples,) per feature.
    labels : (n_samples,) the label cells' text, an object array of str.
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


@dataclass(frozen=True)
class FeatureChunk:
    """Consecutive rows to predict.

    X : (n, n_features) float64, the columns in the model's order.
    labels : (n,) the label cells' text, or None when the CSV has no label column.
    first_row : 1-based data row number of the first row.
    bytes_read : how far into the file the reader is, for a progress bar (pyarrow
        reads up to some 32 MiB ahead of the rows it hands over); None if unknown.
    """

    X: np.ndarray
    labels: np.ndarray | None
    first_row: int
    bytes_read: int | None


def read_labelled_csv(
    path: str | os.PathLike, label_column: str | None = None, drop_missing: bool = False
) -> LabelledData:
    """Read a labelled CSV, refusing (DataError) anything that is not clean numeric data.

    With ``drop_missing`` rows with an empty or NA cell are dropped, with a
    warning, instead of refused.
    """
    path = Path(path)
    header = read_header(path)
    label = _label_column(path, header, label_column)
    newlines, integers = _survey(path)
    read = functools.partial(_read_all, path, header, label, newlines, drop_missing)
    try:
        columns, labels, rows, dropped = read(pa.int64() if integers else pa.float64())
    except _NotIntegers:
        columns, labels, rows, dropped = read(pa.float64())
    if len(dropped):
        warnings.warn(
            f"{path}: dropped {len(dropped)} rows with missing values "
            f"(the first is row {dropped[0]})",
            stacklevel=2,
        )
    features = [name for name in header if name != label]
    return LabelledData(columns, labels, features, label, rows)


def read_feature_chunks(
    path: str | os.PathLike,
    feature_names: list[str],
    label_column: str | None,
    chunk_rows: int = 10_000,
) -> Iterator[FeatureChunk]:
    """The rows of a CSV to predict, ``chunk_rows`` at a time; memory does not grow with the file.

    The header is checked against the model's features here and now (DataError);
    any other problem is raised when the chunk it is in is asked for.
    """
    path = Path(path)
    header = read_header(path)
    label = _match_columns(path, header, feature_names, label_column)
    return _feature_chunks(path, header, list(feature_names), label, chunk_rows)


# -- the header -----------------------------------------------------------------------


def read_header(path: str | os.PathLike) -> list[str]:
    """The column names, refusing (DataError) a file that cannot be a labelled CSV."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
            if b"\n" not in head and b"\r" not in head:
                head += f.readline()  # a header longer than the sniff
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a CSV file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    if not head.strip():
        raise DataError(f"{path}: the file is empty; expected a header row and data rows")
    packed = _compression(head)
    if packed is not None:
        kind, tool = packed
        raise DataError(
            f"{path}: is {kind}-compressed, not a CSV; decompress it first, or give the "
            f"decompressed stream: <({tool} {path})"
        )
    if b"\x00" in head:
        raise DataError(f"{path}: not a text file (it contains NUL bytes); expected a CSV")
    try:
        first_line = head.splitlines()[0].decode("utf-8-sig")
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


def _compression(head: bytes) -> tuple[str, str] | None:
    """(format, the command that prints it decompressed) of a compressed file's first bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip", "zcat"
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "bzip2", "bzcat"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz", "xzcat"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd", "zstdcat"
    if head.startswith(b"PK\x03\x04"):
        return "zip", "unzip -p"
    return None


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


def _match_columns(
    path: Path, header: list[str], feature_names: list[str], label: str | None
) -> str | None:
    """The label column if the header has it, once the model's features are all there, in
    any order, and nothing else is; else one line that lists every mismatch."""
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
    return label if has_label else None


def _names(names: list[str], show: int = 6) -> str:
    if len(names) <= show:
        return ", ".join(names)
    return f"{', '.join(names[:show])} and {len(names) - show} more"


# -- training: the whole file into float32 columns ----------------------------------------


class _NotIntegers(Exception):
    """A feature cell holds a number that is not an integer: read again, as floats."""


def _survey(path: Path) -> tuple[int, bool]:
    """How many newline bytes the file has (at least its number of data rows), and whether
    its features may be read as integers: not if an x follows the header, as pyarrow's
    integer parser takes 0x10 for 16 where its float parser, like pandas, refuses it."""
    with open(path, "rb") as f:
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(view, np.uint8)  # unmapped when the last view of it is freed
    step = 2**22
    starts = range(0, len(data), step)
    newlines = sum(int(np.count_nonzero(data[i : i + step] == 10)) for i in starts)
    body = max(view.find(b"\n"), 0)
    return newlines, view.find(b"x", body) < 0 and view.find(b"X", body) < 0


def _read_all(
    path: Path, header: list[str], label: str, capacity: int, drop_missing: bool,
    kind: pa.DataType,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Feature columns, labels, row numbers, and the numbers of the rows dropped."""
    features = [name for name in header if name != label]
    types = {name: kind for name in features} | {label: pa.string()}
    columns = _Columns(len(features), capacity)
    labels, dropped, seen = [], [], 0
    for batch in _read_ahead(_batches(path, header, types, _block_size(path))):
        X, nulls = _values(batch, features)
        text = _text(batch.column(label))
        missing = _check_training_rows(
            path, header, label, seen + 1, X, nulls, _blank(batch.column(label)), drop_missing
        )
        if missing is not None:
            dropped.append(seen + 1 + np.flatnonzero(missing))
            X, text = X[~missing], text[~missing]
        columns.append(X.T)
        labels.append(text)
        seen += batch.num_rows
    if seen == 0:
        raise DataError(f"{path}: the header has no data rows below it")
    gone = np.concatenate(dropped) if dropped else np.zeros(0, np.int64)
    if len(gone) == seen:
        raise DataError(f"{path}: every row has a missing value")
    rows = np.delete(np.arange(1, seen + 1), gone - 1)
    return columns.done(), np.concatenate(labels), rows, gone


class _Columns:
    """Float32 feature columns filled block by block: the rows of one (n_features, capacity)
    array whose pages are mapped up front (faulting them in one by one costs more than the
    copy)."""

    def __init__(self, n_features: int, capacity: int) -> None:
        self.values = prefaulted_empty((n_features, max(capacity, 1)), np.float32)
        self.n = 0

    def append(self, block: np.ndarray) -> None:
        """Add (n_features, m) values; float64 values are rounded to float32 here."""
        end = self.n + block.shape[1]
        if end > self.values.shape[1]:  # lines ending in a bare CR: no newlines counted
            grown = prefaulted_empty((len(self.values), 2 * end), np.float32)
            grown[:, : self.n] = self.values[:, : self.n]
            self.values = grown
        self.values[:, self.n : end] = block
        self.n = end

    def done(self) -> list[np.ndarray]:
        return list(self.values[:, : self.n])


def _check_training_rows(
    path: Path, header: list[str], label: str, first_row: int, X: np.ndarray,
    nulls: np.ndarray | None, empty: np.ndarray, drop_missing: bool,
) -> np.ndarray | None:  # fmt: skip
    """Refuse the first missing, non-numeric or out-of-range cell of a block, by row, then
    column (the label first).  With ``drop_missing`` return the rows with a missing cell,
    which go whatever else is in them (None: no such row)."""
    missing = _rows_with(nulls, empty if empty.any() else None)
    bad = _bad_cells(X, nulls, _FLOAT32_MAX)
    problems = _rows_with(bad) if drop_missing else _rows_with(bad, missing)
    if drop_missing and problems is not None and missing is not None:
        problems &= ~missing
    if problems is None or not problems.any():
        return missing
    r = int(np.argmax(problems))
    j, cell_missing = _first_cell(r, nulls, bad)
    row = first_row + r
    name = label if empty[r] else [n for n in header if n != label][j]
    line, fields = _locate(path, row)
    if empty[r] or cell_missing:
        raise DataError(
            f"{path}: missing value in column {name!r} at row {row} (line {line}); fill it in, "
            "or set drop_missing to drop such rows"
        )
    if np.isnan(X[r, j]):
        raise _not_a_number(path, name, row, line, _cell(fields, header.index(name)))
    if np.isfinite(X[r, j]):
        raise DataError(
            f"{path}: column {name!r}, row {row} (line {line}): {X[r, j]:g} is beyond the "
            f"range of the float32 features are kept in (+-{_FLOAT32_MAX:.3g}); rescale the "
            "column, e.g. divide it by a power of ten"
        )
    raise DataError(
        f"{path}: infinite value in column {name!r} at row {row} (line {line}); values must "
        "be finite"
    )


# -- predicting: chunk after chunk -------------------------------------------------------


def _feature_chunks(
    path: Path, header: list[str], features: list[str], label: str | None, chunk_rows: int
) -> Iterator[FeatureChunk]:
    types = {name: pa.float64() for name in features}
    if label is not None:
        types[label] = pa.string()
    pending: list[tuple[np.ndarray, np.ndarray | None]] = []
    first_row = next_row = 1
    with pa.OSFile(str(path)) as source:
        blocks = _batches(path, header, types, _block_size(path, chunk_rows), source)
        for batch in _read_ahead(blocks):
            X, nulls = _values(batch, features)
            _check_predict_rows(path, header, features, next_row, X, nulls)
            pending.append((X, _text(batch.column(label)) if label else None))
            next_row += len(X)
            while next_row - first_row >= chunk_rows:
                (X, labels), pending = _split(pending, chunk_rows)
                yield FeatureChunk(X, labels, first_row, source.tell())
                first_row += chunk_rows
        if pending:
            (X, labels), _ = _split(pending, next_row - first_row)
            yield FeatureChunk(X, labels, first_row, source.tell())


def _split(pending: list, n: int) -> tuple[tuple[np.ndarray, np.ndarray | None], list]:
    """The first ``n`` rows of the pending blocks, C-ordered, and what is left of them."""
    X = prefaulted_empty((sum(len(x) for x, _ in pending), pending[0][0].shape[1]), np.float64)
    np.concatenate([x for x, _ in pending], out=X)
    labels = None if pending[0][1] is None else np.concatenate([t for _, t in pending])
    rest = [(X[n:], None if labels is None else labels[n:])] if len(X) > n else []
    return (X[:n], None if labels is None else labels[:n]), rest


def _check_predict_rows(
    path: Path, header: list[str], features: list[str], first_row: int, X: np.ndarray,
    nulls: np.ndarray | None,
) -> None:  # fmt: skip
    """Refuse the first missing, non-numeric or infinite cell of a block, by row then column."""
    bad = _bad_cells(X, nulls, _FLOAT64_MAX)
    problems = _rows_with(nulls, bad)
    if problems is None or not problems.any():
        return
    r = int(np.argmax(problems))
    j, missing = _first_cell(r, nulls, bad)
    name, row = features[j], first_row + r
    if missing:
        line, _ = _locate(path, row)
        raise DataError(
            f"{path}: missing value in column {name!r} at row {row} (line {line}); fill it in"
        )
    if np.isnan(X[r, j]):
        line, fields = _locate(path, row)
        raise _not_a_number(path, name, row, line, _cell(fields, header.index(name)))
    raise DataError(
        f"{path}: column {name!r}, row {row}: {X[r, j]} is not a finite number; features must "
        "be finite"
    )


# -- pyarrow ------------------------------------------------------------------------------


def _batches(
    path: Path, header: list[str], types: dict[str, pa.DataType], block_size: int,
    source: pa.NativeFile | None = None,
) -> Iterator[pa.RecordBatch]:  # fmt: skip
    """The CSV's rows (read from ``source`` if given) a block at a time, typed as ``types``
    says; the first problem pyarrow meets is raised as a DataError."""
    refused, blank = [], []  # rows pyarrow could not split into the header's columns
    started = False

    def refuse(row):  # pyarrow swallows what is raised in here: keep the row, then stop
        if not row.text.strip():  # only spaces: a blank line, as pandas had it
            blank.append(row.number)
            return "skip"
        refused.append(row)
        return "error"

    try:
        reader = pacsv.open_csv(
            str(path) if source is None else source,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=refuse),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=list(types),
                null_values=_NA,
                strings_can_be_null=False,
            ),
        )
        started = True
        for batch in reader:
            if batch.num_rows:
                yield batch
    except pa.ArrowInvalid as err:
        if not started and "Empty CSV file" in str(err):
            return  # the header, without a line end, is the whole file: no rows
        raise _parse_error(path, header, err, refused, blank) from None


def _read_ahead(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The same blocks, the next one parsed on another thread while the caller works on this
    one: pyarrow parses, and NumPy copies, without holding the GIL, so two cores share the
    work that ``use_threads=False`` (needed for row numbers) leaves to one."""
    with ThreadPoolExecutor(1) as pool:
        following = pool.submit(next, batches, None)
        while (batch := following.result()) is not None:
            following = pool.submit(next, batches, None)
            yield batch


# "In CSV column #2: Row #3: CSV conversion error to double: invalid value 'abc'".  Single
# threaded, pyarrow counts rows from the header (row 1), skipping empty lines but not lines
# of spaces; the column is the header's.
_CONVERSION = re.compile(
    r"In CSV column #(\d+): Row #(\d+): CSV conversion error to (\w+)(?:: invalid value '(.*)')?",
    re.DOTALL,
)


def _parse_error(
    path: Path, header: list[str], err: pa.ArrowInvalid, refused: list, blank: list[int]
) -> Exception:
    """The DataError for what stopped pyarrow; _NotIntegers for a number not an integer.
    ``blank``: pyarrow's numbers of the rows of spaces it skipped."""

    def data_row(number: int) -> int:
        return number - 1 - sum(n < number for n in blank)

    if refused:
        row = refused[0]
        line, _ = _locate(path, data_row(row.number))
        return DataError(
            f"{path}: line {line} has {row.actual_columns} fields but the header has "
            f"{row.expected_columns}; every row needs one value per column"
        )
    found = _CONVERSION.match(str(err))
    if found is None:
        return DataError(f"{path}: cannot parse the CSV ({str(err).strip().splitlines()[-1]})")
    column, row, target, value = int(found[1]), data_row(int(found[2])), found[3], found[4] or ""
    if target == "string":  # only invalid UTF-8 stops text
        return DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8")
    if target == "int64" and _is_number(value):  # no error after all: no need for its line
        return _NotIntegers()
    line, fields = _locate(path, row)  # raises the DataError of a file that is not UTF-8
    text = _cell(fields, column)
    if "\x00" in text:
        return DataError(f"{path}: not a text file (it contains NUL bytes); expected a CSV")
    return _not_a_number(path, header[column], row, line, text)


def _values(batch: pa.RecordBatch, features: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """The features of a block as one (m, n_features) array, Fortran-ordered (the fastest
    to build from columns), NaN where a cell is missing, and where that is (None: nowhere)."""
    table = batch.select(features)
    try:
        return np.asarray(table.to_tensor(row_major=False)), None
    except pa.ArrowTypeError:  # there is a null: a missing cell
        X = np.asarray(table.to_tensor(null_to_nan=True, row_major=False))
    nulls = np.zeros(X.shape, bool)
    for j, column in enumerate(table.columns):
        if column.null_count:
            mask = pc.cast(column.is_null(), pa.int8())  # bytes: bits have no NumPy view
            nulls[:, j] = np.frombuffer(mask.buffers()[1], np.int8)[: len(mask)]
    return X, nulls


def _bad_cells(X: np.ndarray, nulls: np.ndarray | None, limit: float) -> np.ndarray | None:
    """(m, n_features) True where a value is NaN but not missing, or beyond ``limit``
    (None: nowhere).  Integers are always within it."""
    if X.dtype.kind != "f" or (X.max() <= limit and X.min() >= -limit):  # NaN fails both
        return None
    bad = ~(np.abs(X) <= limit)
    if nulls is not None:
        bad &= ~nulls
    return bad if bad.any() else None


def _blank(cells: pa.Array) -> np.ndarray:
    """(m,) True where a text cell is empty or only spaces: a label left out."""
    length = pc.utf8_length(pc.utf8_trim_whitespace(cells))
    if pc.min(length).as_py() != 0:
        return np.zeros(len(cells), bool)
    return np.array(pc.equal(length, 0).to_pylist(), bool)


def _text(cells: pa.Array) -> np.ndarray:
    """Text cells as an object array of str.  (pyarrow's ``to_numpy`` would import pandas.)"""
    return np.array(cells.to_pylist(), dtype=object)


def _first_cell(r: int, nulls: np.ndarray | None, bad: np.ndarray | None) -> tuple[int, bool]:
    """(feature index, whether missing) of the first missing or bad cell of row ``r``."""
    cells = _rows_with(*(c[r][:, None] for c in (nulls, bad) if c is not None))
    if cells is None:  # only the label is missing
        return 0, False
    j = int(np.argmax(cells))
    return j, nulls is not None and bool(nulls[r, j])


def _rows_with(*cells: np.ndarray | None) -> np.ndarray | None:
    """(m,) True for the rows with a True in any of ``cells``, (m, k) or (m,); None if all
    are None."""
    rows = None
    for c in cells:
        if c is not None:
            hit = c if c.ndim == 1 else c.any(axis=1)
            rows = hit if rows is None else rows | hit
    return rows


def _block_size(path: Path, rows: int | None = None) -> int:
    """Bytes pyarrow parses at a time: about ``rows`` rows, if given, up to a MiB, and room
    for sixteen of the longest first lines (a row must fit in a block)."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    lines = head.split(b"\n")
    size = _BLOCK_BYTES
    if rows is not None and len(lines) > 2:
        per_row = (len(head) - len(lines[0])) / (len(lines) - 1)
        size = min(size, int(rows * per_row))
    return max(size, 16 * max(len(line) + 1 for line in lines))


# -- the cold path: what a message needs from the file's lines ------------------------------


def _not_a_number(path: Path, name: str, row: int, line: int, text: str) -> DataError:
    return DataError(
        f"{path}: column {name!r}, row {row} (line {line}): {text!r} is not a number; "
        "features must be numeric"
    )


def _cell(fields: list[str], j: int) -> str:
    return fields[j] if j < len(fields) else ""


def _is_number(text: str) -> bool:
    try:
        return not math.isnan(float(text))
    except ValueError:
        return False


def _locate(path: Path, row: int) -> tuple[int, list[str]]:
    """The line where 1-based data row ``row`` starts, and its fields.

    Only a scan can tell: blank lines (or lines of spaces) are not rows, and a
    quoted field may hold newlines.  This runs only to write an error message.
    """
    with open(path, "rb") as f:
        reader = csv.reader(_decoded(path, f))
        seen = 0
        try:
            next(reader, None)  # the header
            start = reader.line_num + 1
            for fields in reader:
                if len(fields) > 1 or (fields and fields[0].strip()):  # a blank line is no row
                    seen += 1
                    if seen == row:
                        return start, fields
                start = reader.line_num + 1
        except csv.Error:  # a stray CR, say: then the row is a good guess of the line
            pass
    return row + 1, []


def _decoded(path: Path, lines: Iterable[bytes]) -> Iterator[str]:
    for n, line in enumerate(lines):
        try:
            yield line.decode("utf-8-sig" if n == 0 else "utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
