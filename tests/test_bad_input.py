"""Every bad input: one line on stderr naming the problem and where, exit 2, nothing written."""

import gzip
import subprocess
import sys

import pytest

CASES = {
    "missing file": (None, "missing.csv: file not found"),
    "empty file": ("", "the file is empty"),
    "header only": ("label,a,b\n", "the header has no data rows below it"),
    "header without a line end": ("label,a,b", "the header has no data rows below it"),
    "non-numeric": (
        "label,a,b\n0,1,2\n1,2,abc\n",
        "column 'b', row 2 (line 3): 'abc' is not a number",
    ),
    "missing cell": ("label,a,b\n0,1,2\n1,,3\n", "missing value in column 'a' at row 2 (line 3)"),
    "NaN cell": ("label,a,b\n0,1,2\n1,3,NaN\n", "missing value in column 'b' at row 2 (line 3)"),
    "missing label": (
        "label,a,b\n0,1,2\n,1,3\n",
        "missing value in column 'label' at row 2 (line 3)",
    ),
    "label of spaces": (
        "label,a,b\n0,1,2\n  ,1,3\n",
        "missing value in column 'label' at row 2 (line 3)",
    ),
    "gzip": (gzip.compress(b"label,a\n0,1\n", mtime=0), "is gzip-compressed, not a CSV"),
    "infinite": ("label,a,b\n0,1,2\n1,inf,3\n", "infinite value in column 'a' at row 2 (line 3)"),
    "too large for float32": ("label,a,b\n0,1,2\n1,1e39,3\n", "1e+39 is beyond the range of"),
    "too many fields": ("label,a,b\n0,1,2\n1,2,3,4\n", "line 3 has 4 fields but the header has 3"),
    "too few fields": (
        "label,a,b\n0,1,2\n1,2\n0,3,4\n",
        "line 3 has 2 fields but the header has 3",
    ),
    "one class": ("label,a,b\n0,1,2\n0,3,4\n0,5,6\n", "column 'label' holds a single class (0)"),
    "class too small": (
        "label,a\n" + "".join(f"{i % 2},{i}\n" for i in range(20)) + "cat,1\ncat,2\n",
        "class 'cat' has 2 rows; a stratified split into train/validation/test needs at least 3",
    ),
    "not text": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
    "not utf-8": (b"label,a\n0,\xff\xfe\n", "not UTF-8 text"),
    "duplicate column": ("label,a,a\n0,1,2\n", "column 'a' appears more than once"),
}


def run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "backprop", *args], capture_output=True, text=True, cwd=tmp_path
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_csv_gets_one_line_and_writes_nothing(tmp_path, case):
    content, message = CASES[case]
    path = tmp_path / ("missing.csv" if content is None else "input.csv")
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = run(tmp_path, "preprocess", path.name, "out")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("backprop preprocess: error: ")
    assert path.name in lines[0] and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name] if content is not None else []
    )


def test_unknown_label_column_lists_the_columns(tmp_path):
    (tmp_path / "input.csv").write_text("label,a,b\n0,1,2\n1,3,4\n")
    (tmp_path / "params.yaml").write_text("data:\n  label_column: target\n")
    result = run(tmp_path, "preprocess", "input.csv", "out")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "backprop preprocess: error: input.csv: label column 'target' not found; "
        "the columns are label, a, b (3 in all)"
    )


def test_failed_run_leaves_the_previous_outputs_intact(tmp_path):
    good = "label,a,b\n" + "".join(f"{i % 2},{i},{i * 2}\n" for i in range(40))
    (tmp_path / "input.csv").write_text(good)
    assert run(tmp_path, "preprocess", "input.csv", "out").returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(before) == [
        "classes.json",
        "scaler.json",
        "source.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    (tmp_path / "input.csv").write_text(good + "1,oops,3\n")
    assert run(tmp_path, "preprocess", "input.csv", "out").returncode == 2
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.csv", "out"]
