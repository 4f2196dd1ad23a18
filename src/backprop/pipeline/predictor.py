"""A saved model folder turned into predictions: raw features in, original labels out.

The model folder written by the train stage carries the scaler and the class
list, so :class:`Predictor` applies the same min-max scaling (and clip rule) as
preprocessing and maps class indices back to the labels of the CSV.  Columns
are matched by name when the input has the training feature names, else by
position.  Output: a ``predicted`` column (the predicted class, as the CSV's
labels are written; not ``label``, the name of the true labels' column) and one
``proba_<class>`` column per class.  No MLflow here: ``tracking/pyfunc.py``
wraps this for MLflow's pyfunc.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from backprop.errors import InputError
from backprop.pipeline.model_files import load_model
from backprop.tables.scaling import MinMaxScaler

PREDICTED = "predicted"  # the column of the predicted class, before the probabilities


class Predictor:
    """A saved model folder, ready to turn raw feature rows into labels."""

    def __init__(self, model_dir: str):
        self.network, meta = load_model(model_dir)
        extra = meta.get("extra") or {}
        self.classes: list[Any] = meta["classes"]
        self.feature_names: list[str] = extra["feature_names"]
        self.label_column: str | None = extra.get("label_column")
        self.scaler = MinMaxScaler.from_dict(extra["scaler"])
        self.weights_sha256: str = meta["weights_sha256"]

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """The raw feature matrix (n, n_features) of ``frame``, in training order."""
        columns = [str(c) for c in frame.columns]
        if self.label_column in columns:
            frame = frame.drop(columns=[self.label_column])
            columns = [str(c) for c in frame.columns]
        if set(self.feature_names) <= set(columns):
            frame = frame[self.feature_names]
        elif len(columns) != len(self.feature_names):
            missing = [name for name in self.feature_names if name not in columns]
            raise InputError(
                f"expected {len(self.feature_names)} feature columns, got {len(columns)}; "
                f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )
        try:
            return frame.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f"feature values must be numbers ({err})") from None

    def scale(self, X: np.ndarray) -> np.ndarray:
        """Raw feature rows (n, n_features) scaled as preprocess scaled the training rows:
        float32, whatever the network's dtype, so that a row the network was trained or
        evaluated on gives the same probabilities here."""
        return self.scaler.transform(X, dtype="float32")

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_classes) of raw feature rows (n, n_features)."""
        if not np.isfinite(X).all():
            raise InputError("feature values must be finite numbers")
        return self.network.predict_proba(self.scale(X))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        proba = self.predict_matrix(self.features(frame))
        predicted = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        out = pd.DataFrame({PREDICTED: predicted})
        for i, c in enumerate(self.classes):
            out[f"proba_{c}"] = proba[:, i].astype(np.float64)
        return out
