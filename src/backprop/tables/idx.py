"""MNIST's own files: the idx format, read straight into arrays.

MNIST ships as four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), usually gzipped.  Each is a
big-endian header, then unsigned bytes:

- images: magic 2051 (``00 00 08 03``: unsigned bytes, 3 dimensions), the image count,
  rows (28), columns (28), then count x 28 x 28 pixels 0-255 row by row;
- labels: magic 2049 (``00 00 08 01``, 1 dimension), the count, then one byte 0-9 each.

A folder is accepted with the names as published, with a ``.`` for the last ``-``
(``train-images.idx3-ubyte``, as some copies name them), gzipped or not.  Everything
that does not hold is one line naming the file and what to do (:class:`DataError`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from backprop.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SIDE = 28

# The four files by role, as MNIST names them (without .gz).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the gzipped files as published (the mirrors of yann.lecun.com/exdb/mnist that
# torchvision and TensorFlow download from serve these same bytes).
PUBLISHED_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}
PUBLISHED_SIZES = {
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
}

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxFile:
    """One file as read: where, its SHA-256 (of the bytes on disk), whether they are the
    published file's."""

    role: str
    path: Path
    sha256: str

    @property
    def published(self) -> bool:
        return PUBLISHED_SHA256.get(self.path.name) == self.sha256

    def record(self) -> dict[str, object]:
        return {"path": self.path.as_posix(), "sha256": self.sha256, "published": self.published}


@dataclass(frozen=True)
class MnistArrays:
    """The four files' contents: images (n, 784) uint8, labels (n,) uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    files: tuple[IdxFile, ...]

    @property
    def all_published(self) -> bool:
        return all(f.published for f in self.files)

    @property
    def digest(self) -> str:
        """:func:`folder_digest` of the folder read, from the digests taken reading it."""
        return _digest_of((f.sha256, f.path) for f in self.files)

    def path(self, role: str) -> Path:
        """The file read for ``role`` (``train_labels``...)."""
        return next(f.path for f in self.files if f.role == role)


def find_mnist_file(folder: Path, role: str) -> Path:
    """The file of ``role`` in ``folder``: ``.gz`` first, then the plain file, under the
    published name or its ``.idx`` variant."""
    stem = MNIST_FILES[role]
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte
    candidates = [f"{stem}.gz", stem, f"{dotted}.gz", dotted]
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"{folder}: no {stem}[.gz] in it (MNIST's {role.replace('_', ' ')}); put MNIST's four "
        "idx files there, or fetch them with `backprop mnist-download "
        f"{_shell(folder)}`"
    )


def _shell(path: Path) -> str:
    text = str(path)
    return f"'{text}'" if any(c in text for c in " \t'\"$()&;|<>*?") else text


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None
    return digest.hexdigest()


def _damaged(path: Path, err: BaseException) -> DataError:
    return DataError(
        f"{path}: a damaged gzip file ({err}); download it again "
        "(`backprop mnist-download` checks what it fetches)"
    )


def _read_at_most(stream: BinaryIO, size: int) -> bytearray:
    """Up to ``size`` bytes, in blocks: never more memory than what the file holds."""
    out = bytearray()
    while len(out) < size:
        block = stream.read(min(size - len(out), 1 << 24))
        if not block:
            break
        out += block
    return out


def _read_idx(path: Path, magic: int, dims: int) -> tuple[tuple[int, ...], bytearray, str]:
    """The header's dimensions, the items' bytes and the SHA-256 of the file on disk.  Only
    as many bytes as the header announces (and one more, to tell extra bytes) are ever
    decompressed: a file whose gzip stream unpacks to far more is refused, not unpacked."""
    digest = _sha256(path)
    zipped = False
    try:
        with open(path, "rb") as raw:
            zipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if zipped else raw  # type: ignore[assignment]
            head = _read_at_most(stream, 4 + 4 * dims)
            shape = _header(path, bytes(head), magic, dims)
            item = int(np.prod(shape[1:], dtype=np.int64)) if dims > 1 else 1
            expected = shape[0] * item
            body = _read_at_most(stream, expected + 1)
    except OSError as err:
        if zipped and not isinstance(err, FileNotFoundError | PermissionError):
            raise _damaged(path, err) from None
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None
    except (EOFError, zlib.error) as err:
        raise _damaged(path, err) from None
    if len(body) != expected:
        size = len(head) + len(body)
        shown = f"{size} bytes" if len(body) <= expected else f"more than {size - 1} bytes"
        kind = f"images of {SIDE} x {SIDE}" if dims == 3 else "labels"
        raise DataError(
            f"{path}: its header says {shape[0]} {kind} ({len(head) + expected} bytes), "
            f"the file holds {shown}: {_shape_problem(len(body), expected)}; download it again"
        )
    return shape, body, digest


def _header(path: Path, data: bytes, magic: int, dims: int) -> tuple[int, ...]:
    size = 4 + 4 * dims
    if len(data) < size:
        raise DataError(
            f"{path}: {len(data)} bytes, shorter than an idx header ({size} bytes); "
            "not an MNIST idx file"
        )
    found = int.from_bytes(data[:4], "big")
    kinds = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
    if found != magic:
        hint = f" (an idx {kinds[found]} file: are two files swapped?)" if found in kinds else ""
        raise DataError(
            f"{path}: magic number {found}{hint}, not {magic} as an idx {kinds[magic]} file "
            "begins; not an MNIST file of this kind"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if magic == IMAGES_MAGIC and shape[1:] != (SIDE, SIDE):
        raise DataError(
            f"{path}: images of {shape[1]} x {shape[2]} pixels; MNIST's are {SIDE} x {SIDE}, "
            "which the network's 784 inputs and the figures expect"
        )
    if shape[0] == 0:
        raise DataError(f"{path}: its header says it holds no {kinds[magic]}")
    return shape


def _shape_problem(size: int, expected: int) -> str:
    return "truncated" if size < expected else "bytes after the last item"


def read_images(path: Path) -> tuple[np.ndarray, str]:
    """(n, 784) uint8 pixels and the file's SHA-256."""
    (n, _, _), body, digest = _read_idx(path, IMAGES_MAGIC, 3)
    return np.frombuffer(body, dtype=np.uint8).reshape(n, SIDE * SIDE), digest


def read_labels(path: Path) -> tuple[np.ndarray, str]:
    """(n,) uint8 labels 0-9 and the file's SHA-256."""
    _, body, digest = _read_idx(path, LABELS_MAGIC, 1)
    labels = np.frombuffer(body, dtype=np.uint8)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(
            f"{path}: label {labels[bad[0]]} at item {bad[0]} (0-based) is not a digit 0-9 "
            f"({bad.size} such); not MNIST's labels"
        )
    return labels, digest


def _digest_of(files: Iterable[tuple[str, Path]]) -> str:
    """SHA-256 of ``(sha256, path)`` pairs in role order, as ``sha256sum`` lines."""
    lines = "".join(f"{digest}  {path.name}\n" for digest, path in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def folder_digest(folder: str | os.PathLike) -> str:
    """SHA-256 naming the four files ``read_mnist_folder`` reads: of each one's name and
    SHA-256, in role order.  Other files in the folder do not count."""
    paths = (find_mnist_file(Path(folder), role) for role in MNIST_FILES)
    return _digest_of((_sha256(path), path) for path in paths)


def read_mnist_folder(folder: str | os.PathLike) -> MnistArrays:
    """MNIST's four idx files in ``folder``, checked: headers, sizes, labels 0-9, as many
    labels as images in each set."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        raise DataError(
            f"{folder}: {what}; data=mnist_idx reads a folder holding MNIST's four idx files "
            "(set data.dir, or fetch them with `backprop mnist-download DIR`)"
        )
    paths = {role: find_mnist_file(folder, role) for role in MNIST_FILES}
    arrays: dict[str, np.ndarray] = {}
    files = []
    for role, path in paths.items():
        read = read_images if role.endswith("images") else read_labels
        arrays[role], digest = read(path)
        files.append(IdxFile(role, path, digest))
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{paths[f'{part}_labels']}: {len(labels)} labels for the {len(images)} images "
                f"of {paths[f'{part}_images'].name}; the two files are not a pair"
            )
    return MnistArrays(**arrays, files=tuple(files))


def idx_bytes(images: np.ndarray | None = None, labels: np.ndarray | None = None) -> bytes:
    """An idx file of ``images`` ((n, 28, 28) or (n, 784) uint8) or of ``labels`` (n,)."""
    if images is not None:
        images = np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, SIDE * SIDE)
        head = [IMAGES_MAGIC, len(images), SIDE, SIDE]
        body = images.tobytes()
    else:
        assert labels is not None
        labels = np.ascontiguousarray(labels, dtype=np.uint8)
        head = [LABELS_MAGIC, len(labels)]
        body = labels.tobytes()
    return b"".join(v.to_bytes(4, "big") for v in head) + body
