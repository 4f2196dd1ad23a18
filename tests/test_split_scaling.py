import numpy as np
import pytest

from backprop.errors import ConfigError, DataError
from backprop.tables.config import PreprocessConfig
from backprop.tables.scaling import MinMaxScaler
from backprop.tables.split import stratified_split


def cfg(val: float, test: float, seed: int) -> PreprocessConfig:
    return PreprocessConfig(val_fraction=val, test_fraction=test, seed=seed)


def labels(counts):
    return np.concatenate([np.full(n, c) for c, n in enumerate(counts)])


def test_split_is_stratified_disjoint_and_complete():
    y = labels([100, 60, 40])
    split = stratified_split(y, cfg(0.15, 0.15, 0))
    every = np.concatenate([split.train, split.val, split.test])
    assert sorted(every.tolist()) == list(range(200))
    for part, share in ((split.val, 0.15), (split.test, 0.15), (split.train, 0.7)):
        counts = np.bincount(y[part], minlength=3)
        np.testing.assert_allclose(counts / [100, 60, 40], share, atol=0.02)


def test_split_depends_only_on_the_seed():
    y = labels([50, 50])
    a, b, c = (stratified_split(y, cfg(0.2, 0.2, s)) for s in (1, 1, 2))
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "val", "test"))
    assert not np.array_equal(a.test, c.test)


def test_no_validation_split_when_its_fraction_is_zero():
    split = stratified_split(labels([10, 10]), cfg(0.0, 0.3, 0))
    assert len(split.val) == 0 and len(split.test) == 6 and len(split.train) == 14


def test_a_class_too_small_is_named_with_its_size():
    with pytest.raises(DataError, match="class 'rare' has 2 rows; .* needs at least 3 rows"):
        stratified_split(labels([30, 2]), cfg(0.15, 0.15, 0), classes=["common", "rare"])


@pytest.mark.parametrize("val,test", [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.1), (0.1, 0.0)])
def test_impossible_fractions_are_refused_by_the_one_schema(val, test):
    with pytest.raises(ConfigError, match="fraction"):
        PreprocessConfig(val_fraction=val, test_fraction=test)


def test_per_feature_scaling_uses_the_training_rows_only():
    train = np.array([[0.0, 10.0, 5.0], [4.0, 20.0, 5.0]])
    other = np.array([[2.0, 30.0, 7.0], [-4.0, 15.0, 5.0]])
    scaler = MinMaxScaler.fit(train)
    assert scaler.data_min.tolist() == [0, 10, 5] and scaler.data_max.tolist() == [4, 20, 5]
    np.testing.assert_allclose(scaler.transform(train), [[0, 0, 0], [1, 1, 0]])
    # Outside the training range: clipped by default; the constant column maps to 0.
    np.testing.assert_allclose(scaler.transform(other), [[0.5, 1, 0], [0, 0.5, 0]])
    free = MinMaxScaler.fit(train, clip=False)
    np.testing.assert_allclose(free.transform(other), [[0.5, 2, 0], [-1, 0.5, 0]])
    assert scaler.transform(other).dtype == np.float32


def test_global_mode_is_the_articles_formula():
    X = np.array([[0.0, 50.0], [100.0, 200.0]])
    scaler = MinMaxScaler.fit(X, mode="global")
    np.testing.assert_allclose(scaler.transform(X), (X - X.min()) / (X.max() - X.min()))


def test_a_constant_matrix_scales_to_zero_without_warnings():
    scaler = MinMaxScaler.fit(np.full((3, 2), 7.0), mode="global")
    assert not scaler.transform(np.full((2, 2), 9.0)).any()


def test_scaler_round_trips_through_its_dict():
    scaler = MinMaxScaler.fit(np.array([[1.0, 2.0], [3.0, 5.0]]), clip=False)
    again = MinMaxScaler.from_dict(scaler.to_dict())
    X = np.array([[0.1, 9.0]])
    assert np.array_equal(scaler.transform(X), again.transform(X))


def test_finite_values_beyond_float32_scale_like_any_value_out_of_range():
    """predict reads doubles; 1e39 overflows float32 but, scaled, it is just above the max."""
    train = np.array([[0.0, 10.0, 5.0], [4.0, 20.0, 5.0]])
    other = np.array([[1e39, -1e300, 1e39], [2.0, 1e300, 5.0]])
    clipped = MinMaxScaler.fit(train).transform(other)  # pytest: an overflow warning fails
    np.testing.assert_array_equal(clipped, [[1, 0, 0], [0.5, 1, 0]])
    free = MinMaxScaler.fit(train, clip=False).transform(other, dtype="float64")
    np.testing.assert_allclose(free, [[2.5e38, -1e299, 0], [0.5, 1e299, 0]])
    inside = np.array([[1.2345678, 17.3, 5.0]])  # cast first, then scaled: preprocess's bits
    scaler = MinMaxScaler.fit(train)
    assert np.array_equal(
        scaler.transform(inside), scaler.transform_in_place(inside.astype(np.float32))
    )
