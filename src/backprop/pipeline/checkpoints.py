"""Training checkpoints: the state after every epoch, to resume from bit for bit.

One ``.npz`` per run of settings on data, under ``outputs/checkpoints/`` of the
project (git-ignored, not a DVC output), named by the train stage's key (the
data's SHA-256 and every setting of the stages up to training, see
``registry.stage_key``), so the DVC stage and the Hydra app find each other's
checkpoints, and other settings never do.  It is removed once the model is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backprop.errors import ModelFileError
from backprop.nn.training import EpochMetrics, History, TrainingState
from backprop.pipeline.files import atomic_write_bytes, npz_bytes, read_npz

CHECKPOINT_VERSION = 1


def checkpoint_bytes(state: TrainingState, extra: Mapping[str, Any]) -> bytes:
    """A :class:`TrainingState` (and ``extra``, JSON) as one ``.npz``.

    One file, replaced atomically, so there is never a checkpoint half of one epoch and
    half of the next; its metadata carries a SHA-256 of the arrays, checked on load.
    """
    arrays = {f"param_{i}": p for i, p in enumerate(state.parameters)}
    if state.best_parameters is not None:
        arrays.update({f"best_{i}": p for i, p in enumerate(state.best_parameters)})
    arrays.update({f"optim_{name}": np.asarray(v) for name, v in state.optimizer.items()})
    history = state.history
    meta = {
        "format_version": CHECKPOINT_VERSION,
        "epoch": state.epoch,
        "n_parameters": len(state.parameters),
        "has_best": state.best_parameters is not None,
        "optimizer_keys": sorted(state.optimizer),
        "rng": state.rng,
        "best_loss": None if math.isinf(state.best_loss) else state.best_loss,
        "waited": state.waited,
        "history": {
            "epochs": [m.as_dict() for m in history.epochs],
            "best_epoch": history.best_epoch,
            "stopped_early": history.stopped_early,
        },
        "arrays_sha256": _arrays_digest(arrays),
        "extra": dict(extra),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    return npz_bytes(arrays)


def save_checkpoint(
    path: str | os.PathLike, state: TrainingState, extra: Mapping[str, Any]
) -> None:
    # Not fsync'd: it is replaced every epoch, and a killed process loses nothing written.
    atomic_write_bytes(path, checkpoint_bytes(state, extra), durable=False, what="checkpoint")


def load_checkpoint(path: str | os.PathLike) -> tuple[TrainingState, dict[str, Any]]:
    """(TrainingState, extra) from a checkpoint file; ModelFileError, naming it, if damaged."""
    path = Path(path)
    arrays = read_npz(path)
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        intact = not arrays or meta["arrays_sha256"] == _arrays_digest(arrays)
        state = _training_state(meta, arrays) if intact else None
    except (KeyError, TypeError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        raise ModelFileError(
            f"{path}: not a valid checkpoint ({type(err).__name__}: {err})"
        ) from None
    if state is None:
        raise ModelFileError(f"{path}: checksum mismatch; the checkpoint is damaged")
    return state, meta["extra"]


def _training_state(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> TrainingState:
    n = meta["n_parameters"]
    history = History(
        epochs=[EpochMetrics(**m) for m in meta["history"]["epochs"]],
        best_epoch=meta["history"]["best_epoch"],
        stopped_early=meta["history"]["stopped_early"],
    )
    return TrainingState(
        epoch=meta["epoch"],
        parameters=[arrays[f"param_{i}"] for i in range(n)],
        optimizer={k: arrays[f"optim_{k}"] for k in meta["optimizer_keys"]},
        rng=meta["rng"],
        history=history,
        best_loss=math.inf if meta["best_loss"] is None else meta["best_loss"],
        best_parameters=[arrays[f"best_{i}"] for i in range(n)] if meta["has_best"] else None,
        waited=meta["waited"],
    )


def _arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode() + b"\0")
        digest.update(array.tobytes())
    return digest.hexdigest()


CHECKPOINTS = "outputs/checkpoints"  # under the project root, git-ignored, not a DVC output


def checkpoint_path(root: Path, key: str) -> Path:
    """Where training keeps the checkpoint of the run with stage key ``key``."""
    return root / CHECKPOINTS / f"{key}.npz"


def recorded_run_id(path: Path | None) -> str | None:
    """The MLflow run that wrote the checkpoint at ``path`` (None if there is no checkpoint)."""
    if path is None or not path.exists():
        return None
    return load_checkpoint(path)[1].get("mlflow_run_id")
