"""Stratified train / validation / test split.

Each class is split on its own, in the requested proportions, so every split
sees every class in about the same share as the whole data set.  The result
depends only on the labels, the fractions and the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backprop.errors import DataError
from backprop.tables.config import PreprocessConfig


@dataclass(frozen=True)
class Split:
    """Row indices (sorted, int64) of each part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_split(
    y: np.ndarray, config: PreprocessConfig, classes: Sequence[Any] | None = None,
    *, test_fraction: float | None = None,
) -> Split:  # fmt: skip
    """Split rows with class indices ``y`` (n,) into train, validation and test.

    Within class c of n_c rows, round(n_c * fraction) rows go to validation and
    to test (at least one each when its fraction is > 0) and the rest to
    training, which keeps at least one.  ``classes`` names the classes in errors.
    ``test_fraction`` replaces the config's (0: the test set is another file's).
    """
    val_fraction = config.val_fraction
    if test_fraction is None:
        test_fraction = config.test_fraction
    rng = np.random.default_rng(config.seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    for c in range(int(y.max()) + 1 if len(y) else 0):
        members = np.flatnonzero(y == c)
        n = len(members)
        if n == 0:
            continue
        if n < needed:
            name = classes[c] if classes is not None else c
            raise DataError(
                f"class {name!r} has {n} row{'s' if n != 1 else ''}; a stratified split into "
                f"{_parts(val_fraction, test_fraction)} needs at least {needed} rows of every "
                "class: add rows, drop the class, or lower val_fraction/test_fraction"
            )
        n_val = max(round(n * val_fraction), 1) if val_fraction > 0 else 0
        n_test = max(round(n * test_fraction), 1) if test_fraction > 0 else 0
        while n_val + n_test > n - 1:  # keep one training row
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        shuffled = rng.permutation(members)
        parts[0].append(shuffled[n_val + n_test :])
        parts[1].append(shuffled[:n_val])
        parts[2].append(shuffled[n_val : n_val + n_test])
    train, val, test = (np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts)
    return Split(train.astype(np.int64), val.astype(np.int64), test.astype(np.int64))


def _parts(val_fraction: float, test_fraction: float) -> str:
    names = ["train"]
    if val_fraction > 0:
        names.append("validation")
    if test_fraction > 0:
        names.append("test")
    return "/".join(names)
