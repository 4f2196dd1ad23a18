"""A trained model as files: ``weights.npz`` and ``model.json``.

``weights.npz`` holds ``W0, b0, W1, b1, ...``; ``model.json`` describes them
(layer sizes, activation and its options, output, loss, dtype, class labels,
the SHA-256 of the weights), so prediction needs no training config.  The
archive is byte-for-byte a function of the weights, so equal weights give
equal hashes (for DVC and for tests).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backprop.errors import ConfigError, ModelFileError
from backprop.nn.activations import make_activation
from backprop.nn.network import MLP
from backprop.pipeline.files import atomic_write_files, npz_bytes, read_npz

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.npz"
METADATA_FILE = "model.json"


def save_model(
    directory: str | os.PathLike,
    network: MLP,
    classes: list[Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``network`` to ``directory`` (created if needed); returns the folder.

    ``classes`` are the original labels of the output units, in order;
    ``extra`` is stored under ``"extra"`` in the metadata (a scaler, say).
    """
    directory = Path(directory)
    arrays = {}
    for i, (w, b) in enumerate(zip(network.weights, network.biases)):
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    data = npz_bytes(arrays)
    if classes is not None and len(classes) != network.layer_sizes[-1]:
        raise ValueError(f"{len(classes)} class labels for {network.layer_sizes[-1]} output units")
    metadata = {
        "format_version": FORMAT_VERSION,
        "layer_sizes": network.layer_sizes,
        "activation": network.activation.name,
        "output": network.output,
        "loss": network.loss_name,
        "dtype": network.dtype.name,
        # only when it has some, so that older model.json files stay byte-identical
        **({"activation_options": options} if (options := network.activation.options()) else {}),
        "classes": list(classes) if classes is not None else None,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "extra": dict(extra or {}),
    }
    # Both written before either replaces its file (a full disk keeps the previous model
    # whole), then the metadata last: a folder whose metadata exists has its weights too.
    files = {
        directory / WEIGHTS_FILE: data,
        directory / METADATA_FILE: (json.dumps(metadata, indent=2) + "\n").encode("utf-8"),
    }
    atomic_write_files(files, "model")
    return directory


def load_model(directory: str | os.PathLike) -> tuple[MLP, dict[str, Any]]:
    """The network saved in ``directory`` and its metadata.

    Raises ModelFileError, naming the file, when a file is missing, damaged, or
    disagrees with the metadata.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / METADATA_FILE, directory / WEIGHTS_FILE
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(
            f"{meta_path}: file not found; is {directory} a saved model?"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{meta_path}: not valid JSON ({err})") from None
    required = ("layer_sizes", "activation", "output", "loss", "dtype")
    missing = [key for key in required if key not in metadata]
    if missing:
        raise ModelFileError(f"{meta_path}: missing keys {', '.join(missing)}")
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{weights_path}: file not found") from None
    expected = metadata.get("weights_sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ModelFileError(
            f"{weights_path}: checksum does not match {meta_path.name}; the file is damaged "
            "or from another model"
        )
    arrays = read_npz(weights_path, data)
    try:
        activation = make_activation(
            metadata["activation"], **(metadata.get("activation_options") or {})
        )
        network = MLP(
            metadata["layer_sizes"],
            activation=activation,
            output=metadata["output"],
            loss=metadata["loss"],
            dtype=metadata["dtype"],
        )
    except (ConfigError, TypeError) as err:
        raise ModelFileError(f"{meta_path}: {err}") from None
    for i, (w, b) in enumerate(zip(network.weights, network.biases)):
        for name, target in ((f"W{i}", w), (f"b{i}", b)):
            if name not in arrays:
                raise ModelFileError(f"{weights_path}: array {name} missing")
            if arrays[name].shape != target.shape:
                raise ModelFileError(
                    f"{weights_path}: {name} has shape {arrays[name].shape} but "
                    f"{meta_path.name} says layer_sizes {network.layer_sizes}, "
                    f"which needs {target.shape}"
                )
            target[...] = arrays[name]
    extra_arrays = sorted(set(arrays) - {f"{p}{i}" for i in range(network.n_layers) for p in "Wb"})
    if extra_arrays:
        raise ModelFileError(
            f"{weights_path}: unexpected arrays {', '.join(extra_arrays)} for "
            f"layer_sizes {network.layer_sizes}"
        )
    return network, metadata
