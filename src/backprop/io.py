"""Files: atomic writes, deterministic ``.npz`` archives, model save and load.

A saved model is a folder with ``weights.npz`` (``W0, b0, W1, b1, ...``) and
``model.json`` describing it (layer sizes, activation, output, loss, dtype,
class labels, the SHA-256 of the weights), so prediction needs no training
config.  The archive is byte-for-byte a function of the weights: no
timestamps, so equal weights give equal hashes (for DVC and for tests).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backprop.network import MLP

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "model.json"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry dates keep the archive reproducible


# mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual modes.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


class ModelFileError(ValueError):
    """A model folder that is missing, damaged or inconsistent."""


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str = "wb", durable: bool = True, **open_args: Any
) -> Iterator[Any]:
    """A file to write ``path`` through: readers see the old file or the whole new one.

    The writes go to a temporary sibling that replaces ``path`` only when the block
    ends without an exception; otherwise it is removed.  ``durable``: fsync it first,
    so that it also survives a power cut (a killed process needs no fsync).
    The sibling's name carries the writer's pid: :func:`remove_stale_temporaries`
    clears those of writers that were killed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never part."""
    with atomic_file(path, durable=durable) as f:
        f.write(data)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that killed writers left in ``folder``.

    They are named ``.<target>.<pid>.<random>.tmp`` (or ``.old``); those whose pid is
    not a running process are removed.  Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        parts = entry.name.split(".")
        if not (entry.name.startswith(".") and parts[-1] in ("tmp", "old") and len(parts) >= 5):
            continue
        pid = parts[-3]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed) across processes."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_dir(directory: str | os.PathLike, files: Mapping[str, bytes]) -> Path:
    """Replace ``directory`` by a folder holding exactly ``files`` (name -> bytes).

    The files are written into a temporary sibling folder that is then renamed
    into place, so readers see the old set of files or the new set, never a
    mixture; anything else that was in ``directory`` goes.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(directory.parent)
    staging = Path(
        tempfile.mkdtemp(dir=directory.parent, prefix=_temp_prefix(directory), suffix=".tmp")
    )
    try:
        staging.chmod(DIR_MODE)
        for name, data in files.items():
            with open(staging / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if directory.exists():
            old = Path(
                tempfile.mkdtemp(
                    dir=directory.parent, prefix=_temp_prefix(directory), suffix=".old"
                )
            )
            os.replace(directory, old / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode("utf-8")


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive of ``arrays`` (readable by ``np.load``) with no timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            entry.external_attr = 0o644 << 16
            body = io.BytesIO()
            # C- or Fortran-ordered as it is: the header records which.
            np.lib.format.write_array(body, np.asanyarray(array), allow_pickle=False)
            archive.writestr(entry, body.getvalue())
    return buffer.getvalue()


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write_bytes(path, npz_bytes(arrays))


def read_npz(path: str | os.PathLike, data: bytes | None = None) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file at ``path`` (or of its bytes ``data``), without pickle."""
    try:
        source = io.BytesIO(data) if data is not None else path
        with np.load(source, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ModelFileError(f"{path}: not a readable .npz archive ({err})") from None


def save_model(
    directory: str | os.PathLike,
    network: MLP,
    classes: list[Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``network`` to ``directory`` (created if needed); returns the folder.

    ``classes`` are the original labels of the output units, in order;
    ``extra`` is stored under ``"extra"`` in the metadata (a scaler, say).
    """
    directory = Path(directory)
    arrays = {}
    for i, (w, b) in enumerate(zip(network.weights, network.biases)):
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    data = npz_bytes(arrays)
    if classes is not None and len(classes) != network.layer_sizes[-1]:
        raise ValueError(f"{len(classes)} class labels for {network.layer_sizes[-1]} output units")
    metadata = {
        "format_version": FORMAT_VERSION,
        "layer_sizes": network.layer_sizes,
        "activation": network.activation,
        "output": network.output,
        "loss": network.loss_name,
        "dtype": network.dtype.name,
        "classes": list(classes) if classes is not None else None,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "extra": dict(extra or {}),
    }
    atomic_write_bytes(directory / WEIGHTS_FILE, data)
    # Metadata last: a folder whose metadata exists has its weights too.
    atomic_write_text(directory / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")
    return directory


def load_model(directory: str | os.PathLike) -> tuple[MLP, dict[str, Any]]:
    """The network saved in ``directory`` and its metadata.

    Raises ModelFileError, naming the file, when a file is missing, damaged, or
    disagrees with the metadata.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / METADATA_FILE, directory / WEIGHTS_FILE
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(
            f"{meta_path}: file not found; is {directory} a saved model?"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{meta_path}: not valid JSON ({err})") from None
    required = ("layer_sizes", "activation", "output", "loss", "dtype")
    missing = [key for key in required if key not in metadata]
    if missing:
        raise ModelFileError(f"{meta_path}: missing keys {', '.join(missing)}")
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{weights_path}: file not found") from None
    expected = metadata.get("weights_sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ModelFileError(
            f"{weights_path}: checksum does not match {meta_path.name}; the file is damaged "
            "or from another model"
        )
    arrays = read_npz(weights_path, data)
    try:
        network = MLP(
            metadata["layer_sizes"],
            activation=metadata["activation"],
            output=metadata["output"],
            loss=metadata["loss"],
            dtype=metadata["dtype"],
        )
    except ValueError as err:
        raise ModelFileError(f"{meta_path}: {err}") from None
    for i, (w, b) in enumerate(zip(network.weights, network.biases)):
        for name, target in ((f"W{i}", w), (f"b{i}", b)):
            if name not in arrays:
                raise ModelFileError(f"{weights_path}: array {name} missing")
            if arrays[name].shape != target.shape:
                raise ModelFileError(
                    f"{weights_path}: {name} has shape {arrays[name].shape} but "
                    f"{meta_path.name} says layer_sizes {network.layer_sizes}, "
                    f"which needs {target.shape}"
                )
            target[...] = arrays[name]
    extra_arrays = sorted(set(arrays) - {f"{p}{i}" for i in range(network.n_layers) for p in "Wb"})
    if extra_arrays:
        raise ModelFileError(
            f"{weights_path}: unexpected arrays {', '.join(extra_arrays)} for "
            f"layer_sizes {network.layer_sizes}"
        )
    return network, metadata


CHECKPOINT_VERSION = 1


def checkpoint_bytes(state, extra: Mapping[str, Any]) -> bytes:
    """A :class:`~backprop.training.TrainingState` (and ``extra``, JSON) as one ``.npz``.

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


def save_checkpoint(path: str | os.PathLike, state, extra: Mapping[str, Any]) -> None:
    # Not fsync'd: it is replaced every epoch, and a killed process loses nothing written.
    atomic_write_bytes(path, checkpoint_bytes(state, extra), durable=False)


def load_checkpoint(path: str | os.PathLike):
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


def _training_state(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]):
    from backprop.training import EpochMetrics, History, TrainingState

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
