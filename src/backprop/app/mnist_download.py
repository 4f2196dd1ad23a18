"""``backprop mnist-download DIR``: MNIST's four ``.gz`` files, fetched once and checked.

``data=mnist_idx`` reads MNIST's own idx files from a folder, and nothing in the
pipeline downloads at run time; this command is the one step that does, so that
what lands in DIR is known: every file is checked against its SHA-256 (the
published ones, or a ``sha256sum`` file given with ``--sha256``) and then read as
an idx file of its kind, before it is renamed into DIR.  A file already there
with the right digest is kept, so running it again fetches nothing.  Nothing is
ever half-written in DIR: a download goes to a temporary sibling that is removed
on any failure, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shlex
import socket
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import tenacity
from tqdm import tqdm

from backprop import __version__
from backprop.app.command import Command
from backprop.errors import DataError, OutputError, UserError
from backprop.pipeline.files import (
    FILE_MODE,
    check_output_folder,
    file_digest,
    remove_stale_temporaries,
    writing,
)
from backprop.pipeline.project import project_root
from backprop.tables.idx import (
    GZIP_MAGIC,
    MNIST_FILES,
    PUBLISHED_SHA256,
    PUBLISHED_SIZES,
    read_images,
    read_labels,
    read_mnist_folder,
)

# Both serve the bytes published on yann.lecun.com/exdb/mnist (torchvision's and
# TensorFlow's sources), tried in this order.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# The four files by role, in the order they are fetched.
NAMES = {role: f"{stem}.gz" for role, stem in MNIST_FILES.items()}
TIMEOUT = 30.0  # seconds to connect, and between two reads of the body
ATTEMPTS = 3  # per mirror, for a failure that may pass (a reset, a timeout, HTTP 5xx)
BACKOFF = 1.0  # seconds before the second attempt, doubling after
CHUNK = 1 << 16
# The most a file may be when its size is not known (a --sha256 mirror): MNIST's largest
# .gz is 9.9 MB, its largest file unzipped 47 MB.
MAX_BYTES = 64 << 20
USER_AGENT = f"backprop/{__version__} mnist-download (Python urllib)"
WHAT = "MNIST files"
TODO = (
    "check the network, or fetch the files yourself into {dir} (data=mnist_idx reads them "
    "there), or give --mirror URL of a folder that serves them"
)


class _Failure(Exception):
    """A download that did not give the whole body; ``transient``: worth another attempt."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason, self.transient = reason, transient


@dataclass(frozen=True)
class _Expected:
    """The digests the files must have, and whose they are (for the messages)."""

    digests: dict[str, str]
    source: str | None  # the --sha256 file, None for the published digests

    @property
    def matches(self) -> str:
        return f"matches --sha256 {self.source}" if self.source else "matches the published digest"

    @property
    def all_match(self) -> str:
        if self.source:
            return f"all four match the digests in {self.source}"
        return "all four match the published digests"

    @property
    def described(self) -> str:
        return f"in {self.source}" if self.source else "published"


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="folder for the four files (created if missing)")
    p.add_argument(
        "--mirror", metavar="URL", action="append",
        help="URL of a folder serving the four .gz files; repeat it to try several in order "
        f"(default: {', '.join(DEFAULT_MIRRORS)})",
    )  # fmt: skip
    p.add_argument(
        "--sha256", metavar="FILE",
        help="check the files against this sha256sum-format file ('<hex>  <name>' lines) "
        "instead of the published digests, for a mirror of other bytes",
    )  # fmt: skip


def _mirrors(given: list[str] | None) -> list[str]:
    """The mirrors as folder URLs ending in ``/``; a URL urllib cannot fetch is refused here,
    before anything is downloaded."""
    mirrors = []
    for url in given or DEFAULT_MIRRORS:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "file") or (
            parts.scheme != "file" and not parts.netloc
        ):
            raise UserError(
                f"--mirror {url}: not an http(s) URL; give the URL of a folder that serves "
                f"MNIST's .gz files, such as {DEFAULT_MIRRORS[0]}"
            )
        mirrors.append(url if url.endswith("/") else url + "/")
    return mirrors


def _expected(sha256_file: str | None) -> _Expected:
    """The published digests, or those of a ``sha256sum``-format file, which must name all
    four files (a missing one would go unchecked)."""
    if sha256_file is None:
        return _Expected(dict(PUBLISHED_SHA256), None)
    try:
        text = Path(sha256_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise DataError(
            f"--sha256 {sha256_file}: cannot read it ({reason}); give a file of "
            "'<sha256>  <name>' lines, as sha256sum writes them"
        ) from None
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64})\s+\*?(.+)", line)
        if not match:
            raise DataError(
                f"--sha256 {sha256_file}, line {number}: {line[:60]!r} is not a "
                "'<sha256>  <name>' line; write it as sha256sum does (sha256sum *.gz > FILE)"
            )
        digests[Path(match[2].strip()).name] = match[1].lower()
    missing = [name for name in NAMES.values() if name not in digests]
    if missing:
        raise DataError(
            f"--sha256 {sha256_file}: no digest for {', '.join(missing)}; add a "
            "'<sha256>  <name>' line for each of MNIST's four .gz files"
        )
    return _Expected(digests, sha256_file)


def _idx_problem(path: Path, role: str) -> str | None:
    """Why ``path`` is not an idx file of ``role``'s kind (images or labels), else None."""
    read = read_images if role.endswith("images") else read_labels
    try:
        read(path)
    except DataError as err:
        return str(err).removeprefix(f"{path}: ")
    return None


def _good_copy(path: Path, role: str, expected: str) -> str | None:
    """The digest of the file at ``path`` if it is the one expected and reads as idx."""
    if not path.is_file():
        return None
    try:
        digest = file_digest(path)
    except OSError:
        return None
    if digest != expected or _idx_problem(path, role) is not None:
        return None
    return digest


def _reason(err: BaseException) -> _Failure:
    """What went wrong, in a few words on one line, and whether another attempt may do
    better."""
    failure = _reason_of(err)
    failure.reason = " ".join(failure.reason.split())
    return failure


def _reason_of(err: BaseException) -> _Failure:
    if isinstance(err, urllib.error.HTTPError):
        transient = err.code >= 500 or err.code in (408, 429)
        return _Failure(f"HTTP {err.code} {err.reason or ''}".strip(), transient)
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        err = err.reason
    elif isinstance(err, urllib.error.URLError):
        return _Failure(str(err.reason), False)
    if isinstance(err, http.client.RemoteDisconnected):
        return _Failure("the server closed the connection without answering", True)
    if isinstance(err, TimeoutError):
        return _Failure(f"timed out after {TIMEOUT:g} s", True)
    if isinstance(err, ConnectionRefusedError):
        return _Failure("connection refused", True)
    if isinstance(err, ConnectionResetError):
        return _Failure("connection reset", True)
    if isinstance(err, socket.gaierror):
        return _Failure("cannot resolve its host name", False)
    if isinstance(err, http.client.IncompleteRead):
        return _Failure(f"the connection broke after {len(err.partial):,} bytes", True)
    if isinstance(err, ConnectionError | http.client.HTTPException):
        return _Failure(f"the connection broke ({err or type(err).__name__})", True)
    if isinstance(err, OSError):
        return _Failure(err.strerror or str(err), False)
    return _Failure(str(err), False)


def _progress(name: str, total: int | None) -> tqdm:
    """A bar in bytes on stderr, on a terminal only (a log gets the summary lines alone)."""
    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                leave=False, file=sys.stderr, disable=not sys.stderr.isatty())  # fmt: skip


def _attempt(url: str, name: str, out, size_hint: int | None) -> tuple[int, str]:
    """One GET of ``url`` streamed into ``out`` (from its start): (bytes, SHA-256).  A
    network failure is a :class:`_Failure`; a disk's OSError is not caught here."""
    out.seek(0)
    out.truncate()
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except (OSError, http.client.HTTPException, ValueError) as err:
        if isinstance(err, urllib.error.HTTPError):
            err.close()  # the error page's connection
        raise _reason(err) from None
    got = 0
    # never more than the file should be: a server that streams on and on fills no disk
    limit = size_hint or MAX_BYTES
    with response:
        header = response.headers.get("Content-Length", "")
        length = int(header) if header.isdigit() else None
        with _progress(name, length or size_hint) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise _reason(err) from None
                if not chunk:
                    break
                got += len(chunk)
                if got > limit:
                    expected = f"{size_hint:,}" if size_hint else "far fewer"
                    raise _Failure(
                        f"sent more than {limit:,} bytes where the file has {expected}; not "
                        "the file asked for", False,
                    )  # fmt: skip
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    if length is not None and got != length:
        raise _Failure(f"got {got:,} bytes of {length:,}", True)
    return got, digest.hexdigest()


def _download(url: str, name: str, out, size_hint: int | None) -> tuple[int, str]:
    """:func:`_attempt`, again after a short wait while the failure may pass."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, _Failure) and e.transient),
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=BACKOFF, max=30),
        reraise=True,
    )
    return retrying(_attempt, url, name, out, size_hint)


def _not_gzip(head: bytes) -> str | None:
    """What the body is, when it is not a gzip file (an HTML page: a proxy's or a portal's)."""
    if head.startswith(GZIP_MAGIC):
        return None
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<")):
        return "an HTML or XML page, not a gzip file (a proxy's, a login or an error page?)"
    return "not a gzip file"


def _fetch(
    folder: Path, role: str, mirrors: list[str], expected: _Expected, replacing: bool
) -> tuple[int, str, str]:
    """Download ``role``'s file into ``folder``, checked, renamed into place only when
    whole and right: (bytes, SHA-256, URL)."""
    name = NAMES[role]
    target = folder / name
    want = expected.digests[name]
    kept = (
        f"the {name} already in {folder}, whose digest does not match, is unchanged"
        if replacing
        else f"nothing of it was written to {folder}"
    )
    size_hint = None if expected.source else PUBLISHED_SIZES.get(name)
    with writing(target, name):
        fd, temporary = tempfile.mkstemp(
            dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".tmp"
        )
    tmp = Path(temporary)
    try:
        with writing(target, name), os.fdopen(fd, "w+b") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            tried = []
            for mirror in mirrors:
                url = mirror + name
                try:
                    size, digest = _download(url, name, out, size_hint)
                except _Failure as failure:
                    attempts = f", {ATTEMPTS} attempts" if failure.transient else ""
                    tried.append(f"{url}: {failure.reason}{attempts}")
                    continue
                out.flush()
                out.seek(0)
                head = out.read(64)
                if digest != want:
                    what = _not_gzip(head) or (
                        "the mirror serves other bytes, or they were damaged on the way; run "
                        "again, or give another --mirror"
                        + (f", or check {expected.source}" if expected.source else "")
                    )
                    raise DataError(
                        f"{name} from {url}: sha256 {digest[:12]}..., expected "
                        f"{want[:12]}... ({expected.described}); {what}; {kept}"
                    )
                problem = _not_gzip(head) or _idx_problem(tmp, role)
                if problem:
                    kind = role.replace("_", " ")
                    raise DataError(
                        f"{name} from {url}: {expected.matches} but is not MNIST's {kind}: "
                        f"{problem}; check {expected.source or 'the mirror'}; {kept}"
                    )
                os.fsync(out.fileno())
                break
            else:
                todo = TODO.format(dir=shlex.quote(str(folder)))
                raise DataError(
                    f"{name}: no mirror served it (tried {'; '.join(tried)}); {todo}; {kept}"
                )
        with writing(target, name):
            os.replace(tmp, target)
        return size, digest, url
    finally:
        tmp.unlink(missing_ok=True)


def _prepare(folder: Path) -> None:
    """``folder`` as a folder we can write in, created if missing, cleared of the
    temporaries of a download that was killed."""
    check_output_folder(folder, None, WHAT)
    with writing(folder, f"{folder} folder"):
        folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)


def _run(args: argparse.Namespace) -> int:
    mirrors = _mirrors(args.mirror)
    expected = _expected(args.sha256)
    folder = Path(args.dir)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder; give a folder for the {WHAT}")
    present = {
        role: _good_copy(folder / name, role, expected.digests[name])
        for role, name in NAMES.items()
    }
    created = not folder.exists()
    if not all(present.values()):
        _prepare(folder)
    try:
        _fetch_all(folder, mirrors, expected, present)
    except BaseException:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # made by this command, and nothing landed in it
        raise
    try:  # each file is right on its own; together, images and labels must pair up
        read_mnist_folder(folder)
    except DataError as err:
        raise DataError(
            f"the four files in {folder} each match their digest ({expected.described}) but "
            f"are not one MNIST: {err}"
        ) from None
    shown = shlex.quote(str(folder))
    print(
        f"MNIST's four files are in {shown} ({expected.all_match}); run: "
        f"dvc exp run -S data=mnist_idx -S data.dir={shlex.quote(_as_dvc_sees_it(folder))}"
    )
    return 0


def _fetch_all(
    folder: Path, mirrors: list[str], expected: _Expected, present: dict[str, str | None]
) -> None:
    """Each file not already there, fetched and checked; a line per file."""
    for role, name in NAMES.items():
        digest = present[role]
        if digest is None and (folder / name).exists():  # another download's, since?
            digest = _good_copy(folder / name, role, expected.digests[name])
        if digest is not None:
            size = (folder / name).stat().st_size
            how = "already there, checked"
        else:
            replacing = (folder / name).exists()
            size, digest, url = _fetch(folder, role, mirrors, expected, replacing)
            how = f"downloaded from {url}" + (
                ", replacing a copy whose digest did not match" if replacing else ""
            )
        print(f"{name}: {size:,} bytes, sha256 {digest[:12]}, {expected.matches} ({how})")
        sys.stdout.flush()


def _as_dvc_sees_it(folder: Path) -> str:
    """``folder`` as data.dir must say it: DVC runs the stages from the project's root, so
    relative to that root when inside it, else absolute."""
    absolute = folder.resolve()
    try:
        return absolute.relative_to(project_root()).as_posix()
    except ValueError:
        return str(absolute)


MNIST_DOWNLOAD = Command(
    description="Fetch MNIST's four idx files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into "
    "DIR for data=mnist_idx, from the first mirror that serves them, each checked against "
    "its published SHA-256 (or --sha256 FILE) and read as an idx file before it is renamed "
    "into place. A file already in DIR with the right digest is kept; one with another "
    "digest is replaced only by a download that checks out. Failures that may pass "
    f"(timeouts, resets, HTTP 5xx, a cut-off body) are tried {ATTEMPTS} times per mirror.",
    arguments=_arguments,
    run=_run,
)
