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
import re
import select
import shutil
import stat
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

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
    FIFO, ``>(gzip > out.gz)``): written in place, never replaced by a rename.  A name of an
    open descriptor (``/dev/stdout``, ``/dev/fd/3``) is one even when it leads to a regular
    file: that file is the shell's redirection, not ours to replace."""
    if _descriptor(path) is not None or os.path.abspath(path).startswith("/proc/"):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


_DESCRIPTOR_NAMES = re.compile(
    r"/dev/std(?P<std>in|out|err)|/dev/fd/(?P<fd>\d+)"
    r"|/proc/(?P<pid>self|thread-self|\d+)/fd/(?P<n>\d+)"
)


def _descriptor(path: str | os.PathLike) -> int | None:
    """The descriptor of this process that ``path`` names (``/dev/stdout``: 1, ``/dev/fd/3``,
    ``/proc/self/fd/3``, or a symlink to one of these), else None."""
    name = os.path.abspath(path)
    for _ in range(40):  # the kernel's limit of symlinks in a row
        match = _DESCRIPTOR_NAMES.fullmatch(name)
        if match:
            if match["std"]:
                return ("in", "out", "err").index(match["std"])
            if match["fd"]:
                return int(match["fd"])
            if match["pid"] in ("self", "thread-self", str(os.getpid())):
                return int(match["n"])
            return None
        if not os.path.islink(name):
            return None
        name = os.path.normpath(os.path.join(os.path.dirname(name), os.readlink(name)))
    return None


def _open_descriptor(path: Path) -> int | None:
    """The descriptor ``path`` names (see :func:`_descriptor`), which must be open; None if
    it names none."""
    fd = _descriptor(path)
    if fd is not None:
        try:
            os.fstat(fd)
        except OSError:
            raise OutputError(
                f"{path}: descriptor {fd} is not open; give a file name, or open it in the shell"
            ) from None
    return fd


def _open_stream(path: Path, mode: str, **open_args: Any) -> IO[Any]:
    """``path``, a device or pipe, opened to write in place.  A descriptor's name is the
    descriptor itself, duplicated as the shell's ``>&1`` does: its offset and append mode
    are kept and nothing is truncated (``-o /dev/stdout >> log.csv`` appends)."""
    fd = _open_descriptor(path)
    if fd is None:
        return open(path, mode, **open_args)
    for stream in (sys.stdout, sys.stderr):  # what Python holds for it goes out first
        with contextlib.suppress(Exception):
            stream.flush()
    return os.fdopen(os.dup(fd), mode, **open_args)


class WholeWrites:
    """A binary file whose ``write`` writes every byte or raises.

    An unbuffered file (``sys.stdout.buffer`` under ``PYTHONUNBUFFERED=1``) may write a
    part and return the count: on a nearly full disk the rest is lost without an error,
    since whoever writes (pyarrow) does not look at the count.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            n = self.file.write(view)
            if n is None:  # a non-blocking descriptor that is full: wait for room
                select.select([], [self.file], [])
                continue
            if n == 0:
                raise OSError(errno.EIO, f"wrote 0 of {len(view)} bytes")
            view = view[n:]
        return total

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


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
    through a file, a folder without write permission, a descriptor that is not open.
    A missing parent folder is fine: writing creates it."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"{path}: is a folder; give a file name, such as {path / 'predictions.csv'}"
        )
    _open_descriptor(path)  # a descriptor named must be open
    if is_stream(path):
        return path
    _check_parent(path, path.parent, "give another path")
    return path


def _check_parent(path: Path, folder: Path, todo: str) -> None:
    """``folder`` (``path``'s, or ``path``) exists as a folder we may write in, or is missing
    below one: a file on the way or no permission is refused."""
    parent = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, not a folder; {todo}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: no permission to write in {parent}; {todo}")


@contextlib.contextmanager
def writing(
    path: str | os.PathLike, what: str | None = None, stream: bool | None = None
) -> Iterator[None]:
    """OSErrors a user can act on, writing ``path``, as one-line OutputErrors.  ``what``
    names the previous output that stays as it was (default: the file's name); for a
    ``stream`` (default: whether ``path`` is one) what went out before is incomplete."""
    try:
        yield
    except OSError as err:
        path = Path(path)
        if stream if stream is not None else is_stream(path):
            kept = "what was written to it before is incomplete"
        elif os.path.lexists(path):
            kept = f"the previous {what or path.name} is unchanged"
        else:
            kept = "nothing was written"
        reason = {
            errno.ENOSPC: f"no space left on the device; {kept}; free some space and run again",
            errno.EDQUOT: f"disk quota exceeded; {kept}; free some space and run again",
            errno.EACCES: "permission denied; give a path you can write to",
            errno.EPERM: "permission denied; give a path you can write to",
            errno.EROFS: "the file system is read-only; give a path you can write to",
            errno.EISDIR: "is a folder; give a file name",
            errno.ENOTDIR: "a part of the path is a file, not a folder; give another path",
            errno.EEXIST: "a part of the path is a file, not a folder; give another path",
            errno.EBUSY: "is a mount point or in use, so it cannot be replaced; give a path "
            "inside a folder of its own",
        }.get(err.errno)
        if reason is None:
            raise
        raise OutputError(f"{path}: {reason}") from None


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike,
    mode: str = "wb",
    durable: bool = True,
    what: str | None = None,
    **open_args: Any,
) -> Iterator[Any]:
    """A file to write ``path`` through: readers see the old file or the whole new one.

    The writes go to a temporary sibling that replaces ``path`` only when the block
    ends without an exception; otherwise it is removed.  ``durable``: fsync it first,
    so that it also survives a power cut (a killed process needs no fsync).
    The sibling's name carries the writer's pid: :func:`remove_stale_temporaries`
    clears those of writers that were killed.  A device, pipe or socket (``/dev/null``,
    a FIFO, ``/dev/stdout``) is written in place: replacing it would break whoever reads
    it.  Errors the user can act on (no space, no permission) are OutputErrors naming
    ``what`` is left as it was.
    """
    path = Path(path)
    if is_stream(path):
        with writing(path, what, stream=True), _open_stream(path, mode, **open_args) as f:
            yield f
        return
    fd, tmp = _temporary_sibling(path, what)
    try:
        with writing(path, what):
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


def _temporary_sibling(path: Path, what: str | None) -> tuple[int, str]:
    """A new private file next to ``path``, to be renamed over it: (descriptor, path)."""
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        return tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, durable: bool = True, what: str | None = None
) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never part."""
    with atomic_file(path, durable=durable, what=what) as f:
        f.write(data)


def atomic_write_files(files: Mapping[str | os.PathLike, bytes], what: str) -> None:
    """Write several files (path -> bytes) that belong together, ``what`` (a model: its
    weights and their metadata), each as :func:`atomic_write_bytes` does; none replaces
    its previous file before all are written, so a full disk leaves every one as it was."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            fd, tmp = _temporary_sibling(path, what)
            staged.append((tmp, path))
            with writing(path, what):
                os.fchmod(fd, FILE_MODE)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
        for tmp, path in staged:
            with writing(path, what):
                os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


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
        if not pid.isdigit() or process_alive(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Is process ``pid`` running (another user's counts as running)?"""
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
    directory: str | os.PathLike,
    ours: Iterable[str] | None,
    what: str = "outputs",
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Refuse, before any work, a folder the command cannot write its ``what`` into.

    Every output folder must be a folder (or missing, below folders) that can be written
    in.  ``ours``: the folder is replaced whole, so it may hold only files of these names
    (what the command writes there), none of the command's ``inputs``, and must not be the
    working folder, hold it, or be a mount point.  None: files are written into it one by
    one and whatever else it holds stays.
    """
    directory = Path(directory)
    todo = f"give a folder for the {what}"
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"{directory}: is a file, not a folder; {todo}")
    _check_parent(directory, directory if ours is None else directory.parent, todo)
    if ours is None or not directory.is_dir():
        return directory
    whole = f"and would be replaced whole; give a folder of its own for the {what}"
    if Path.cwd().resolve().is_relative_to(directory.resolve()):
        raise OutputError(f"{directory}: is the working folder or holds it, {whole}")
    for path in inputs:
        if Path(path).resolve().is_relative_to(directory.resolve()):
            raise OutputError(f"{directory}: holds the input {path}, {whole}")
    if os.path.ismount(directory):
        raise OutputError(
            f"{directory}: is a mount point, which cannot be replaced; give a folder inside "
            f"it for the {what}, such as {directory / 'out'}"
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
    directory: str | os.PathLike,
    files: Mapping[str, bytes],
    ours: Iterable[str] = (),
    what: str = "outputs",
) -> Path:
    """Replace ``directory`` by a folder holding exactly ``files`` (name -> bytes).

    The files are written into a temporary sibling folder that is then renamed
    into place, so readers see the old set of files or the new set, never a
    mixture.  A folder holding anything but ``files`` and ``ours`` (other names the
    command writes there) is refused (:func:`check_output_folder`).
    """
    directory = check_output_folder(directory, {*files, *ours}, what)
    kept = f"{directory.name} folder"
    with writing(directory, kept):
        directory.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(directory.parent)
        staging = Path(
            tempfile.mkdtemp(dir=directory.parent, prefix=_temp_prefix(directory), suffix=".tmp")
        )
    try:
        with writing(directory, kept):
            staging.chmod(DIR_MODE)
            for name, data in files.items():
                with open(staging / name, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            if not directory.exists():
                os.replace(staging, directory)
                return directory
            old = Path(
                tempfile.mkdtemp(
                    dir=directory.parent, prefix=_temp_prefix(directory), suffix=".old"
                )
            )
            os.replace(directory, old / directory.name)
            try:
                os.replace(staging, directory)
            except BaseException:
                os.replace(old / directory.name, directory)  # the previous folder stays
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def data_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a data file, or of a folder of MNIST's idx files: of the four files it
    reads (names and SHA-256), whatever else the folder holds."""
    if not Path(path).is_dir():
        return file_digest(path)
    from backprop.tables.idx import folder_digest  # only where a folder is the data

    return folder_digest(path)


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
