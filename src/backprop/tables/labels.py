"""Class labels as the CSV had them, and as the indices a network is trained on.

A label column is read as text, so that nothing is lost before its kind is
known.  Labels that all read as numbers are numbers (``"3"`` and ``"3.0"`` are
the class 3), sorted as numbers; otherwise, or when one is written with a
leading zero (``02139``: a code, not a quantity), they are strings, sorted as
strings.  Integers are read exactly, not through a double: two labels that
differ past the 16th digit stay two classes, and integers beyond int64 (or
beyond a double's exact integers, among labels that are not all integers)
are strings, as written.  The sorted list of classes is stored with the
model, so the same text maps to the same index when the model is used.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Class indices (n,) int64 into ``classes``, the sorted distinct labels.

    Labels that all read as numbers are numbers (``"3"`` and ``"3.0"`` are the
    class 3); otherwise they are strings, sorted as strings.
    """
    values = np.asarray(labels, dtype=object)
    numbers = _as_numbers(values)
    if numbers is None:
        numbers = np.array([str(v).strip() for v in values], dtype=object)
    classes, indices = np.unique(numbers, return_inverse=True)
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
    if numeric:  # 3 == 3.0 and they hash alike: "3.0" finds the class 3, exactly
        lookup: dict[Any, int] = {c: i for i, c in enumerate(classes)}
        key = _number
    else:
        lookup = {str(c): i for i, c in enumerate(classes)}

        def key(v: Any) -> Any:
            return str(v).strip()

    found = {v: lookup.get(key(v), -1) for v in set(values)}  # a few distinct labels
    return np.array([found[v] for v in values], dtype=np.int64)


_LEADING_ZERO = re.compile(r"\s*[+-]?0\d")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_INT64 = 2**63
_EXACT_IN_DOUBLE = 2**53


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """The labels as numbers: int64 when they are all integers (``3.0`` too), else float64;
    None when they must stay text: some are not numbers, or are codes written with a
    leading zero (``02139``), or a number would not come back as written (an integer
    beyond int64, or beyond a double's exact integers among fractions)."""
    distinct = set(values)  # each distinct label is read once
    if any(isinstance(v, str) and _LEADING_ZERO.match(v) for v in distinct):
        return None
    number = {v: _number(v) for v in distinct}
    if any(n is None for n in number.values()):
        return None
    if all(isinstance(n, int) or n.is_integer() for n in number.values()):
        number = {v: int(n) for v, n in number.items()}
        if any(abs(n) >= _INT64 for n in number.values()):
            return None
        return np.array([number[v] for v in values], dtype=np.int64)
    if any(isinstance(n, int) and abs(n) > _EXACT_IN_DOUBLE for n in number.values()):
        return None
    return np.array([number[v] for v in values], dtype=np.float64)


def _number(value: Any) -> int | float | None:
    """A label's number: an int, exactly, for an integer written as one; else a finite float;
    None for text that is not a number."""
    try:
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            return int(value)
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
