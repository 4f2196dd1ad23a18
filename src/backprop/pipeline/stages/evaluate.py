"""Stage 4: score the trained model on the test split.

Writes into ``reports``: ``metrics.json`` (test accuracy, loss, macro F1 and
per-class precision/recall/F1), ``confusion.csv`` (one ``actual,predicted``
row per test example, for DVC's confusion template) and ``figures/`` (the
confusion matrix; for square images also the first layer's weights and the
misclassified examples), replaced as a whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backprop.nn.metrics import classification_report, confusion_matrix
from backprop.nn.network import one_hot
from backprop.pipeline import plots
from backprop.pipeline.files import atomic_write_bytes, atomic_write_dir, check_output_folder
from backprop.pipeline.model_files import load_model
from backprop.pipeline.prepared import load_prepared
from backprop.pipeline.runlog import NO_LOG, RunLog

if TYPE_CHECKING:
    from backprop.pipeline.settings import Settings

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion.csv"
FIGURES_DIR = "figures"
FIGURES = ("confusion.png", "first_layer.png", "misclassified.png")


@dataclass(frozen=True)
class Evaluated:
    metrics: dict[str, Any]

    @property
    def test(self) -> dict[str, Any]:
        return self.metrics["test"]

    @property
    def summary(self) -> str:
        t = self.test
        return (
            f"test accuracy {t['accuracy']:.4f}, loss {t['loss']:.4f}, macro F1 {t['macro_f1']:.4f}"
        )


def evaluate(
    settings: Settings | None, *, model: Path, prepared: Path, reports: Path,
    log: RunLog = NO_LOG, progress: bool = True,
) -> Evaluated:  # fmt: skip
    """The stage: test metrics of the model in ``model``; writes the reports."""
    metrics = evaluate_model(model, prepared, reports)
    reports = Path(reports)
    log.evaluated(
        metrics, [reports / METRICS_FILE, reports / CONFUSION_FILE], reports / FIGURES_DIR
    )
    return Evaluated(metrics)


def evaluate_model(model: Path, prepared: Path, reports: Path) -> dict[str, Any]:
    """Test metrics of the model in ``model``; writes the reports and returns the metrics."""
    reports = Path(reports)
    check_output_folder(reports, None, "reports")  # before the work, and before any report
    check_output_folder(reports / FIGURES_DIR, FIGURES, "figures")
    network, meta = load_model(model)
    data = load_prepared(prepared)
    classes = meta["classes"]
    X, y = np.ascontiguousarray(data.X["test"]), data.y["test"]
    loss, outputs = network.evaluate(X, one_hot(y, len(classes), network.dtype))
    predicted = outputs.argmax(axis=1)
    report = classification_report(y, predicted, classes)
    metrics = {"test": {"loss": float(loss), **report}}

    atomic_write_bytes(reports / METRICS_FILE, (json.dumps(metrics, indent=2) + "\n").encode())
    lines = ["actual,predicted"] + [
        f"{_csv_cell(classes[a])},{_csv_cell(classes[p])}" for a, p in zip(y, predicted)
    ]
    atomic_write_bytes(reports / CONFUSION_FILE, ("\n".join(lines) + "\n").encode())

    figures = {
        "confusion.png": plots.confusion(confusion_matrix(y, predicted, len(classes)), classes)
    }
    if plots.image_side(X.shape[1]):
        figures["first_layer.png"] = plots.first_layer_weights(network.weights[0])
        figures["misclassified.png"] = plots.misclassified(X, y, predicted, classes)
    atomic_write_dir(reports / FIGURES_DIR, figures, ours=FIGURES, what="figures")
    return metrics


def _csv_cell(value: Any) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
