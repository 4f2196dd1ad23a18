"""Settings as small dataclasses, and reading them from a params file.

Each dataclass checks its values in ``__post_init__`` and names the offending
key; :func:`section` builds one from a section of ``params.yaml`` and refuses
keys it does not know, so a typo fails instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from backprop.scaling import MODES as SCALING_MODES

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad setting; the message names the file and the key."""


@dataclass(frozen=True)
class DataConfig:
    """Where the labelled CSV is and how to read it."""

    name: str = "digits"
    path: str = "data/raw/digits.csv"
    label_column: str | None = None  # None: the first column
    drop_missing: bool = False  # drop rows with an empty/NaN cell instead of refusing them

    def __post_init__(self):
        _need(isinstance(self.path, str) and self.path != "", "path", "a file path", self.path)
        _need(
            self.label_column is None or isinstance(self.label_column, str),
            "label_column",
            "a column name or null",
            self.label_column,
        )
        _need(
            isinstance(self.drop_missing, bool), "drop_missing", "true or false", self.drop_missing
        )


@dataclass(frozen=True)
class PreprocessConfig:
    """How to split and scale."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    scaling: str = "per_feature"  # or "global": the article's single min and max
    clip: bool = True  # clip values outside the training range to [0, 1]

    def __post_init__(self):
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            _need(_is_number(value) and 0 <= value < 1, key, "a number in [0, 1)", value)
        _need(
            self.val_fraction + self.test_fraction < 1,
            "val_fraction",
            f"small enough that val_fraction + test_fraction < 1 (test_fraction is "
            f"{self.test_fraction})",
            self.val_fraction,
        )
        _need(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _need(
            self.scaling in SCALING_MODES,
            "scaling",
            f"one of {', '.join(SCALING_MODES)}",
            self.scaling,
        )
        _need(isinstance(self.clip, bool), "clip", "true or false", self.clip)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _need(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def read_params(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML params file (safe loader)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str, cls: type[T], source: str) -> T:
    """``cls`` built from ``params[name]`` (defaults where absent).

    Unknown keys and bad values raise ConfigError naming ``source`` and the
    dotted key, for instance ``params.yaml: preprocess.val_fraction must be ...``.
    """
    values = params.get(name) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {name} must be a mapping of settings")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {name}.{unknown[0]}; the keys of {name} are {', '.join(known)}"
        )
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {name}.{err}") from None
