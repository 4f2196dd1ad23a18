"""Stage 4: score the trained model on the test split.

Writes into ``reports``: ``metrics.json``, the headline numbers that
``dvc exp show`` puts side by side, under the names the MLflow run gives them
(``test_accuracy``, ``test_loss``, ``test_macro_f1``; ``kept_val_accuracy``
and ``kept_val_loss`` of the weights kept; ``epochs`` trained, ``kept_epoch``),
``per_class.csv`` (precision, recall, F1 and support per class, a DVC plot),
``confusion.csv`` (one ``actual,predicted`` row per test example, for DVC's
confusion template) and ``figures/`` (the confusion matrix; for square images
also the first layer's weights and the misclassified examples), replaced as a
whole.
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
PER_CLASS_FILE = "per_class.csv"
CONFUSION_FILE = "confusion.csv"
FIGURES_DIR = "figures"
FIGURES = ("confusion.png", "first_layer.png", "misclassified.png")


@dataclass(frozen=True)
class Evaluated:
    metrics: dict[str, Any]  # as in metrics.json
    per_class: list[dict[str, Any]]  # rows of per_class.csv

    @property
    def test(self) -> dict[str, float]:
        """The test split's metrics: ``test_accuracy``, ``test_loss``, ``test_macro_f1``."""
        return {k: v for k, v in self.metrics.items() if k.startswith("test_")}

    @property
    def summary(self) -> str:
        m = self.metrics
        return (
            f"test accuracy {m['test_accuracy']:.4f}, loss {m['test_loss']:.4f}, "
            f"macro F1 {m['test_macro_f1']:.4f}"
        )


def evaluate(
    settings: Settings | None, *, model: Path, prepared: Path, reports: Path,
    log: RunLog = NO_LOG, progress: bool = True,
) -> Evaluated:  # fmt: skip
    """The stage: test metrics of the model in ``model``; writes the reports."""
    evaluated = evaluate_model(model, prepared, reports)
    reports = Path(reports)
    written = [reports / name for name in (METRICS_FILE, PER_CLASS_FILE, CONFUSION_FILE)]
    log.evaluated(evaluated.metrics, evaluated.per_class, written, reports / FIGURES_DIR)
    return evaluated


def evaluate_model(model: Path, prepared: Path, reports: Path) -> Evaluated:
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
    metrics = headline(float(loss), report, meta["extra"].get("training"))
    per_class = [{"class": label, **scores} for label, scores in report["per_class"].items()]

    atomic_write_bytes(reports / METRICS_FILE, (json.dumps(metrics, indent=2) + "\n").encode())
    atomic_write_bytes(reports / PER_CLASS_FILE, _csv(per_class).encode())
    lines = ["actual,predicted"] + [
        f"{_csv_cell(classes[a])},{_csv_cell(classes[p])}" for a, p in zip(y, predicted)
    ]
    atomic_write_bytes(reports / CONFUSION_FILE, ("\n".join(lines) + "\n").encode())

    figures = {
        "confusion.png": plots.confusion(confusion_matrix(y, predicted, len(classes)), classes)
    }
    if plots.image_side(X.shape[1]):
        figures["first_layer.png"] = plots.first_layer_weights(network.weights[0])
        # a softmax's outputs are probabilities (sigmoid outputs with squared error are not)
        softmax = np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3)
        probability = outputs[np.arange(len(predicted)), predicted] if softmax else None
        figures["misclassified.png"] = plots.misclassified(X, y, predicted, classes,
                                                           probability=probability)  # fmt: skip
    atomic_write_dir(reports / FIGURES_DIR, figures, ours=FIGURES, what="figures")
    return Evaluated(metrics, per_class)


def headline(
    test_loss: float, report: dict[str, Any], training: dict[str, Any] | None
) -> dict[str, Any]:
    """metrics.json: a few numbers, the same in every run and named as in the MLflow run, so
    that ``dvc exp show`` and the MLflow UI have the same columns.

    ``kept_val_*`` score the validation split with the weights kept (early stopping may keep
    an earlier epoch than the last); ``training`` is what train recorded in model.json.
    """
    metrics: dict[str, Any] = {
        "test_accuracy": report["accuracy"],
        "test_loss": test_loss,
        "test_macro_f1": report["macro_f1"],
    }
    if training:
        if training.get("val_accuracy") is not None:
            metrics["kept_val_accuracy"] = training["val_accuracy"]
            metrics["kept_val_loss"] = training["val_loss"]
        metrics["epochs"] = training["epochs"]
        metrics["kept_epoch"] = training["kept_epoch"]
    return metrics


def _csv(rows: list[dict[str, Any]]) -> str:
    lines = [",".join(rows[0])] if rows else []
    lines += [",".join(_csv_cell(value) for value in row.values()) for row in rows]
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
