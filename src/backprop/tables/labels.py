"""Class labels as the CSV had them, and as the indices a network is trained on.

A label column is read as text, so that nothing is lost before its kind is
known.  Labels that all read as numbers are numbers (``"3"`` and ``"3.0"`` are
the class 3), sorted as numbers; otherwise, or when one is written with a
leading zero (``02139``: a code, not a quantity), they are strings, sorted as
strings.  The sorted list of classes is stored with the model, so the same
text maps to the same index when the model is used.
"""

from __future__ import annotations

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


_LEADING_ZERO = re.compile(r"\s*[+-]?0\d")


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """The labels as numbers, or None: some are not numbers, or are codes written with a
    leading zero (``02139``), which must come back as written."""
    if any(isinstance(v, str) and _LEADING_ZERO.match(v) for v in values):
        return None
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
