"""Min-max scaling of features to [0, 1], fitted on the training split only.

``per_feature`` (the default) scales each column by its own minimum and
maximum; ``global`` reproduces the article's single ``(X - X.min()) / (X.max()
- X.min())`` over the whole matrix.  A column (or matrix) whose minimum equals
its maximum carries no information and maps to 0 instead of dividing by zero.

Rule for values outside the training range (validation, test, prediction):
with ``clip=True`` (the default) they are clipped to [0, 1], so an unseen
extreme pixel cannot drive a unit further than any training value did; with
``clip=False`` they extrapolate linearly beyond [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = {
    "per_feature": "each column by its own minimum and maximum",
    "global": "one minimum and maximum over the whole matrix, as in the article",
}


@dataclass(frozen=True)
class MinMaxScaler:
    """A fitted scaler: ``x' = (x - data_min) / (data_max - data_min)``.

    data_min, data_max : float64 arrays of shape (n_features,); in ``global``
    mode every entry holds the same value.
    """

    mode: str
    data_min: np.ndarray
    data_max: np.ndarray
    clip: bool = True

    @classmethod
    def fit(cls, X: np.ndarray, mode: str = "per_feature", clip: bool = True) -> MinMaxScaler:
        """Fit to X of shape (n_samples, n_features)."""
        if mode not in MODES:
            raise ValueError(f"unknown scaling mode {mode!r}; choose one of: {', '.join(MODES)}")
        if len(X) == 0:
            raise ValueError("cannot fit a scaler to zero rows")
        if mode == "per_feature":
            lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        else:
            lo = np.full(X.shape[1], X.min(), dtype=np.float64)
            hi = np.full(X.shape[1], X.max(), dtype=np.float64)
        return cls(mode, lo, hi, clip)

    @property
    def n_features(self) -> int:
        return len(self.data_min)

    def transform(self, X: np.ndarray, dtype: str = "float32") -> np.ndarray:
        """Scaled copy of X (n_samples, n_features) in ``dtype``.

        Cast first and scaled in ``dtype``, as preprocess scales, so that the same row
        gives the same bits through both.  A finite value beyond ``dtype``'s range (1e39
        in float32) is scaled in float64 instead: it lies outside the training range,
        and scaled it is an ordinary number (1.0 when clipped).
        """
        with np.errstate(over="ignore"):
            out = X.astype(dtype)
        overflow = np.isinf(out) & np.isfinite(X)
        with np.errstate(invalid="ignore", over="ignore"):  # those cells are redone below
            self.transform_in_place(out)
        if overflow.any():
            i, j = np.nonzero(overflow)
            span = self.data_max[j] - self.data_min[j]
            value = (X[i, j] - self.data_min[j]) / np.where(span == 0, np.inf, span)
            out[i, j] = np.clip(value, 0, 1) if self.clip else value
        return out

    def transform_in_place(self, X: np.ndarray) -> np.ndarray:
        """Scale X (n_samples, n_features), a float array, in place; returns X."""
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"the scaler was fitted on {self.n_features} features; got shape {X.shape}"
            )
        span = self.data_max - self.data_min
        constant = span == 0
        # A constant column maps to 0: scale by 1 / span where span > 0, by 0 elsewhere.
        factor = np.where(constant, 0.0, 1.0 / np.where(constant, 1.0, span)).astype(X.dtype)
        X -= self.data_min.astype(X.dtype)
        X *= factor
        if self.clip:
            np.clip(X, 0, 1, out=X)
        return X

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "clip": self.clip,
            "data_min": self.data_min.tolist(),
            "data_max": self.data_max.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MinMaxScaler:
        lo = np.asarray(d["data_min"], dtype=np.float64)
        hi = np.asarray(d["data_max"], dtype=np.float64)
        if lo.shape != hi.shape or lo.ndim != 1:
            raise ValueError("data_min and data_max must be lists of the same length")
        if d["mode"] not in MODES:
            raise ValueError(f"unknown scaling mode {d['mode']!r}")
        return cls(d["mode"], lo, hi, bool(d.get("clip", True)))
