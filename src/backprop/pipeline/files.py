"""Files: atomic writes, deterministic ``.npz`` archives, digests, locks.

Every output of the pipeline is written through here, so a reader (or the next
``dvc repro``) sees the old file or the whole new one, never a part: the bytes
go to a temporary sibling that replaces the target by rename.  ``.npz``
archives carry no timestamps, so equal arrays give equal bytes and equal hashes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backprop.errors import ConfigError, ModelFileError, OutputError, UserError

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed entry dates keep the archive reproducible


# mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual modes.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


def is_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a device, a pipe or a socket (``/dev/null``, ``/dev/stdout``, a
    FIFO, ``>(gzip > out.gz)``): written in place, never replaced by a rename."""
    if os.path.abspath(path).startswith(("/dev/", "/proc/")):
        return True  # /dev/stdout may lead to a regular file: still not ours to replace
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except OSError:
        return False


@contextlib.contextmanager
def readable_file(path: str | os.PathLike) -> Iterator[Path]:
    """``path`` as a file that can be read more than once.

    A regular file is itself.  A stream (``<(zcat x.csv.gz)``, a named pipe) can be read
    only once, and reading a CSV takes several passes (the header, the rows, a bad
    row's line): it is copied once into a temporary file, and errors name ``path``.
    """
    path = Path(path)
    if not is_stream(path) or not path.exists():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="backprop-input-") as tmp:
        copy = Path(tmp) / "input.csv"
        with writing(copy, "input"), open(path, "rb") as source, open(copy, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        try:
            yield copy
        except UserError as err:
            if isinstance(err, ConfigError) or str(copy) not in str(err):
                raise
            raise type(err)(str(err).replace(str(copy), str(path))) from None


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a file target that cannot be written: a folder, a path
    through a file, a folder without write permission.  A missing parent folder is fine:
    writing creates it."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"{path}: is a folder; give a file name, such as {path / 'predictions.csv'}"
        )
    if is_stream(path):
        return path
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, not a folder; give another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: no permission to write in {parent}; give another path")
    return path


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str | None = None) -> Iterator[None]:
    """OSErrors a user can act on, writing ``path``, as one-line OutputErrors.  ``what``
    names the previous output that stays as it was (default: the file's name)."""
    try:
        yield
    except OSError as err:
        path = Path(path)
        kept = f"the previous {what or path.name} (if any) is unchanged"
        reason = {
            errno.ENOSPC: f"no space left on the device; {kept}; free some space and run again",
            errno.EDQUOT: f"disk quota exceeded; {kept}; free some space and run again",
            errno.EACCES: "permission denied; give a path you can write to",
            errno.EPERM: "permission denied; give a path you can write to",
            errno.EROFS: "the file system is read-only; give a path you can write to",
            errno.EISDIR: "is a folder; give a file name",
            errno.ENOTDIR: "a part of the path is a file, not a folder; give another path",
            errno.EEXIST: "a part of the path is a file, not a folder; give another path",
        }.get(err.errno)
        if reason is None:
            raise
        raise OutputError(f"{path}: {reason}") from None


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, mode: str = "wb", durable: bool = True, **open_args: Any
) -> Iterator[Any]:
    """A file to write ``path`` through: readers see the old file or the whole new one.

    The writes go to a temporary sibling that replaces ``path`` only when the block
    ends without an exception; otherwise it is removed.  ``durable``: fsync it first,
    so that it also survives a power cut (a killed process needs no fsync).
    The sibling's name carries the writer's pid: :func:`remove_stale_temporaries`
    clears those of writers that were killed.  A device, pipe or socket (``/dev/null``,
    a FIFO) is written in place: replacing it would break whoever reads it.
    Errors the user can act on (no space, no permission) are OutputErrors.
    """
    path = Path(path)
    if is_stream(path):
        with writing(path), open(path, mode, **open_args) as f:
            yield f
        return
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with writing(path):
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


def check_output_folder(
    directory: str | os.PathLike, ours: Iterable[str], what: str = "outputs"
) -> Path:
    """Refuse to replace a folder that holds anything but files named in ``ours`` (what the
    command writes there), or that holds the working folder: it would be deleted whole."""
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return directory
    if not directory.is_dir():
        raise OutputError(f"{directory}: is a file, not a folder; give a folder for the {what}")
    if Path.cwd().resolve().is_relative_to(directory.resolve()):
        raise OutputError(
            f"{directory}: is the working folder or holds it, and would be replaced whole; "
            f"give a folder of its own for the {what}"
        )
    ours = set(ours)
    for entry in sorted(directory.iterdir()):
        # (a DVC cache may link the files in: a symlink of one of our names is ours)
        if entry.name not in ours or entry.is_dir():
            raise OutputError(
                f"{directory}: holds {entry.name!r}, which this command did not write, and "
                f"would be replaced whole; give a new or empty folder for the {what}"
            )
    return directory


def atomic_write_dir(
    directory: str | os.PathLike, files: Mapping[str, bytes], ours: Iterable[str] = ()
) -> Path:
    """Replace ``directory`` by a folder holding exactly ``files`` (name -> bytes).

    The files are written into a temporary sibling folder that is then renamed
    into place, so readers see the old set of files or the new set, never a
    mixture.  A folder holding anything but ``files`` and ``ours`` (other names the
    command writes there) is refused (:func:`check_output_folder`).
    """
    directory = check_output_folder(directory, {*files, *ours})
    with writing(directory, f"{directory.name} folder"):
        directory.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(directory.parent)
        staging = Path(
            tempfile.mkdtemp(dir=directory.parent, prefix=_temp_prefix(directory), suffix=".tmp")
        )
    try:
        staging.chmod(DIR_MODE)
        with writing(directory, f"{directory.name} folder"):
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
