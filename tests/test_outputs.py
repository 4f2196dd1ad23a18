"""Where outputs go and what inputs can be: nothing of the user's is replaced, streams are
written in place (and read once), and a full disk or a folder given for a file is one line
that leaves the previous output as it was.

Everything runs in this process through ``backprop.app.cli.main`` on a small model.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from backprop.app.cli import main
from backprop.errors import OutputError
from backprop.pipeline import files
from backprop.pipeline.files import atomic_write_bytes, atomic_write_dir, is_stream


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """digits.csv, its prepared splits and a model trained for one epoch."""
    root = tmp_path_factory.mktemp("outputs")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        (root / "params.yaml").write_text(
            "model:\n  hidden_sizes: [8]\ntrain:\n  epochs: 1\n  patience: null\n"
        )
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'm.db'}"
        assert main(["digits", "digits.csv"]) == 0
        assert main(["preprocess", "digits.csv", "prepared"]) == 0
        assert main(["train", "prepared", "model", "reports"]) == 0
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.chdir(cwd)
    return root


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str, text: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and text in err, err


# -- folders that hold the user's files ---------------------------------------------------


def test_preprocess_into_the_folder_of_its_input_deletes_nothing(project, tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    csv = raw / "flowers.csv"
    csv.write_bytes((project / "digits.csv").read_bytes())
    (raw / "notes.txt").write_text("mine\n")
    code, _, err = run(capsys, "preprocess", csv, raw)
    one_line(code, err, f"{raw}: holds the input {csv}, and would be replaced whole")
    code, _, err = run(capsys, "preprocess", project / "digits.csv", raw)
    one_line(code, err, f"{raw}: holds 'flowers.csv', which this command did not write")
    assert sorted(p.name for p in raw.iterdir()) == ["flowers.csv", "notes.txt"]
    assert csv.read_bytes() == (project / "digits.csv").read_bytes()


def test_preprocess_into_the_working_folder_or_above_is_refused(project, monkeypatch, capsys):
    monkeypatch.chdir(project / "prepared")
    for target in (".", ".."):
        code, _, err = run(capsys, "preprocess", project / "digits.csv", target)
        one_line(code, err, f"{target}: is the working folder or holds it")
    assert (project / "prepared" / "train.npz").exists()


def test_preprocess_replaces_its_own_previous_output(project, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert run(capsys, "preprocess", project / "digits.csv", out)[0] == 0
    (out / "source.json").unlink()  # an older layout without it: still ours
    assert run(capsys, "preprocess", project / "digits.csv", out)[0] == 0
    assert (out / "source.json").exists()


def test_a_file_target_that_is_a_folder_or_goes_through_a_file_is_one_line(
    project, tmp_path, capsys
):
    (tmp_path / "afile").write_text("x\n")
    code, _, err = run(capsys, "digits", tmp_path)
    one_line(code, err, f"{tmp_path}: is a folder; give a file name")
    code, _, err = run(capsys, "digits", tmp_path / "afile" / "x.csv")
    one_line(code, err, "a part of the path is a file, not a folder")
    cases = [
        (tmp_path, "is a folder; give a file name, such as"),
        (tmp_path / "afile" / "p.csv", "afile is a file, not a folder"),
    ]
    for target, text in cases:
        code, out, err = run(capsys, "predict", project / "model", project / "digits.csv",
                             "-o", target)  # fmt: skip
        one_line(code, err, text)
        assert out == ""


def test_predict_creates_a_missing_folder_for_its_output(project, tmp_path, capsys):
    target = tmp_path / "new" / "deeper" / "p.csv"
    assert run(capsys, "predict", project / "model", project / "digits.csv", "-o", target)[0] == 0
    assert len(target.read_text().splitlines()) == 1798


# -- streams: written in place ------------------------------------------------------------


def test_devices_and_the_standard_streams_count_as_streams_without_writing_them(tmp_path):
    assert is_stream("/dev/null") and is_stream("/dev/stdout")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    (tmp_path / "out").symlink_to("/dev/stdout")
    assert is_stream(tmp_path / "out")  # a link to a descriptor's name is one too
    fd = os.open(tmp_path / "log.csv", os.O_WRONLY | os.O_CREAT)
    try:  # a descriptor's name leads to the shell's redirection: never replaced
        assert is_stream(f"/dev/fd/{fd}") and is_stream(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    assert not is_stream(tmp_path / "log.csv") and not is_stream(tmp_path / "new.csv")


def test_a_regular_file_under_dev_is_replaced_whole_not_written_in_place(project, tmp_path, capsys):
    """/dev/shm holds ordinary files: a failed run leaves the previous one, like anywhere."""
    target = Path("/dev/shm") / f"backprop-test-{os.getpid()}.csv"
    target.write_text("previous\n")
    try:
        assert not is_stream(target)
        code, _, err = run(capsys, "predict", project / "model", _bad_csv(project, tmp_path),
                           "--chunk-rows", "500", "-o", target)  # fmt: skip
        one_line(code, err, "column 'pixel10', row 1501")
        assert target.read_text() == "previous\n"
    finally:
        target.unlink(missing_ok=True)


def test_dev_fd_appends_to_the_shells_redirection_instead_of_truncating_it(
    project, tmp_path, capsys
):
    """`-o /dev/stdout >> log.csv`: the descriptor is used as the shell opened it."""
    for name in ("/dev/fd/{}", "/proc/self/fd/{}"):
        log = tmp_path / "log.csv"
        log.write_text("kept\n")
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        try:
            code, out, err = run(capsys, "predict", project / "model", project / "digits.csv",
                                 "-o", name.format(fd))  # fmt: skip
        finally:
            os.close(fd)
        assert code == 0, err
        lines = log.read_text().splitlines()
        assert lines[0] == "kept" and lines[1].startswith("predicted,proba_0")
        assert len(lines) == 1799
        assert out == "" and "predicted 1797 rows" in err


def test_a_stage_writing_to_a_descriptor_keeps_its_summary_out_of_the_data(tmp_path, capsys):
    from backprop.pipeline.stages.digits import digits_csv_bytes

    fd = os.open(tmp_path / "digits.csv", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        code, out, err = run(capsys, "digits", f"/dev/fd/{fd}")
    finally:
        os.close(fd)
    assert code == 0, err
    assert (tmp_path / "digits.csv").read_bytes() == digits_csv_bytes()
    assert out == "" and "wrote scikit-learn's handwritten digits" in err


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_descriptor_that_is_not_open_is_one_line_before_any_work(project, capsys):
    fd = next(n for n in range(900, 1000) if not _is_open(n))  # and that opening won't take
    code, out, err = run(capsys, "predict", project / "model", project / "digits.csv",
                         "-o", f"/dev/fd/{fd}")  # fmt: skip
    one_line(code, err, f"/dev/fd/{fd}: descriptor {fd} is not open")
    assert out == ""


def test_predict_into_a_fifo_feeds_its_reader_and_leaves_the_fifo(project, tmp_path, capsys):
    fifo = tmp_path / "rows"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, out, err = run(capsys, "predict", project / "model", project / "digits.csv", "-o", fifo)
    reader.join(timeout=60)
    assert code == 0, err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file
    assert received and len(received[0].decode().splitlines()) == 1798
    assert "predicted 1797 rows" in err and out == ""  # the summary never joins the rows


def _predict_into_dev_fd(project, capsys, before=lambda: None):
    """``predict -o /dev/fd/N`` into a pipe someone reads; ``before`` runs once the reader
    has opened its end.  Returns the exit status, stderr, N and what the reader got."""
    read_end, write_end = os.pipe()
    reader, received = _drain(read_end)
    before()
    try:
        code, _, err = run(capsys, "predict", project / "model", project / "digits.csv", "-o",
                           f"/dev/fd/{write_end}")  # fmt: skip
    finally:
        os.close(write_end)
    reader.join(timeout=60)
    return code, err, write_end, received


def test_predict_into_a_pipe_given_as_dev_fd(project, capsys):
    code, err, _, received = _predict_into_dev_fd(project, capsys)
    assert code == 0, err
    assert received[0].startswith(b"predicted,proba_0") and received[0].count(b"\n") == 1798


def _bad_csv(project: Path, tmp_path: Path) -> Path:
    """digits.csv with a word for pixel10 in row 1501."""
    lines = (project / "digits.csv").read_text().splitlines()
    cells = lines[1501].split(",")
    cells[11] = "dark"
    lines[1501] = ",".join(cells)
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "bad.csv"


def test_a_bad_row_after_rows_went_to_stdout_says_they_are_incomplete(project, tmp_path, capsys):
    _bad_csv(project, tmp_path)
    code, out, err = run(capsys, "predict", project / "model", tmp_path / "bad.csv",
                         "--chunk-rows", "500")  # fmt: skip
    one_line(code, err, "column 'pixel10', row 1501")
    written = len(out.splitlines()) - 1  # the reader may have found it a chunk ahead
    assert 0 < written < 1501
    assert f"the {written} rows written to standard output before it are incomplete" in err
    assert "-o FILE writes all rows or none" in err
    code, _, err = run(capsys, "predict", project / "model", tmp_path / "bad.csv",
                       "--chunk-rows", "500", "-o", tmp_path / "p.csv")  # fmt: skip
    one_line(code, err, "column 'pixel10', row 1501")
    assert "incomplete" not in err and not (tmp_path / "p.csv").exists()


# -- a full disk --------------------------------------------------------------------------


@pytest.fixture
def disk_full(monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", no_space)


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, disk_full):
    target = tmp_path / "metrics.json"
    target.write_text("previous\n")
    expected = "metrics.json: no space left on the device; the previous metrics.json is unchanged"
    with pytest.raises(OutputError, match=expected):
        atomic_write_bytes(target, b"new\n")
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_full_disk_keeps_the_previous_folder(tmp_path, disk_full):
    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"old")
    with pytest.raises(OutputError, match="figures: no space left on the device"):
        atomic_write_dir(folder, {"a.png": b"new"})
    assert (folder / "a.png").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]


@pytest.mark.parametrize("command", ["preprocess", "predict", "train"])
def test_a_full_disk_is_one_line_through_each_command(
    project, tmp_path, monkeypatch, capsys, disk_full, command
):
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    args = {
        "preprocess": ["preprocess", "digits.csv", tmp_path / "prepared"],
        "predict": ["predict", "model", "digits.csv", "-o", tmp_path / "p.csv"],
        "train": ["train", "prepared", tmp_path / "model", tmp_path / "reports"],  # the model
    }[command]
    code, _, err = run(capsys, *args)
    one_line(code, err, "no space left on the device")
    assert "Traceback" not in err
    left = [p for p in tmp_path.rglob("*") if not p.name.startswith("m.db") and p.is_file()]
    assert left == [], left


def test_other_os_errors_keep_their_traceback(tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(files.os, "fsync", broken)
    with pytest.raises(OSError) as err:
        atomic_write_bytes(tmp_path / "x", b"1")
    assert not isinstance(err.value, OutputError) and err.value.errno == errno.EIO
    assert np.array_equal(sorted(Path(tmp_path).iterdir()), [])


class _Stdout(io.RawIOBase):
    """Standard output as ``PYTHONUNBUFFERED=1`` makes it, unbuffered: each write takes at
    most 1000 bytes and says how many; with ``room``, a full disk after that many."""

    def __init__(self, room: int | None = None) -> None:
        self.data, self.room = bytearray(), room

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        n = min(len(b), 1000)
        if self.room is not None:
            if len(self.data) >= self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            n = min(n, self.room - len(self.data))
        self.data += bytes(b[:n])
        return n


def test_short_writes_to_stdout_are_finished_and_a_full_disk_behind_it_is_one_line(
    project, monkeypatch, capsys
):
    stdout = _Stdout()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stdout, write_through=True))
    code, _, err = run(capsys, "predict", project / "model", project / "digits.csv")
    assert code == 0, err
    assert stdout.data.count(b"\n") == 1798 and stdout.data.endswith(b"\n")
    stdout = _Stdout(room=100_000)  # `> out.csv` on a disk that fills up: never exit 0
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stdout, write_through=True))
    code, _, err = run(capsys, "predict", project / "model", project / "digits.csv")
    one_line(code, err, "standard output: no space left on the device; what was written to it")
    assert "Traceback" not in err


def test_a_full_disk_at_a_checkpoint_keeps_the_previous_one(
    project, tmp_path, monkeypatch, capsys, full_disk_for
):
    from backprop.pipeline.checkpoints import load_checkpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    (tmp_path / "params.yaml").write_text(
        "model:\n  hidden_sizes: [8]\ntrain:\n  epochs: 3\n  patience: null\n"
    )
    full_disk_for(lambda path: "/outputs/checkpoints/" in path, after=1)  # epoch 1 fits
    code, _, err = run(capsys, "train", project / "prepared", "model", "reports")
    one_line(code, err, ".npz: no space left on the device; the previous checkpoint is unchanged")
    (checkpoint,) = (tmp_path / "outputs" / "checkpoints").iterdir()
    assert checkpoint.name in err and load_checkpoint(checkpoint)[0].epoch == 1
    assert not (tmp_path / "model").exists()


def test_a_full_disk_on_a_new_file_says_nothing_was_written(
    project, tmp_path, capsys, full_disk_for
):
    full_disk_for(lambda path: ".p.csv." in path)
    code, _, err = run(capsys, "predict", project / "model", project / "digits.csv",
                       "-o", tmp_path / "p.csv")  # fmt: skip
    one_line(code, err, "p.csv: no space left on the device; nothing was written; free some")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_behind_a_pipe_is_one_line_saying_the_output_is_incomplete(
    project, capsys, full_disk_for
):
    code, err, write_end, received = _predict_into_dev_fd(  # `-o >(cat > full/disk/p.csv)`
        project, capsys, before=lambda: full_disk_for(lambda path: path.startswith("pipe:"))
    )
    one_line(code, err, f"/dev/fd/{write_end}: no space left on the device; what was written to")
    assert "Traceback" not in err and received == [b""]


# -- folders checked before the work --------------------------------------------------------


def test_train_refuses_a_model_or_reports_path_that_is_a_file_before_training(
    project, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    (tmp_path / "params.yaml").write_text((project / "params.yaml").read_text())
    (tmp_path / "afile").write_text("x\n")
    cases = [
        (["afile", "reports"], "afile: is a file, not a folder; give a folder for the model"),
        (["model", "afile/r"], "afile is a file, not a folder; give a folder for the training"),
    ]
    for outputs, text in cases:
        code, _, err = run(capsys, "train", project / "prepared", *outputs)
        one_line(code, err, text)
    assert not (tmp_path / "outputs").exists()  # no epoch trained, no checkpoint written


def test_evaluate_refuses_a_figures_folder_of_other_files_before_any_report(
    project, tmp_path, capsys
):
    reports = tmp_path / "reports"
    (reports / "figures").mkdir(parents=True)
    (reports / "figures" / "notes.txt").write_text("mine\n")
    code, _, err = run(capsys, "evaluate", project / "model", project / "prepared", reports)
    one_line(code, err, "figures: holds 'notes.txt', which this command did not write")
    assert sorted(p.name for p in reports.rglob("*")) == ["figures", "notes.txt"]


def test_preprocess_names_its_input_inside_the_output_folder(project, tmp_path, capsys):
    raw = tmp_path / "out" / "raw"
    raw.mkdir(parents=True)
    (raw / "flowers.csv").write_bytes((project / "digits.csv").read_bytes())
    code, _, err = run(capsys, "preprocess", raw / "flowers.csv", tmp_path / "out")
    one_line(code, err, f"out: holds the input {raw / 'flowers.csv'}, and would be replaced")
    assert (raw / "flowers.csv").exists()


def test_a_mount_point_as_an_output_folder_is_refused(project, tmp_path, monkeypatch, capsys):
    """A mount point cannot be renamed (EBUSY, as `.` was): refused before the work, and any
    other folder that cannot be replaced is one line too."""
    out = tmp_path / "volume"
    out.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(files.os.path, "ismount", lambda p: Path(p) == out or real(p))
    code, _, err = run(capsys, "preprocess", project / "digits.csv", out)
    one_line(code, err, "volume: is a mount point, which cannot be replaced; give a folder inside")
    assert list(out.iterdir()) == []
    monkeypatch.setattr(files.os.path, "ismount", real)

    def busy(src, dst):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    monkeypatch.setattr(files.os, "replace", busy)
    code, _, err = run(capsys, "preprocess", project / "digits.csv", tmp_path / "other")
    one_line(code, err, "other: is a mount point or in use, so it cannot be replaced")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume"]


# -- inputs that can be read only once ----------------------------------------------------


def _drain(fd: int) -> tuple[threading.Thread, list[bytes]]:
    """A thread reading descriptor ``fd`` to its end; what it read lands in the list."""
    received: list[bytes] = []

    def read() -> None:
        with os.fdopen(fd, "rb") as f:
            received.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, received


def _feed(path_or_fd, data: bytes) -> threading.Thread:
    def write() -> None:
        if isinstance(path_or_fd, int):
            with os.fdopen(path_or_fd, "wb") as f:
                f.write(data)
        else:
            Path(path_or_fd).write_bytes(data)

    writer = threading.Thread(target=write)
    writer.start()
    return writer


def test_preprocess_reads_a_pipe_once(project, tmp_path, capsys):
    import hashlib
    import json

    data = (project / "digits.csv").read_bytes()
    read_end, write_end = os.pipe()
    writer = _feed(write_end, data)
    try:
        code, out, err = run(capsys, "preprocess", f"/dev/fd/{read_end}", tmp_path / "prepared")
    finally:
        writer.join(timeout=60)
        os.close(read_end)
    assert code == 0, err
    source = json.loads((tmp_path / "prepared" / "source.json").read_text())
    assert source["path"] == f"/dev/fd/{read_end}" and source["rows"] == 1797
    assert source["sha256"] == hashlib.sha256(data).hexdigest()


def test_predict_reads_a_named_pipe_once_and_names_it_in_errors(project, tmp_path, capsys):
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    writer = _feed(fifo, (project / "digits.csv").read_bytes())
    code, _, err = run(capsys, "predict", project / "model", fifo, "-o", tmp_path / "p.csv")
    writer.join(timeout=60)
    assert code == 0, err
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1798
    lines = (project / "digits.csv").read_text().splitlines()
    lines[3] = "x" + lines[3][1:]  # a label the model does not know: fine; then a bad pixel
    lines[5] = lines[5].split(",", 1)[0] + ",dark," + lines[5].split(",", 2)[2]
    writer = _feed(fifo, ("\n".join(lines) + "\n").encode())
    code, _, err = run(capsys, "predict", project / "model", fifo, "-o", tmp_path / "q.csv")
    writer.join(timeout=60)
    one_line(code, err, f"{fifo}: column 'pixel0', row 5 (line 6): 'dark' is not a number")


def test_a_csv_with_a_header_and_no_rows_is_nothing_to_predict(project, tmp_path, capsys):
    header = (project / "digits.csv").read_text().splitlines()[0]
    (tmp_path / "empty.csv").write_text(header + "\n")
    code, out, err = run(capsys, "predict", project / "model", tmp_path / "empty.csv")
    one_line(code, err, f"{tmp_path / 'empty.csv'}: has a header but no rows; nothing to predict")
    assert out == ""


def test_rows_without_a_label_are_predicted_but_not_scored(project, tmp_path, capsys):
    lines = (project / "digits.csv").read_text().splitlines()
    rows = [line if i % 2 else "," + line.split(",", 1)[1] for i, line in enumerate(lines[1:101])]
    (tmp_path / "half.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    code, out, _ = run(capsys, "predict", project / "model", tmp_path / "half.csv",
                       "-o", tmp_path / "p.csv")  # fmt: skip
    assert code == 0
    predicted = [r.split(",")[0] for r in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    truth = [r.split(",")[0] for r in rows]
    right = sum(p == t for p, t in zip(predicted, truth) if t)
    assert len(predicted) == 100
    assert f"accuracy {right / 50:.4f} ({right} of 50 right)" in out
    assert "50 rows without a label were not scored" in out
    assert "the model was not trained on" not in out
    (tmp_path / "none.csv").write_text("\n".join([lines[0], *rows[::2]]) + "\n")
    code, out, _ = run(capsys, "predict", project / "model", tmp_path / "none.csv",
                       "-o", tmp_path / "q.csv")  # fmt: skip
    assert "none of the 50 rows has a label, so none was scored" in out
    assert "accuracy" not in out


def test_labels_written_with_a_leading_zero_come_back_as_written(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    codes = ["02139", "10001", "00501"]
    rows = [f"{codes[i % 3]},{(i % 3) * 10 + rng.normal():.3f},{rng.normal():.3f}"
            for i in range(90)]  # fmt: skip
    (tmp_path / "zip.csv").write_text("zip,a,b\n" + "\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    (tmp_path / "params.yaml").write_text("model:\n  hidden_sizes: [8]\ntrain:\n  epochs: 30\n"
                                          "  patience: null\n  batch_size: 8\n")  # fmt: skip
    assert run(capsys, "preprocess", "zip.csv", "prepared")[0] == 0
    assert run(capsys, "train", "prepared", "model", "reports")[0] == 0
    code, out, _ = run(capsys, "predict", "model", "zip.csv", "-o", "p.csv")
    assert code == 0 and "accuracy 1.0000 (90 of 90 right)" in out
    import csv

    with open(tmp_path / "p.csv", newline="") as f:
        predicted = [row[0] for row in csv.reader(f)]
    assert predicted[0] == "predicted" and predicted[1:] == [r.split(",")[0] for r in rows]


def test_files_of_its_own_names_linked_in_by_a_dvc_cache_are_replaceable(project, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert run(capsys, "preprocess", project / "digits.csv", out)[0] == 0
    (out / "train.npz").rename(tmp_path / "cached")
    (out / "train.npz").symlink_to(tmp_path / "cached")  # DVC's cache.type symlink
    assert run(capsys, "preprocess", project / "digits.csv", out)[0] == 0
    assert not (out / "train.npz").is_symlink()
    assert (tmp_path / "cached").exists()  # the cache's copy is left alone


def test_first_layer_weights_share_one_scale_centred_on_zero():
    from backprop.pipeline.plots import weight_scale

    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.1, (64, 32)).astype(np.float32)
    W[0, 0] = 50.0  # one outlier does not set the scale for all
    bound = weight_scale(W)
    assert 0.2 < bound < 0.4  # about 2.8 standard deviations: the 99.5th percentile of |w|
    assert weight_scale(np.zeros((16, 4))) == 1.0  # an all-zero layer still has a scale


def test_misclassified_examples_say_how_sure_the_network_was():
    from backprop.pipeline.plots import misclassified, misclassified_labels

    labels = misclassified_labels(np.array([7, 3]), np.array([1, 8]), np.array([0.624, 0.5]),
                                  list(range(10)))  # fmt: skip
    assert labels == ["7 -> 1 (0.62)", "3 -> 8 (0.50)"]
    X = np.random.default_rng(1).random((5, 64))
    png = misclassified(X, np.array([0, 1, 2, 3, 4]), np.array([1, 1, 0, 3, 0]), list(range(5)),
                        probability=np.array([0.9, 0.8, 0.3, 0.7, 0.95]))  # fmt: skip
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_misclassified_example_is_said_not_left_blank():
    import io

    import matplotlib.image

    from backprop.pipeline.plots import misclassified

    X = np.random.default_rng(1).random((5, 784))
    y = np.array([0, 1, 2, 3, 4])
    image = matplotlib.image.imread(io.BytesIO(misclassified(X, y, y, list(range(5)))))
    h, w = image.shape[:2]
    middle = image[h // 3 : 2 * h // 3, :, :3]
    assert middle.min() < 0.5  # the sentence's dark text, not a white page
