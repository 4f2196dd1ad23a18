import numpy as np
import pytest

from backprop.errors import DataError
from backprop.pipeline.stages.digits import digits_csv_bytes, write_digits
from backprop.tables.labels import decode_labels, encode_labels, label_indices
from backprop.tables.reader import read_labelled_csv


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_digits_csv_has_the_articles_layout_and_is_reproducible(tmp_path):
    path = write_digits(tmp_path / "raw" / "digits.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "label," + ",".join(f"pixel{i}" for i in range(64))
    assert len(lines) == 1 + 1797
    data = read_labelled_csv(path)
    assert data.X.shape == (1797, 64) and data.X.dtype == np.float32
    assert data.X.min() == 0 and data.X.max() == 16
    y, classes = encode_labels(data.labels)
    assert classes == list(range(10))
    assert np.bincount(y).min() >= 174
    assert path.read_bytes() == digits_csv_bytes()


def test_label_first_by_default_or_named_anywhere(tmp_path):
    path = write(tmp_path, "a,b,species,c\n1,2,setosa,3\n4,5,virginica,6\n")
    with pytest.raises(DataError, match="column 'species', row 1 \\(line 2\\): 'setosa' is not"):
        read_labelled_csv(path)  # the first column is the label, so species is a feature
    named = read_labelled_csv(path, label_column="species")
    assert named.feature_names == ["a", "b", "c"]
    assert named.X.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert named.labels.tolist() == ["setosa", "virginica"]
    assert named.rows.tolist() == [1, 2]


@pytest.mark.parametrize(
    "labels,classes,indices",
    [
        (["3", "1", "3.0", "2"], [1, 2, 3], [2, 0, 2, 1]),
        (["0.5", "1.5", "0.5"], [0.5, 1.5], [0, 1, 0]),
        (["setosa", "virginica", "setosa", "NA"], ["NA", "setosa", "virginica"], [1, 2, 1, 0]),
        (["10", "9", "x"], ["10", "9", "x"], [0, 1, 2]),
        (["02139", "10001", "0", "02139"], ["0", "02139", "10001"], [1, 2, 0, 1]),  # codes
        (["0.25", "0", "-0.5"], [-0.5, 0.0, 0.25], [2, 1, 0]),  # no leading zero here
        # integers past a double's 2**53 are read exactly: two labels stay two classes
        (
            ["9007199254740993", "9007199254740992", "1"],
            [1, 9007199254740992, 9007199254740993],
            [2, 1, 0],
        ),
        # past int64, or past 2**53 among fractions: text, as written
        (["12345678901234567890", "1"], ["1", "12345678901234567890"], [1, 0]),
        (["9007199254740993", "0.5"], ["0.5", "9007199254740993"], [1, 0]),
    ],
)
def test_labels_are_encoded_against_the_sorted_classes(labels, classes, indices):
    y, found = encode_labels(np.array(labels, dtype=object))
    assert found == classes
    assert y.tolist() == indices
    assert y.dtype == np.int64
    assert decode_labels(y, found).tolist() == [found[i] for i in indices]


def test_raw_labels_find_their_class_exactly():
    classes = [1, 3, 9007199254740992, 9007199254740993]
    raw = ["9007199254740993", "9007199254740992.0", "3.0", " 1 ", "x", "", "2"]
    assert label_indices(np.array(raw, dtype=object), classes).tolist() == [3, 2, 1, 0, -1, -1, -1]
    codes = ["0", "02139", "10001"]
    assert label_indices(np.array(["02139", "2139", "0"], dtype=object), codes).tolist() == [
        1, -1, 0,
    ]  # fmt: skip


def test_two_features_and_three_thousand_features(tmp_path):
    path = write(tmp_path, "y,a,b\n0,1,2\n1,3,4\n")
    assert read_labelled_csv(path).X.shape == (2, 2)
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 9, (40, 3001))
    header = "label," + ",".join(f"f{i}" for i in range(3000))
    lines = [header] + [",".join(map(str, row)) for row in wide]
    data = read_labelled_csv(write(tmp_path, "\n".join(lines) + "\n", "wide.csv"))
    assert data.X.shape == (40, 3000)
    np.testing.assert_array_equal(data.X, wide[:, 1:])


def test_a_hundred_thousand_rows(tmp_path):
    rng = np.random.default_rng(0)
    table = rng.integers(0, 100, (100_000, 4))
    path = tmp_path / "long.csv"
    np.savetxt(path, table, fmt="%d", delimiter=",", header="label,a,b,c", comments="")
    data = read_labelled_csv(path)
    assert data.X.shape == (100_000, 3)
    assert data.rows[-1] == 100_000


def test_missing_cells_can_be_dropped_with_a_warning(tmp_path):
    path = write(tmp_path, "label,a,b\n0,1,2\n1,,4\n0,5,NaN\n1,7,8\n")
    with pytest.warns(
        UserWarning, match="dropped 2 rows with missing values \\(the first is row 2\\)"
    ):
        data = read_labelled_csv(path, drop_missing=True)
    assert data.rows.tolist() == [1, 4]
    assert data.X.tolist() == [[1, 2], [7, 8]]


def test_blank_lines_do_not_shift_the_reported_line(tmp_path):
    path = write(tmp_path, "label,a\n0,1\n\n1,2\n0,oops\n")
    with pytest.raises(DataError, match="column 'a', row 3 \\(line 5\\): 'oops' is not a number"):
        read_labelled_csv(path)
