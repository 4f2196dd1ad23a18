"""Stage 2: read a labelled CSV, split it, fit min-max scaling on the training part.

Writes the prepared folder described in ``pipeline/prepared.py``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backprop.errors import DataError
from backprop.pipeline.files import check_output_folder, file_digest, readable_file
from backprop.pipeline.prepared import PREPARED_FILES, SPLITS, Prepared, write_prepared
from backprop.pipeline.runlog import NO_LOG, RunLog
from backprop.tables.config import PreprocessConfig
from backprop.tables.labels import encode_labels
from backprop.tables.reader import read_labelled_csv
from backprop.tables.scaling import MinMaxScaler
from backprop.tables.split import stratified_split

if TYPE_CHECKING:
    from backprop.pipeline.settings import Settings


def prepare(
    input_csv: str | os.PathLike,
    config: PreprocessConfig,
    label_column: str | None = None,
    drop_missing: bool = False,
) -> Prepared:
    """Read, split and scale, in memory."""
    data = read_labelled_csv(input_csv, label_column, drop_missing)
    y, classes = encode_labels(data.labels)
    if len(classes) < 2:
        raise DataError(
            f"{input_csv}: column {data.label_column!r} holds a single class ({classes[0]!r}); "
            "classification needs at least 2"
        )
    try:
        split = stratified_split(y, config, classes)
    except DataError as err:
        raise DataError(f"{input_csv}: {err}") from None
    parts = {name: getattr(split, name) for name in SPLITS}
    X = {name: data.matrix(idx) for name, idx in parts.items()}  # the one copy of the data
    scaler = MinMaxScaler.fit(X["train"], config.scaling, config.clip)
    for part in X.values():
        scaler.transform_in_place(part)
    return Prepared(
        X=X,
        y={name: y[idx] for name, idx in parts.items()},
        rows={name: data.rows[idx] for name, idx in parts.items()},
        scaler=scaler,
        feature_names=data.feature_names,
        classes=classes,
        label_column=data.label_column,
    )


@dataclass(frozen=True)
class Preprocessed:
    csv: Path
    prepared: Path
    rows: dict[str, int]
    features: int
    classes: list[Any]
    scaling: str

    @property
    def summary(self) -> str:
        r = self.rows
        return (
            f"{self.csv}: {r['train']} train / {r['val']} validation / {r['test']} test rows, "
            f"{self.features} features, {len(self.classes)} classes, {self.scaling} min-max "
            f"scaling -> {self.prepared}"
        )


def preprocess(
    settings: Settings, *, csv: Path, prepared: Path, log: RunLog = NO_LOG, progress: bool = True
) -> Preprocessed:
    """The stage: read, split and scale ``csv``, then replace the folder ``prepared``."""
    check_output_folder(prepared, PREPARED_FILES, "prepared splits", [csv])  # before the work
    data = settings.data
    with readable_file(csv) as local:  # a pipe is read once, into a temporary file
        result = prepare(local, settings.preprocess, data.label_column, data.drop_missing)
        digest = file_digest(local)
    source = {
        "path": Path(csv).as_posix(),
        "sha256": digest,
        "rows": sum(len(y) for y in result.y.values()),
    }
    write_prepared(dataclasses.replace(result, source=source), prepared)
    return Preprocessed(
        csv=Path(csv),
        prepared=Path(prepared),
        rows={name: len(result.y[name]) for name in SPLITS},
        features=len(result.feature_names),
        classes=result.classes,
        scaling=settings.preprocess.scaling,
    )
