"""The CSV reader: what it accepts, what it refuses, and the one line that says where."""

import ast
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from backprop.errors import DataError
from backprop.tables import reader
from backprop.tables.reader import (
    SNIFF_BYTES,
    FeatureChunk,
    LabelledData,
    read_feature_chunks,
    read_header,
    read_labelled_csv,
)


def write(tmp_path, content, name="data.csv"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode())  # as given: no newline translation
    return path


def refused(path, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        read_labelled_csv(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


# -- the file and its header -------------------------------------------------------------


def test_a_missing_file_and_a_folder(tmp_path):
    assert refused(tmp_path / "nope.csv") == "file not found; check the path"
    assert refused(tmp_path) == "is a folder, not a CSV file"


def test_permission_denied(tmp_path, monkeypatch):
    path = write(tmp_path, "label,a\n0,1\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reader, "open", denied, raising=False)  # root may read anything
    assert refused(path) == "permission denied"


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty; expected a header row and data rows"),
        (" \n\n", "the file is empty; expected a header row and data rows"),
        ("label,a,b\n", "the header has no data rows below it"),
        ("label,a,b\n\n\n", "the header has no data rows below it"),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "not a text file (it contains NUL bytes); expected a CSV",
        ),
        (b"lab\xe9l,a\n0,1\n", "not UTF-8 text; save the CSV as UTF-8"),
        (b"label,a\n0,\xff\xfe\n", "not UTF-8 text; save the CSV as UTF-8"),
        ("label,a,,b\n0,1,2,3\n", "column 3 of the header has no name"),
        ("label,a,a\n0,1,2\n", "column 'a' appears more than once in the header"),
        (
            "label\n0\n",
            "the header has 1 column; expected a label and at least one feature, "
            "separated by commas",
        ),
    ],
)
def test_files_that_are_not_a_labelled_csv(tmp_path, content, message):
    assert refused(write(tmp_path, content)) == message


def test_bad_utf8_or_nul_past_the_first_64_kib(tmp_path):
    rows = b"0,1\n" * (SNIFF_BYTES // 4 + 100)
    for tail in (b"1,\xff\n", b"\xff,1\n", b"1,2\xc3\n"):  # a feature, the label, a cut char
        path = write(tmp_path, b"label,a\n" + rows + tail)
        assert refused(path) == "not UTF-8 text; save the CSV as UTF-8"
    path = write(tmp_path, b"label,a\n" + rows + b"1,\x00\n")
    assert refused(path) == "not a text file (it contains NUL bytes); expected a CSV"


@pytest.mark.parametrize(
    "kind, tool", [("gzip", "zcat"), ("bzip2", "bzcat"), ("xz", "xzcat"), ("zip", "unzip -p")]
)
def test_a_compressed_file_says_how_to_read_it(tmp_path, kind, tool):
    import bz2
    import gzip
    import io
    import lzma
    import zipfile

    text = b"label,a\n0,1\n1,2\n"
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("data.csv", text)
        packed = buffer.getvalue()
    else:
        packed = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[kind](text)
    path = write(tmp_path, packed, "data.csv.z")
    message = (
        f"is {kind}-compressed, not a CSV; decompress it first, or give the decompressed "
        f"stream: <({tool} {path})"
    )
    assert refused(path) == message
    with pytest.raises(DataError, match="compressed, not a CSV"):
        read_feature_chunks(path, ["a"], "label")


def test_read_header_checks_and_returns_the_names(tmp_path):
    assert read_header(write(tmp_path, '\ufefflabel,a,"b,c"\r\n0,1,2\r\n')) == [
        "label",
        "a",
        "b,c",
    ]
    with pytest.raises(DataError, match="appears more than once"):
        read_header(write(tmp_path, "label,a,a\n"))


def test_a_header_longer_than_the_sniff(tmp_path):
    names = [f"feature_number_{i}" for i in range(SNIFF_BYTES // 10)]
    row = ",".join(["1"] + ["2"] * len(names))
    path = write(tmp_path, "label," + ",".join(names) + "\n" + row + "\n" + row + "\n")
    data = read_labelled_csv(path)
    assert data.feature_names == names
    assert data.X.shape == (2, len(names)) and (data.X == 2).all()


def test_an_unknown_label_column_lists_the_columns(tmp_path):
    path = write(tmp_path, "label,a,b\n0,1,2\n")
    assert refused(path, label_column="target") == (
        "label column 'target' not found; the columns are label, a, b (3 in all)"
    )
    wide = write(tmp_path, ",".join(f"c{i}" for i in range(20)) + "\n" + "1," * 19 + "1\n")
    assert refused(wide, label_column="target") == (
        "label column 'target' not found; the columns are c0, c1, c2, c3, c4, c5, ..., "
        "c17, c18, c19 (20 in all)"
    )


# -- cells -------------------------------------------------------------------------------


def test_a_non_numeric_feature_names_column_row_and_line(tmp_path):
    path = write(tmp_path, "label,a,b\n0,1,2\n1,2,abc\n")
    assert refused(path) == (
        "column 'b', row 2 (line 3): 'abc' is not a number; features must be numeric"
    )


@pytest.mark.parametrize("text", ["NAN", "Nan", "+nan", "1_000", "0x10", "true", "1.5.2"])
def test_other_spellings_are_not_numbers(tmp_path, text):
    for first in ("1", "1.5"):  # integer features, then float features
        path = write(tmp_path, f"label,a,b\n0,{first},2\n1,3,{text}\n")
        assert refused(path) == (
            f"column 'b', row 2 (line 3): {text!r} is not a number; features must be numeric"
        )


@pytest.mark.parametrize(
    "token", ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "-nan", "#N/A", '""']
)
def test_missing_feature_cells(tmp_path, token):
    for first in ("1", "1.5"):
        path = write(tmp_path, f"label,a,b\n0,{first},2\n1,{token},3\n")
        assert refused(path) == (
            "missing value in column 'a' at row 2 (line 3); fill it in, or set drop_missing "
            "to drop such rows"
        )


def test_an_empty_label_is_missing_but_na_is_a_class(tmp_path):
    path = write(tmp_path, "label,a,b\n0,1,2\n,1,3\n")
    assert refused(path) == (
        "missing value in column 'label' at row 2 (line 3); fill it in, or set drop_missing "
        "to drop such rows"
    )
    data = read_labelled_csv(write(tmp_path, "label,a\nNA,1\nN/A,2\nNaN,3\n"))
    assert data.labels.tolist() == ["NA", "N/A", "NaN"]
    assert data.labels.dtype == object


@pytest.mark.parametrize("label", [" ", "\t", "  \t "])
def test_a_label_of_only_spaces_is_missing_too(tmp_path, label):
    """Not a class of its own: one such cell made every integer label a string ("10" < "2")."""
    path = write(tmp_path, f"label,a\n2,1\n{label},2\n10,3\n")
    assert refused(path) == (
        "missing value in column 'label' at row 2 (line 3); fill it in, or set drop_missing "
        "to drop such rows"
    )
    with pytest.warns(UserWarning, match="dropped 1 rows with missing values"):
        data = read_labelled_csv(path, drop_missing=True)
    assert data.labels.tolist() == ["2", "10"] and data.rows.tolist() == [1, 3]


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e400"])
def test_infinite_values_are_refused(tmp_path, value):
    path = write(tmp_path, f"label,a,b\n0,1,2\n1,{value},3\n")
    assert refused(path) == "infinite value in column 'a' at row 2 (line 3); values must be finite"


@pytest.mark.parametrize("value, shown", [("1e39", "1e+39"), ("-3.5e38", "-3.5e+38")])
def test_finite_values_beyond_float32_are_named_as_such(tmp_path, value, shown):
    path = write(tmp_path, f"label,a,b\n0,1,2\n1,{value},3\n")
    assert refused(path) == (
        f"column 'a', row 2 (line 3): {shown} is beyond the range of the float32 features are "
        "kept in (+-3.4e+38); rescale the column, e.g. divide it by a power of ten"
    )


def test_the_largest_float32_is_fine(tmp_path):
    data = read_labelled_csv(write(tmp_path, "label,a\n0,3.4028234663852886e38\n1,-1e-50\n"))
    assert data.X[:, 0].tolist() == [np.finfo(np.float32).max, -0.0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("label,a,b\n0,1,2\n1,2,3,4\n", "line 3 has 4 fields but the header has 3"),
        ("label,a,b\n0,1,2\n1,2\n0,3,4\n", "line 3 has 2 fields but the header has 3"),
        ("label,a,b\n0,1,2\n\n\n1,2\n", "line 5 has 2 fields but the header has 3"),
        ("label,a,b\n0,1,2\n \t \n1,2\n", "line 4 has 2 fields but the header has 3"),
        ('label,a,b\n"x\ny",1,2\n1,2\n', "line 4 has 2 fields but the header has 3"),
    ],
)
def test_rows_with_too_many_or_too_few_fields(tmp_path, content, message):
    assert refused(write(tmp_path, content)) == (f"{message}; every row needs one value per column")


def test_a_ragged_row_past_the_first_block(tmp_path):
    rows = "".join(f"{i % 2},{i},{i}\n" for i in range(100_000))
    path = write(tmp_path, "label,a,b\n" + rows + "1,2\n")
    assert refused(path) == (
        "line 100002 has 2 fields but the header has 3; every row needs one value per column"
    )


def test_the_first_problem_by_row_then_column(tmp_path):
    path = write(tmp_path, "label,a,b,c\n0,1,2,3\n1,2,inf,\n0,,5,6\n")
    assert refused(path).startswith("infinite value in column 'b' at row 2 (line 3)")
    path = write(tmp_path, "label,a,b,c\n0,1,2,3\n1,2,3,\n0,,5,6\n")
    assert refused(path).startswith("missing value in column 'c' at row 2 (line 3)")


# -- rows and lines ----------------------------------------------------------------------


def test_blank_lines_are_not_rows_but_count_as_lines(tmp_path):
    path = write(tmp_path, "label,a\n0,1\n\n1,2\n0,oops\n")
    assert refused(path) == (
        "column 'a', row 3 (line 5): 'oops' is not a number; features must be numeric"
    )
    data = read_labelled_csv(write(tmp_path, "label,a\n0,1\n\n  \n1,2\n \n"))
    assert data.rows.tolist() == [1, 2] and data.X[:, 0].tolist() == [1, 2]
    path = write(tmp_path, "label,a\n0,1\n  \n1,2\n\t\n0,oops\n")  # spaces: blank too
    assert refused(path).startswith("column 'a', row 3 (line 6): 'oops' is not a number")


def test_quoted_fields_may_hold_newlines_and_commas(tmp_path):
    path = write(tmp_path, 'label,a,b\n"cat,\nblack",1,2\n"dog","3",4\n"x\r\ny",5,6\n')
    data = read_labelled_csv(path)
    assert data.labels.tolist() == ["cat,\nblack", "dog", "x\r\ny"]
    assert data.X.tolist() == [[1, 2], [3, 4], [5, 6]]
    bad = write(tmp_path, 'label,a,b\n"cat,\nblack",1,2\n0,3,x\n')
    assert refused(bad).startswith("column 'b', row 2 (line 4): 'x' is not a number")


def test_a_utf8_bom_and_crlf_line_ends(tmp_path):
    path = write(tmp_path, "\ufefflabel,a,b\r\n0,1,2\r\n\r\n1,3,4\r\n")
    data = read_labelled_csv(path)
    assert data.feature_names == ["a", "b"] and data.label_column == "label"
    assert data.X.tolist() == [[1, 2], [3, 4]] and data.labels.tolist() == ["0", "1"]
    bad = write(tmp_path, "\ufefflabel,a,b\r\n0,1,2\r\n\r\n1,2,x\r\n")
    assert refused(bad).startswith("column 'b', row 2 (line 4): 'x' is not a number")


def test_old_mac_line_ends_and_no_final_newline(tmp_path):
    data = read_labelled_csv(write(tmp_path, "label,a\r0,1\r1,2\r0,3"))
    assert data.X[:, 0].tolist() == [1, 2, 3] and data.rows.tolist() == [1, 2, 3]


# -- values ------------------------------------------------------------------------------


def test_the_label_first_by_default_or_named_anywhere(tmp_path):
    path = write(tmp_path, "a,b,species,c\n1,2,setosa,3\n4,5,virginica,6\n")
    named = read_labelled_csv(path, label_column="species")
    assert isinstance(named, LabelledData)
    assert named.feature_names == ["a", "b", "c"] and named.label_column == "species"
    assert named.X.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert named.labels.tolist() == ["setosa", "virginica"]
    assert named.rows.dtype == np.int64 and named.rows.tolist() == [1, 2]


def test_float32_values_are_float64_rounded_once_more(tmp_path):
    rng = np.random.default_rng(0)
    values, digits = rng.standard_normal(5000) * 1e3, rng.integers(0, 20, 5000)
    texts = [f"{m:.{d}e}" for m, d in zip(values, digits)]
    texts += ["0.1", "16777217", "16777219", "3.4028234e38", "1.00000017881393432617187499"]
    texts += [str(v) for v in rng.integers(-(2**40), 2**40, 1000)]
    path = write(tmp_path, "label,a\n" + "".join(f"0,{t}\n" for t in texts))
    expected = np.array([float(t) for t in texts], np.float64).astype(np.float32)
    got = read_labelled_csv(path).X[:, 0]
    assert got.tobytes() == expected.tobytes()


def test_integer_files_and_a_late_decimal(tmp_path, monkeypatch):
    def no_scan(*args):
        raise AssertionError("a number that is not an integer is no error to locate")

    monkeypatch.setattr(reader, "_locate", no_scan)
    ints = "".join(f"{i % 3},{i},{2**24 + 1}\n" for i in range(50_000))
    data = read_labelled_csv(write(tmp_path, "label,a,b\n" + ints))
    assert data.X.dtype == np.float32 and data.X.shape == (50_000, 2)
    assert (data.X[:, 1] == np.float32(2**24 + 1)).all()  # rounded, as float32 must
    late = read_labelled_csv(write(tmp_path, "label,a,b\n" + ints + "1,0.5,1e-3\n"))
    assert late.X[-1].tolist() == [0.5, np.float32(1e-3)]
    assert late.X[:-1].tobytes() == data.X.tobytes()


def test_matrix_gathers_rows_fortran_ordered(tmp_path):
    path = write(
        tmp_path, "label,a,b,c\n" + "".join(f"{i},{i},{10 * i},{100 * i}\n" for i in range(6))
    )
    data = read_labelled_csv(path)
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in data.columns)
    X = data.matrix(np.array([4, 1]))
    assert X.dtype == np.float32 and X.flags.f_contiguous
    assert X.tolist() == [[4, 40, 400], [1, 10, 100]]
    assert data.X.shape == (6, 3) and data.X is not data.X  # a fresh copy each time


def test_missing_rows_can_be_dropped_with_a_warning(tmp_path):
    path = write(tmp_path, "label,a,b\n0,1,2\n1,,4\n0,5,NaN\n1,7,8\n,9,9\n0,inf,\n")
    with pytest.warns(UserWarning) as caught:
        data = read_labelled_csv(path, drop_missing=True)
    assert [str(w.message) for w in caught] == [
        f"{path}: dropped 4 rows with missing values (the first is row 2)"
    ]
    assert data.rows.tolist() == [1, 4]
    assert data.X.tolist() == [[1, 2], [7, 8]] and data.labels.tolist() == ["0", "1"]
    assert refused(write(tmp_path, "label,a\n0,\n1,NA\n"), drop_missing=True) == (
        "every row has a missing value"
    )


def test_dropping_rows_across_blocks_keeps_rows_and_labels_together(tmp_path):
    lines = [f"{i},{i}" if i % 997 else f"{i}," for i in range(1, 200_001)]
    path = write(tmp_path, "label,a\n" + "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match="dropped 200 rows .*\\(the first is row 997\\)"):
        data = read_labelled_csv(path, drop_missing=True)
    assert len(data.rows) == 200_000 - 200
    assert data.labels.astype(int).tolist() == data.rows.tolist()
    assert data.X[:, 0].tolist() == data.rows.astype(np.float32).tolist()


def test_no_warning_when_nothing_is_dropped(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = read_labelled_csv(write(tmp_path, "label,a\n0,1\n"), drop_missing=True)
    assert data.rows.tolist() == [1]


# -- predict: chunks ---------------------------------------------------------------------

FEATURES = [f"pixel{i}" for i in range(64)]


def pixels(rows=2000, seed=0):
    return np.random.default_rng(seed).integers(0, 17, (rows, 64))


def write_pixels(tmp_path, X, order=None, label=True, edit=None):
    """Rows to predict, columns in ``order`` (default reversed); ``edit``: {(row, name): text}."""
    order = order or FEATURES[::-1]
    lines = [",".join((["label"] if label else []) + order)]
    for r, row in enumerate(X, start=1):
        cells = dict(zip(FEATURES, map(str, row)))
        cells.update({name: text for (at, name), text in (edit or {}).items() if at == r})
        lines.append(
            ",".join(([str(r % 10)] if label else []) + [cells.get(n, "0") for n in order])
        )
    return write(tmp_path, "\n".join(lines) + "\n", "predict.csv")


def predict_refused(path, chunk_rows=500) -> str:
    with pytest.raises(DataError) as caught:
        list(read_feature_chunks(path, FEATURES, "label", chunk_rows))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def test_chunks_in_the_models_column_order(tmp_path):
    X = pixels()
    path = write_pixels(tmp_path, X)
    chunks = list(read_feature_chunks(path, FEATURES, "label", chunk_rows=500))
    assert all(isinstance(c, FeatureChunk) for c in chunks)
    assert [len(c.X) for c in chunks] == [500] * 4
    assert [c.first_row for c in chunks] == [1, 501, 1001, 1501]
    assert all(c.X.dtype == np.float64 and c.X.flags.c_contiguous for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), X)
    labels = np.concatenate([c.labels for c in chunks])
    assert labels.dtype == object and labels[:3].tolist() == ["1", "2", "3"]
    done = [c.bytes_read for c in chunks]
    assert done == sorted(done) and 0 < done[-1] <= path.stat().st_size


def test_chunks_without_a_label_column_and_a_short_last_chunk(tmp_path):
    X = pixels(1234)
    path = write_pixels(tmp_path, X, label=False)
    chunks = list(read_feature_chunks(path, FEATURES, "label", chunk_rows=700))
    assert [(len(c.X), c.first_row, c.labels) for c in chunks] == [(700, 1, None), (534, 701, None)]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), X)


def test_a_header_only_input_has_no_chunks(tmp_path):
    path = write(tmp_path, "label," + ",".join(FEATURES) + "\n")
    assert list(read_feature_chunks(path, FEATURES, "label")) == []


def test_a_header_without_a_line_end_is_a_file_without_rows(tmp_path):
    path = write(tmp_path, "label," + ",".join(FEATURES))
    assert list(read_feature_chunks(path, FEATURES, "label")) == []
    assert refused(path) == "the header has no data rows below it"


@pytest.mark.parametrize(
    "order, message",
    [
        ([n for n in FEATURES if n not in ("pixel5", "pixel9")], "missing pixel5, pixel9"),
        (FEATURES + ["extra"], "unexpected extra"),
        (["px0"] + FEATURES[1:], "missing pixel0; unexpected px0"),
    ],
)
def test_columns_that_do_not_match_the_model_are_refused_at_once(tmp_path, order, message):
    path = write_pixels(tmp_path, pixels(20), order=order)
    with pytest.raises(DataError) as caught:
        read_feature_chunks(path, FEATURES, "label")  # before any chunk is asked for
    assert str(caught.value) == (
        f"{path}: the columns do not match the model: {message}; expected label (optional), "
        "pixel0, pixel1, pixel2, pixel3, pixel4, pixel5 and 58 more (64 features)"
    )


def test_a_model_without_a_label_name(tmp_path):
    path = write(tmp_path, "label,a,b\n0,1,2\n")
    with pytest.raises(DataError, match="unexpected label; expected a, b \\(2 features\\)$"):
        read_feature_chunks(path, ["a", "b"], None)


def test_a_bad_cell_past_the_first_chunk(tmp_path):
    path = write_pixels(tmp_path, pixels(), edit={(1501, "pixel10"): "dark"})
    assert predict_refused(path) == (
        "column 'pixel10', row 1501 (line 1502): 'dark' is not a number; features must be numeric"
    )
    path = write_pixels(tmp_path, pixels(), edit={(1501, "pixel10"): "NAN"})
    assert predict_refused(path).startswith("column 'pixel10', row 1501 (line 1502): 'NAN' is")


def test_a_missing_cell_to_predict(tmp_path):
    path = write_pixels(tmp_path, pixels(), edit={(1700, "pixel3"): "NA", (1700, "pixel2"): ""})
    message = "missing value in column 'pixel2' at row 1700 (line 1701); fill it in"
    assert predict_refused(path) == message


@pytest.mark.parametrize("text, shown", [("inf", "inf"), ("-Infinity", "-inf"), ("1e999", "inf")])
def test_a_non_finite_value_to_predict(tmp_path, text, shown):
    path = write_pixels(tmp_path, pixels(), edit={(900, "pixel63"): text})
    assert predict_refused(path) == (
        f"column 'pixel63', row 900: {shown} is not a finite number; features must be finite"
    )


def test_ragged_rows_and_encoding_problems_to_predict(tmp_path):
    X = pixels()
    path = write_pixels(tmp_path, X)
    lines = path.read_bytes().split(b"\n")
    lines[1800] = lines[1800] + b",7"
    path.write_bytes(b"\n".join(lines))
    assert predict_refused(path) == (
        "line 1801 has 66 fields but the header has 65; every row needs one value per column"
    )
    lines[1800] = lines[1800][:-2].replace(b",", b",\xff", 1)
    path.write_bytes(b"\n".join(lines))
    assert predict_refused(path) == "not UTF-8 text; save the CSV as UTF-8"


def test_predict_blocks_stay_small(tmp_path):
    path = write_pixels(tmp_path, pixels())
    assert reader._block_size(path, 10) < 16 * 1024
    assert reader._block_size(path, 1_000_000) == 2**20


# -- the reader's own rules --------------------------------------------------------------


def test_the_reader_imports_only_pyarrow_numpy_and_the_standard_library():
    source = Path(reader.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    standard = {"__future__", "collections", "concurrent", "csv", "dataclasses", "functools"}
    standard |= {"math", "mmap", "os", "pathlib", "re", "warnings"}
    assert imported - standard == {"numpy", "pyarrow", "backprop"}


def test_a_reader_left_half_way_leaves_no_thread_behind(tmp_path):
    path = write_pixels(tmp_path, pixels(5000))
    before = threading.active_count()
    chunks = read_feature_chunks(path, FEATURES, "label", chunk_rows=100)
    assert next(chunks).first_row == 1
    chunks.close()
    bad = write_pixels(tmp_path, pixels(5000), edit={(4000, "pixel1"): "?"})
    with pytest.raises(DataError):
        read_labelled_csv(bad)
    assert threading.active_count() == before
