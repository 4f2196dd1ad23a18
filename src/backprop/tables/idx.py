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
from dataclasses import dataclass
from pathlib import Path

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


def _file_bytes(path: Path) -> tuple[bytes, str]:
    """The decompressed contents of ``path`` and the SHA-256 of its bytes on disk."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read it ({err.strerror or err})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if raw[:2] != GZIP_MAGIC:
        return raw, digest
    try:
        return gzip.decompress(raw), digest
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: a damaged gzip file ({err}); download it again "
            "(`backprop mnist-download` checks what it fetches)"
        ) from None


def _header(path: Path, data: bytes, magic: int, dims: int) -> tuple[int, ...]:
    size = 4 + 4 * dims
    if len(data) < size:
        raise DataError(
            f"{path}: {len(data)} bytes, shorter than an idx header ({size} bytes); "
            "not an MNIST idx file"
        )
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kinds = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
        hint = f" (an idx {kinds[found]} file: are two files swapped?)" if found in kinds else ""
        raise DataError(
            f"{path}: magic number {found}{hint}, not {magic} as an idx {kinds[magic]} file "
            "begins; not an MNIST file of this kind"
        )
    return tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))


def _shape_problem(size: int, expected: int) -> str:
    return "truncated" if size < expected else "bytes after the last item"


def read_images(path: Path) -> tuple[np.ndarray, str]:
    """(n, 784) uint8 pixels and the file's SHA-256."""
    data, digest = _file_bytes(path)
    n, rows, cols = _header(path, data, IMAGES_MAGIC, 3)
    if (rows, cols) != (SIDE, SIDE):
        raise DataError(
            f"{path}: images of {rows} x {cols} pixels; MNIST's are {SIDE} x {SIDE}, which the "
            "network's 784 inputs and the figures expect"
        )
    if n == 0:
        raise DataError(f"{path}: its header says it holds no images")
    expected = 16 + n * SIDE * SIDE
    if len(data) != expected:
        raise DataError(
            f"{path}: its header says {n} images of {SIDE} x {SIDE} ({expected} bytes), the "
            f"file holds {len(data)} bytes: {_shape_problem(len(data), expected)}; download it "
            "again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, SIDE * SIDE), digest


def read_labels(path: Path) -> tuple[np.ndarray, str]:
    """(n,) uint8 labels 0-9 and the file's SHA-256."""
    data, digest = _file_bytes(path)
    (n,) = _header(path, data, LABELS_MAGIC, 1)
    expected = 8 + n
    if len(data) != expected:
        raise DataError(
            f"{path}: its header says {n} labels ({expected} bytes), the file holds "
            f"{len(data)} bytes: {_shape_problem(len(data), expected)}; "
            "download it again"
        )
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(
            f"{path}: label {labels[bad[0]]} at item {bad[0]} (0-based) is not a digit 0-9 "
            f"({bad.size} such); not MNIST's labels"
        )
    return labels, digest


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
