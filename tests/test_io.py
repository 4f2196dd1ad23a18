import json
import os
import zipfile

import numpy as np
import pytest

from backprop.errors import ModelFileError, OutputError
from backprop.nn.network import MLP
from backprop.pipeline.files import npz_bytes, read_npz
from backprop.pipeline.model_files import load_model, save_model


def make_net(dtype="float32"):
    return MLP([6, 5, 4, 3], "tanh", dtype=dtype, rng=np.random.default_rng(0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_keeps_weights_metadata_and_predictions(tmp_path, dtype):
    net = make_net(dtype)
    save_model(tmp_path / "model", net, classes=["cat", "dog", "eel"], extra={"note": 1})
    loaded, meta = load_model(tmp_path / "model")
    assert loaded.layer_sizes == [6, 5, 4, 3]
    assert (loaded.activation.name, loaded.output, loaded.loss_name) == (
        "tanh",
        "softmax",
        "cross_entropy",
    )
    assert loaded.dtype == np.dtype(dtype)
    assert meta["classes"] == ["cat", "dog", "eel"] and meta["extra"] == {"note": 1}
    for a, b in zip(net.parameters(), loaded.parameters(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    X = np.random.default_rng(1).standard_normal((10, 6))
    assert np.array_equal(net.predict_proba(X), loaded.predict_proba(X))


def test_archive_is_a_plain_npz_without_pickle_or_timestamps(tmp_path):
    net = make_net()
    save_model(tmp_path / "m", net)
    arrays = read_npz(tmp_path / "m" / "weights.npz")
    assert sorted(arrays) == ["W0", "W1", "W2", "b0", "b1", "b2"]
    with zipfile.ZipFile(tmp_path / "m" / "weights.npz") as z:
        assert {info.date_time for info in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert npz_bytes({"a": np.arange(3)}) == npz_bytes({"a": np.arange(3)})


def test_shape_that_disagrees_with_the_metadata_is_refused(tmp_path):
    save_model(tmp_path / "m", make_net())
    meta_path = tmp_path / "m" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["layer_sizes"] = [6, 7, 4, 3]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError) as err:
        load_model(tmp_path / "m")
    message = str(err.value)
    assert "weights.npz: W0 has shape (6, 5)" in message
    assert "layer_sizes [6, 7, 4, 3], which needs (6, 7)" in message


def test_damaged_weights_are_detected_by_checksum(tmp_path):
    save_model(tmp_path / "m", make_net())
    path = tmp_path / "m" / "weights.npz"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="weights.npz: checksum does not match model.json"):
        load_model(tmp_path / "m")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ModelFileError, match="model.json: file not found"):
        load_model(tmp_path / "nothing")
    save_model(tmp_path / "m", make_net())
    (tmp_path / "m" / "weights.npz").unlink()
    with pytest.raises(ModelFileError, match="weights.npz: file not found"):
        load_model(tmp_path / "m")


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, W0=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="not a readable .npz archive"):
        read_npz(path)


def test_class_count_must_match_the_outputs(tmp_path):
    with pytest.raises(ValueError, match="2 class labels for 3 output units"):
        save_model(tmp_path / "m", make_net(), classes=[0, 1])
    assert not (tmp_path / "m").exists()


def test_a_full_disk_while_saving_keeps_the_previous_model_whole(
    tmp_path, monkeypatch, full_disk_for
):
    """Weights and metadata belong together: when the second cannot be written, the first
    is not replaced either, so the folder still holds a model that loads."""
    save_model(tmp_path / "m", make_net(), classes=["cat", "dog", "eel"])
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    full_disk_for(lambda path: os.path.basename(path).startswith(".model.json."))
    other = MLP([6, 5, 4, 3], "tanh", rng=np.random.default_rng(1))
    with pytest.raises(OutputError, match="model.json: no space left on the device; the previous"
                       " model is unchanged"):  # fmt: skip
        save_model(tmp_path / "m", other, classes=["cat", "dog", "eel"])
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    net, _ = load_model(tmp_path / "m")
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, make_net().weights))
