"""Stage 4: score the trained model on the test split.

Writes into ``reports_dir``: ``metrics.json`` (test accuracy, loss, macro F1
and per-class precision/recall/F1), ``confusion.csv`` (one ``actual,
predicted`` row per test example, for DVC's confusion template) and
``figures/`` (the confusion matrix; for square images also the first layer's
weights and the misclassified examples), replaced as a whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from backprop.io import atomic_write_bytes, atomic_write_dir, load_model
from backprop.metrics import classification_report, confusion_matrix
from backprop.network import one_hot
from backprop.stages.preprocess import load_prepared

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion.csv"
FIGURES_DIR = "figures"


def evaluate_model(
    model_dir: str | os.PathLike, prepared_dir: str | os.PathLike, reports_dir: str | os.PathLike
) -> dict[str, Any]:
    """Test metrics of the model in ``model_dir``; writes the reports and returns the metrics."""
    from backprop import plots

    network, meta = load_model(model_dir)
    prepared = load_prepared(prepared_dir)
    classes = meta["classes"]
    X, y = np.ascontiguousarray(prepared.X["test"]), prepared.y["test"]
    loss, outputs = network.evaluate(X, one_hot(y, len(classes), network.dtype))
    predicted = outputs.argmax(axis=1)
    report = classification_report(y, predicted, classes)
    metrics = {"test": {"loss": float(loss), **report}}

    reports_dir = Path(reports_dir)
    atomic_write_bytes(reports_dir / METRICS_FILE, (json.dumps(metrics, indent=2) + "\n").encode())
    lines = ["actual,predicted"] + [
        f"{_csv_cell(classes[a])},{_csv_cell(classes[p])}" for a, p in zip(y, predicted)
    ]
    atomic_write_bytes(reports_dir / CONFUSION_FILE, ("\n".join(lines) + "\n").encode())

    figures = {
        "confusion.png": plots.confusion(confusion_matrix(y, predicted, len(classes)), classes)
    }
    if plots.image_side(X.shape[1]):
        figures["first_layer.png"] = plots.first_layer_weights(network.weights[0])
        figures["misclassified.png"] = plots.misclassified(X, y, predicted, classes)
    atomic_write_dir(reports_dir / FIGURES_DIR, figures)
    return metrics


def _csv_cell(value: Any) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
