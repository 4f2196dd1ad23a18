"""``backprop mnist-download``: against mirrors on 127.0.0.1 that serve, fail, or lie.

The files served are small idx files generated here (50 training and 20 test digits),
gzipped, checked with a ``--sha256`` file, or with the published table patched to their
digests.  Each mirror counts the requests per file, so "nothing fetched again" and
"retried once" are counts, not timings.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import http.server
import shlex
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from backprop.app import mnist_download
from backprop.app.cli import main
from backprop.tables.idx import MNIST_FILES, idx_bytes, read_mnist_folder
from helpers import BIN, free_port, venv_env

NAMES = [f"{stem}.gz" for stem in MNIST_FILES.values()]
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = NAMES
PREFIX = "backprop mnist-download: error: "


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "train_images": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 50, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 20, dtype=np.uint8),
    }


ARRAYS = _arrays()
FILES = {
    f"{MNIST_FILES[role]}.gz": gzip.compress(
        idx_bytes(**{"images" if role.endswith("images") else "labels": array}), mtime=0
    )
    for role, array in ARRAYS.items()
}
DIGESTS = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
HTML = b"<!DOCTYPE html>\n<html><body>Please log in to use this network</body></html>\n"


def _corrupt(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    return bytes(flipped)


class Mirror:
    """A folder URL on 127.0.0.1 serving ``files``; ``plan[name]`` lists what the next
    requests for ``name`` get (``serve``, ``404``, ``500``, ``truncate``, ``html``,
    ``corrupt``, ``close``, ``hang``, ``endless``), then each is served; ``hits`` counts
    requests."""

    def __init__(self, files: dict[str, bytes], plan: dict[str, list[str]]) -> None:
        self.files, self.plan = files, {k: list(v) for k, v in plan.items()}
        self.hits: collections.Counter[str] = collections.Counter()
        self.agents: set[str] = set()
        self.release = threading.Event()
        lock = threading.Lock()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                with lock:
                    mirror.hits[name] += 1
                    mirror.agents.add(self.headers.get("User-Agent", ""))
                    steps = mirror.plan.get(name)
                    step = steps.pop(0) if steps else "serve"
                body = mirror.files.get(name)
                if step == "close":
                    return  # the connection closes without a response
                if step == "hang":
                    mirror.release.wait(10)
                    return
                if body is None or step == "404":
                    return self._answer(404, b"Not Found", "text/plain")
                if step == "500":
                    return self._answer(500, b"Internal Server Error", "text/plain")
                if step == "html":
                    return self._answer(200, HTML, "text/html")
                if step == "corrupt":
                    body = _corrupt(body)
                if step == "truncate":
                    return self._answer(200, body[: len(body) // 3], length=len(body))
                if step == "endless":  # no Content-Length, bytes until the client stops
                    self.send_response(200)
                    self.end_headers()
                    try:
                        while not mirror.release.is_set():
                            self.wfile.write(b"\x1f\x8b" + bytes(1 << 16))
                    except OSError:
                        pass
                    return
                self._answer(200, body)

            def _answer(self, status, body, kind="application/octet-stream", length=None):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    """``mirror(plan=..., files=...)``: a new :class:`Mirror`, stopped after the test."""
    started: list[Mirror] = []

    def start(plan: dict[str, list[str]] | None = None, files: dict[str, bytes] | None = None):
        started.append(Mirror(FILES if files is None else files, plan or {}))
        return started[-1]

    yield start
    for m in started:
        m.close()


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    """No waiting between attempts: the tests count them."""
    monkeypatch.setattr(mnist_download, "BACKOFF", 0)


@pytest.fixture
def sums(tmp_path) -> Path:
    path = tmp_path / "SHA256SUMS"
    path.write_text("".join(f"{DIGESTS[name]}  {name}\n" for name in NAMES))
    return path


def _run(folder: Path, *mirrors: Mirror | str, sums: Path | None = None) -> int:
    argv = ["mnist-download", str(folder)]
    for m in mirrors:
        argv += ["--mirror", m if isinstance(m, str) else m.url]
    if sums is not None:
        argv += ["--sha256", str(sums)]
    return main(argv)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX), err
    return lines[0]


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_four_files_land_checked_and_read_back(tmp_path, mirror, sums, capsys):
    m = mirror()
    folder = tmp_path / "new" / "mnist"
    assert _run(folder, m, sums=sums) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert (folder / name).read_bytes() == FILES[name]
    read = read_mnist_folder(folder)
    for role, array in ARRAYS.items():
        shape = (len(array), 784) if role.endswith("images") else (len(array),)
        np.testing.assert_array_equal(getattr(read, role), array.reshape(shape))
    assert m.hits == {name: 1 for name in NAMES}
    assert all(agent.startswith("backprop/") for agent in m.agents)
    assert len(out) == 5
    for name, line in zip(NAMES, out):
        assert line == (
            f"{name}: {len(FILES[name]):,} bytes, sha256 {DIGESTS[name][:12]}, matches "
            f"--sha256 {sums} (downloaded from {m.url}{name})"
        )
    assert out[-1] == (
        f"MNIST's four files are in {folder} (all four match the digests in {sums}); "
        f"run: dvc exp run -S data=mnist_idx -S data.dir={folder}"
    )


def test_a_second_run_fetches_nothing(tmp_path, mirror, sums, capsys):
    m = mirror()
    assert _run(tmp_path, m, sums=sums) == 0
    before = {name: (tmp_path / name).stat().st_mtime_ns for name in NAMES}
    capsys.readouterr()
    assert _run(tmp_path, m, sums=sums) == 0
    out = capsys.readouterr().out
    assert m.hits == {name: 1 for name in NAMES}
    assert out.count("(already there, checked)") == 4
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in NAMES} == before


def test_a_corrupted_byte_is_one_line_and_leaves_nothing(tmp_path, mirror, sums, capsys):
    m = mirror({TRAIN_LABELS: ["corrupt"]})
    assert _run(tmp_path, m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    got = hashlib.sha256(_corrupt(FILES[TRAIN_LABELS])).hexdigest()
    assert f"{TRAIN_LABELS} from {m.url}{TRAIN_LABELS}: sha256 {got[:12]}" in line
    assert f"expected {DIGESTS[TRAIN_LABELS][:12]}" in line
    assert f"nothing of it was written to {tmp_path}" in line
    assert not (tmp_path / TRAIN_LABELS).exists()
    assert _temporaries(tmp_path) == []
    assert m.hits[TRAIN_LABELS] == 1  # a wrong digest is not a failure that passes
    assert (tmp_path / TRAIN_IMAGES).read_bytes() == FILES[TRAIN_IMAGES]  # fetched before


def test_an_html_page_for_the_file_says_so(tmp_path, mirror, sums, capsys):
    m = mirror({TEST_IMAGES: ["html"]})
    assert _run(tmp_path, m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{TEST_IMAGES} from {m.url}{TEST_IMAGES}: sha256" in line
    assert "HTML" in line and "not a gzip file" in line
    assert not (tmp_path / TEST_IMAGES).exists() and _temporaries(tmp_path) == []


def test_bytes_that_match_the_digest_but_are_not_the_file_are_caught(tmp_path, mirror, capsys):
    swapped = {**FILES, TEST_LABELS: FILES[TEST_IMAGES]}  # the images under the labels' name
    sums = tmp_path / "sums"
    sums.write_text(
        "".join(f"{hashlib.sha256(data).hexdigest()} *{name}\n" for name, data in swapped.items())
    )
    m = mirror(files=swapped)
    assert _run(tmp_path / "d", m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{TEST_LABELS} from {m.url}{TEST_LABELS}: matches --sha256 {sums}" in line
    assert "not MNIST's test labels" in line and "swapped" in line
    assert not (tmp_path / "d" / TEST_LABELS).exists()
    assert _temporaries(tmp_path / "d") == []


def test_a_copy_in_dir_stays_when_its_redownload_fails(tmp_path, mirror, sums, capsys):
    old = gzip.compress(idx_bytes(labels=np.zeros(20, np.uint8)), mtime=0)  # another version
    (tmp_path / TEST_LABELS).write_bytes(old)
    m = mirror({TEST_LABELS: ["corrupt"]})
    assert _run(tmp_path, m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    kept = f"the {TEST_LABELS} already in {tmp_path}, whose digest does not match, is unchanged"
    assert kept in line
    assert (tmp_path / TEST_LABELS).read_bytes() == old
    assert _temporaries(tmp_path) == []


def test_a_copy_in_dir_that_does_not_match_is_replaced_by_a_good_download(
    tmp_path, mirror, sums, capsys
):
    (tmp_path / TRAIN_IMAGES).write_bytes(b"half a file")
    m = mirror()
    assert _run(tmp_path, m, sums=sums) == 0
    out = capsys.readouterr().out
    assert (tmp_path / TRAIN_IMAGES).read_bytes() == FILES[TRAIN_IMAGES]
    assert "replacing a copy whose digest did not match" in out
    assert m.hits[TRAIN_IMAGES] == 1


def test_a_404_on_the_first_mirror_falls_back_to_the_second(tmp_path, mirror, sums, capsys):
    empty, full = mirror(files={}), mirror()
    assert _run(tmp_path, empty, full, sums=sums) == 0
    out = capsys.readouterr().out
    assert empty.hits == {name: 1 for name in NAMES}  # a 404 is not tried again
    assert full.hits == {name: 1 for name in NAMES}
    assert out.count(f"(downloaded from {full.url}") == 4
    assert read_mnist_folder(tmp_path).train_images.shape == (50, 784)


def test_a_500_once_is_retried_on_the_same_mirror(tmp_path, mirror, sums, capsys):
    m = mirror({TRAIN_IMAGES: ["500"], TEST_LABELS: ["close"]})
    assert _run(tmp_path, m, sums=sums) == 0
    assert m.hits[TRAIN_IMAGES] == 2 and m.hits[TEST_LABELS] == 2
    assert m.hits[TRAIN_LABELS] == 1
    assert (tmp_path / TRAIN_IMAGES).read_bytes() == FILES[TRAIN_IMAGES]
    assert capsys.readouterr().err == ""


def test_a_truncated_body_fails_after_the_retries_naming_the_bytes(tmp_path, mirror, sums, capsys):
    attempts = mnist_download.ATTEMPTS
    m = mirror({TRAIN_IMAGES: ["truncate"] * attempts})
    assert _run(tmp_path, m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    size = len(FILES[TRAIN_IMAGES])
    assert m.hits[TRAIN_IMAGES] == attempts
    assert f"{TRAIN_IMAGES}: no mirror served it (tried {m.url}{TRAIN_IMAGES}: " in line
    assert f"got {size // 3:,} bytes of {size:,}, {attempts} attempts" in line
    assert "check the network, or fetch the files yourself into" in line
    assert "data=mnist_idx reads them there" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SHA256SUMS"]


def test_refused_and_timed_out_mirrors_are_named_with_their_reasons(
    tmp_path, mirror, sums, capsys, monkeypatch
):
    monkeypatch.setattr(mnist_download, "TIMEOUT", 0.2)
    refused = f"http://127.0.0.1:{free_port()}/mnist/"
    m = mirror({TRAIN_IMAGES: ["hang"] * 5})
    assert _run(tmp_path / "d", refused, m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    attempts = mnist_download.ATTEMPTS
    assert f"{refused}{TRAIN_IMAGES}: connection refused, {attempts} attempts" in line
    assert f"{m.url}{TRAIN_IMAGES}: timed out after 0.2 s, {attempts} attempts" in line
    assert m.hits[TRAIN_IMAGES] == attempts
    assert not (tmp_path / "d").exists()  # made by the command, left empty: removed


def test_the_published_table_is_the_default(tmp_path, mirror, capsys, monkeypatch):
    monkeypatch.setattr(mnist_download, "PUBLISHED_SHA256", dict(DIGESTS))
    m = mirror()
    assert _run(tmp_path, m) == 0
    out = capsys.readouterr().out.splitlines()
    assert all("matches the published digest (downloaded" in line for line in out[:4])
    assert "(all four match the published digests)" in out[-1]


def test_the_published_table_refuses_other_bytes(tmp_path, mirror, capsys):
    m = mirror()
    assert _run(tmp_path, m) == 2  # the real table: these small files are not MNIST's
    line = _one_line(capsys.readouterr().err)
    published = mnist_download.PUBLISHED_SHA256[TRAIN_IMAGES]
    assert f"expected {published[:12]}... (published)" in line
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_spaces_is_quoted_in_the_command_to_run(tmp_path, mirror, sums, capsys):
    folder = tmp_path / "my data" / "mnist files"
    assert _run(folder, mirror(), sums=sums) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith(f"-S data.dir={shlex.quote(str(folder))}")
    assert f"are in '{folder}' (" in last
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)


def test_a_server_that_never_stops_sending_is_cut_off(tmp_path, mirror, sums, capsys,
                                                      monkeypatch):  # fmt: skip
    """No Content-Length and no end: the download stops past the most a file may be
    (--sha256: MAX_BYTES), one line, nothing left, no retry of a server that does that."""
    monkeypatch.setattr(mnist_download, "MAX_BYTES", 1 << 20)
    m = mirror({TRAIN_IMAGES: ["endless"]})
    assert _run(tmp_path / "d", m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{m.url}{TRAIN_IMAGES}: sent more than 1,048,576 bytes" in line
    assert m.hits[TRAIN_IMAGES] == 1
    assert not (tmp_path / "d").exists()


def test_a_published_file_is_cut_off_past_its_published_size(tmp_path, mirror, capsys,
                                                             monkeypatch):  # fmt: skip
    monkeypatch.setattr(mnist_download, "PUBLISHED_SHA256", DIGESTS)
    monkeypatch.setattr(mnist_download, "PUBLISHED_SIZES", {TRAIN_IMAGES: 1000})
    m = mirror({TRAIN_IMAGES: ["endless"]})
    assert _run(tmp_path / "d", m) == 2
    assert "sent more than 1,000 bytes where the file has 1,000" in capsys.readouterr().err


def test_the_command_to_run_names_the_folder_from_the_projects_root(
    tmp_path, mirror, sums, capsys, monkeypatch
):
    """DVC runs the stages from the project's root: run from a subfolder, the printed
    data.dir is relative to the root, so the line works when pasted there."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(root / "data")
    assert _run(Path("raw/mnist"), mirror(), sums=sums) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.endswith("run: dvc exp run -S data=mnist_idx -S data.dir=data/raw/mnist")
    assert sorted(p.name for p in (root / "data/raw/mnist").iterdir()) == sorted(NAMES)


def test_dir_that_is_a_file_is_one_line(tmp_path, mirror, sums, capsys):
    m = mirror()
    (tmp_path / "taken").write_text("mine")
    assert _run(tmp_path / "taken", m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (
        f"{PREFIX}{tmp_path / 'taken'}: is a file, not a folder; give a folder for the MNIST files"
    )
    assert (tmp_path / "taken").read_text() == "mine"
    assert sum(m.hits.values()) == 0


def test_dir_below_a_file_is_one_line(tmp_path, mirror, sums, capsys):
    (tmp_path / "taken").write_text("mine")
    assert _run(tmp_path / "taken" / "mnist", mirror(), sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{tmp_path / 'taken'} is a file, not a folder" in line


def test_a_sha256_file_lacking_a_name_is_one_line(tmp_path, mirror, capsys):
    sums = tmp_path / "sums"
    sums.write_text("".join(f"{DIGESTS[n]}  {n}\n" for n in NAMES if n != TEST_IMAGES))
    m = mirror()
    assert _run(tmp_path / "d", m, sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--sha256 {sums}: no digest for {TEST_IMAGES};" in line
    assert sum(m.hits.values()) == 0 and not (tmp_path / "d").exists()


def test_a_mirror_that_is_not_a_url_is_one_line(tmp_path, capsys):
    assert _run(tmp_path / "d", "ftp.example.org/mnist") == 2
    line = _one_line(capsys.readouterr().err)
    assert "--mirror ftp.example.org/mnist: not an http(s) URL" in line


def test_ctrl_c_mid_download_leaves_no_temporary(tmp_path, mirror, sums, capsys, monkeypatch):
    real = mnist_download._progress

    class Interrupting:
        def __init__(self, bar):
            self.bar = bar

        def update(self, n):
            raise KeyboardInterrupt

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.bar.close()

    monkeypatch.setattr(mnist_download, "_progress", lambda *a: Interrupting(real(*a)))
    m = mirror()
    assert _run(tmp_path / "d", m, sums=sums) == 130
    assert "interrupted by SIGINT" in capsys.readouterr().err
    assert m.hits[TRAIN_IMAGES] == 1  # it was inside the download
    assert not (tmp_path / "d").exists()


def test_the_command_exits_2_with_one_line(tmp_path, mirror, sums):
    m = mirror({TRAIN_IMAGES: ["corrupt"]})
    result = subprocess.run(
        [str(BIN / "backprop"), "mnist-download", str(tmp_path / "d"), "--mirror", m.url,
         "--sha256", str(sums)],
        capture_output=True, text=True, env=venv_env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    line = _one_line(result.stderr)
    assert TRAIN_IMAGES in line and DIGESTS[TRAIN_IMAGES][:12] in line
    assert result.stdout == ""
    assert not (tmp_path / "d").exists()


def test_files_right_one_by_one_but_not_a_pair_are_named(tmp_path, mirror, capsys):
    """A --sha256 mirror whose training labels are fewer than its images: each file checks
    out against its digest, the folder is not one MNIST, and the command says so."""
    files = {**FILES, TRAIN_LABELS: gzip.compress(idx_bytes(labels=np.arange(40) % 10), mtime=0)}
    sums = tmp_path / "SUMS"
    sums.write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items()))
    assert _run(tmp_path / "d", mirror(files=files), sums=sums) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"the four files in {tmp_path / 'd'} each match their digest (in {sums})" in line
    assert "40 labels for the 50 images" in line


def test_a_file_another_download_just_wrote_is_checked_not_fetched_again(
    tmp_path, mirror, sums, capsys, monkeypatch
):
    """Two downloads into one DIR: a file that appeared since the start is checked, kept,
    and not called a replaced copy."""
    folder = tmp_path / "d"
    real = mnist_download._prepare

    def meanwhile(path):
        real(path)
        (path / TRAIN_IMAGES).write_bytes(FILES[TRAIN_IMAGES])  # the other download's

    monkeypatch.setattr(mnist_download, "_prepare", meanwhile)
    m = mirror()
    assert _run(folder, m, sums=sums) == 0
    out = capsys.readouterr().out
    assert f"{TRAIN_IMAGES}: {len(FILES[TRAIN_IMAGES]):,} bytes" in out
    assert "already there, checked" in out and "replacing" not in out
    assert m.hits[TRAIN_IMAGES] == 0 and m.hits[TRAIN_LABELS] == 1
