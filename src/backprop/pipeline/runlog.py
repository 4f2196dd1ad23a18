"""What a stage tells whoever records the run: the interface, and the log that records nothing.

The stages do not know MLflow.  A front door hands each tracked stage a
:class:`RunLog` (``tracking.Tracker``, one per MLflow run), which is also the
training loop's per-epoch callback; without tracking it gets :data:`NO_LOG`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from backprop.nn.training import EpochMetrics, History, TrainingState
    from backprop.pipeline.prepared import Prepared
    from backprop.pipeline.settings import Settings


class TrainingStopped(Exception):
    """Raised by a run log's epoch callback to end training on purpose (a pruner's verdict).

    Not an error: the run ends KILLED with ``tags`` (e.g. ``optuna.state=PRUNED``,
    ``pruned_epoch``) and its checkpoint is kept; ``run_id`` is the run it ended.
    """

    def __init__(self, reason: str, epoch: int, tags: dict[str, str]) -> None:
        super().__init__(reason)
        self.reason, self.epoch, self.tags = reason, epoch, tags
        self.run_id: str | None = None


class RunLog(Protocol):
    run_id: str | None

    def __call__(self, metrics: EpochMetrics) -> None:
        """One epoch's metrics (the training loop's callback)."""

    def training_started(self, settings: Settings, source: dict[str, Any] | None) -> None:
        """The settings and the data (``source.json``: path, SHA-256, rows) of the run."""

    def resumed_from(self, state: TrainingState) -> None:
        """Training goes on from a checkpoint of this run after ``state.epoch`` epochs."""

    def model_trained(
        self, model: Path, reports: list[Path], prepared: Prepared, history: History
    ) -> None:
        """The model folder is written, with the training reports."""

    def evaluated(
        self, metrics: dict[str, Any], per_class: list[dict[str, Any]], reports: list[Path],
        figures: Path,
    ) -> None:  # fmt: skip
        """The headline metrics (metrics.json), the per-class table, the evaluation's
        reports and figures."""


class _NoLog:
    run_id = None

    def __call__(self, metrics: EpochMetrics) -> None:
        pass

    def training_started(self, settings: Settings, source: dict[str, Any] | None) -> None:
        pass

    def resumed_from(self, state: TrainingState) -> None:
        pass

    def model_trained(
        self, model: Path, reports: list[Path], prepared: Prepared, history: History
    ) -> None:
        pass

    def evaluated(
        self, metrics: dict[str, Any], per_class: list[dict[str, Any]], reports: list[Path],
        figures: Path,
    ) -> None:  # fmt: skip
        pass


NO_LOG: RunLog = _NoLog()
