"""Stage 1: the embedded default data set, scikit-learn's handwritten digits, as a CSV.

1,797 images of 8 x 8 pixels with values 0..16 and 10 classes, bundled with
scikit-learn (no download), written in the article's layout:
``label,pixel0,...,pixel63``.  The bytes are the same on every run.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backprop.pipeline.files import atomic_write_bytes
from backprop.pipeline.runlog import NO_LOG, RunLog

if TYPE_CHECKING:
    from backprop.pipeline.settings import Settings


@dataclass(frozen=True)
class Written:
    path: Path
    what: str = "scikit-learn's handwritten digits (1797 rows, 8 x 8)"

    @property
    def summary(self) -> str:
        return f"wrote {self.what} to {self.path}"


def csv_bytes(labels: np.ndarray, pixels: np.ndarray) -> bytes:
    """Whole-number ``labels`` (n,) and ``pixels`` (n, k) in the article's layout."""
    table = np.column_stack([labels.astype(np.int64), pixels.astype(np.int64)])
    header = ",".join(["label"] + [f"pixel{i}" for i in range(pixels.shape[1])])
    out = io.StringIO()
    np.savetxt(out, table, fmt="%d", delimiter=",", header=header, comments="")
    return out.getvalue().encode("ascii")


def digits_csv_bytes() -> bytes:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return csv_bytes(digits.target, digits.data)  # whole numbers 0..16 stored as floats


def write_digits(path: str | os.PathLike) -> Path:
    """Write the digits CSV to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, digits_csv_bytes())
    return path


def digits(
    settings: Settings | None, *, csv: Path, log: RunLog = NO_LOG, progress: bool = True
) -> Written:
    """The stage: write the digits to ``csv``."""
    return Written(write_digits(csv))
