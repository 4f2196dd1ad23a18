"""The pipeline's settings: one dataclass per config group, and reading ``params.yaml``.

The same dataclasses are the typed schema Hydra composes ``conf/`` against
(see ``conf_store.py``) and what the DVC stages build from ``params.yaml``,
so a setting means the same thing through every front door.  Each checks its
values in ``__post_init__`` and names the offending key; :func:`section` refuses
keys it does not know, so a typo fails instead of being ignored.

They are plain (not frozen) dataclasses because OmegaConf merges overrides
into them; nothing in the code mutates one after it is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from backprop.activations import ACTIVATIONS
from backprop.losses import HEADS
from backprop.network import DTYPES
from backprop.optimizers import OPTIMIZERS, SCHEDULES
from backprop.scaling import MODES as SCALING_MODES
from backprop.training import TrainConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad setting; the message names the file and the key."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _need(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def _one_of(key: str, value: Any, known) -> None:
    _need(value in known, key, f"one of {', '.join(map(str, known))}", value)


@dataclass
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


@dataclass
class PreprocessConfig:
    """How to split and scale."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    scaling: str = "per_feature"  # or "global": the article's single min and max
    clip: bool = True  # clip values outside the training range to [0, 1]

    def __post_init__(self):
        v, t = self.val_fraction, self.test_fraction
        # 0 is a choice for validation (no early stopping then), never for the test split.
        _need(_is_number(v) and 0 <= v < 1, "val_fraction", "a number in [0, 1)", v)
        _need(_is_number(t) and 0 < t < 1, "test_fraction", "a number in (0, 1)", t)
        _need(
            self.val_fraction + self.test_fraction < 1,
            "val_fraction",
            f"small enough that val_fraction + test_fraction < 1 (test_fraction is "
            f"{self.test_fraction})",
            self.val_fraction,
        )
        _need(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _one_of("scaling", self.scaling, SCALING_MODES)
        _need(isinstance(self.clip, bool), "clip", "true or false", self.clip)


@dataclass
class ModelConfig:
    """The network: hidden layers, activation, output/loss pair, precision."""

    name: str = "seed"
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 64])
    activation: str = "sigmoid"
    output: str = "softmax"
    loss: str = "cross_entropy"
    dtype: str = "float32"

    def __post_init__(self):
        sizes = list(self.hidden_sizes) if isinstance(self.hidden_sizes, list | tuple) else None
        _need(
            bool(sizes) and all(_is_int(s) and s >= 1 for s in sizes),
            "hidden_sizes",
            "a non-empty list of integers >= 1",
            self.hidden_sizes,
        )
        _one_of("activation", self.activation, sorted(ACTIVATIONS))
        pairs = [f"{o} + {loss}" for o, loss in HEADS]
        _need(
            (self.output, self.loss) in HEADS,
            "output",
            f"paired with its loss as one of {', '.join(pairs)}",
            f"{self.output} + {self.loss}",
        )
        _one_of("dtype", self.dtype, DTYPES)


@dataclass
class OptimConfig:
    """The update rule and its learning rate (``name`` picks which fields apply)."""

    name: str = "sgd"
    lr: float = 1.0
    momentum: float = 0.9  # momentum
    beta1: float = 0.9  # adam
    beta2: float = 0.999  # adam
    eps: float = 1e-8  # adam
    weight_decay: float = 0.0  # L2 penalty on the weights (not the biases)
    schedule: str = "constant"
    gamma: float = 0.5  # step and exponential schedules
    step_size: int = 10  # step schedule, in epochs
    min_lr: float = 0.0  # cosine schedule

    def __post_init__(self):
        _one_of("name", self.name, list(OPTIMIZERS))
        _need(_is_number(self.lr) and self.lr > 0, "lr", "a number > 0", self.lr)
        for key in ("momentum", "beta1", "beta2"):
            value = getattr(self, key)
            _need(_is_number(value) and 0 <= value < 1, key, "a number in [0, 1)", value)
        _need(_is_number(self.eps) and self.eps > 0, "eps", "a number > 0", self.eps)
        _need(
            _is_number(self.weight_decay) and self.weight_decay >= 0,
            "weight_decay",
            "a number >= 0",
            self.weight_decay,
        )
        _one_of("schedule", self.schedule, SCHEDULES)
        _need(_is_number(self.gamma) and self.gamma > 0, "gamma", "a number > 0", self.gamma)
        _need(_is_int(self.step_size) and self.step_size >= 1, "step_size", ">= 1", self.step_size)
        _need(_is_number(self.min_lr) and self.min_lr >= 0, "min_lr", ">= 0", self.min_lr)


@dataclass
class TrainingConfig:
    """Epochs, batches, the seed of initialisation and shuffling, early stopping."""

    epochs: int = 300
    batch_size: int = 16
    seed: int = 0
    patience: int | None = 20  # epochs without a better val_loss before stopping; null: never
    min_delta: float = 0.0
    resume: bool = False  # go on from the checkpoint of an interrupted run of these settings

    def __post_init__(self):
        _need(_is_int(self.epochs) and self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        _need(isinstance(self.resume, bool), "resume", "true or false", self.resume)
        _need(
            _is_int(self.batch_size) and self.batch_size >= 1,
            "batch_size",
            "an integer >= 1",
            self.batch_size,
        )
        _need(_is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0", self.seed)
        _need(
            self.patience is None or (_is_int(self.patience) and self.patience >= 1),
            "patience",
            "an integer >= 1 or null",
            self.patience,
        )
        _need(
            _is_number(self.min_delta) and self.min_delta >= 0,
            "min_delta",
            "a number >= 0",
            self.min_delta,
        )


SECTIONS = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "train": TrainingConfig,
}


@dataclass
class PipelineConfig:
    """Everything ``params.yaml`` holds: the composition of ``conf/``."""

    experiment_name: str = "backprop"
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)
    # Register each finished pipeline run's model under this name in MLflow's model
    # registry (a sweep registers its best job's); null: do not register.
    registered_model_name: str | None = None
    conf_digest: str = ""  # digest of conf/*.yaml when params.yaml was composed

    def __post_init__(self):
        _need(
            isinstance(self.experiment_name, str) and self.experiment_name.strip() != "",
            "experiment_name",
            "a non-empty name",
            self.experiment_name,
        )
        _need(
            self.registered_model_name is None
            or (isinstance(self.registered_model_name, str) and self.registered_model_name.strip()),
            "registered_model_name",
            "a non-empty name or null",
            self.registered_model_name,
        )

    def train_config(self) -> TrainConfig:
        """The core's TrainConfig for these settings."""
        o, t = self.optim, self.train
        return TrainConfig(
            epochs=t.epochs,
            batch_size=t.batch_size,
            learning_rate=float(o.lr),
            optimizer=o.name,
            momentum=float(o.momentum),
            beta1=float(o.beta1),
            beta2=float(o.beta2),
            eps=float(o.eps),
            weight_decay=float(o.weight_decay),
            lr_schedule=o.schedule,
            lr_gamma=float(o.gamma),
            lr_step_size=o.step_size,
            lr_min=float(o.min_lr),
            patience=t.patience,
            min_delta=float(t.min_delta),
        )


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


def pipeline_config(params: dict[str, Any], source: str) -> PipelineConfig:
    """The whole PipelineConfig from a params mapping; unknown keys are errors."""
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]}; the top-level keys are {', '.join(sorted(known))}"
        )
    sections = {name: section(params, name, cls, source) for name, cls in SECTIONS.items()}
    try:
        return PipelineConfig(
            experiment_name=params.get("experiment_name", "backprop"),
            registered_model_name=params.get("registered_model_name"),
            conf_digest=str(params.get("conf_digest") or ""),
            **sections,
        )
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def conf_digest(conf_dir: str | os.PathLike) -> str:
    """SHA-256 (first 16 hex digits) of every ``*.yaml`` under ``conf_dir``, names included."""
    conf_dir = Path(conf_dir)
    digest = hashlib.sha256()
    for path in sorted(conf_dir.rglob("*.yaml")):
        digest.update(path.relative_to(conf_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def check_fresh(config: PipelineConfig, conf_dir: str | os.PathLike, source: str) -> None:
    """Refuse a params file composed from another state of ``conf/``.

    ``dvc exp run -S key=value`` composes conf/ with overrides: the digest then
    matches, because it is of conf/ itself, so overrides are never staleness.
    """
    if not Path(conf_dir).is_dir():
        return
    current = conf_digest(conf_dir)
    if config.conf_digest != current:
        raise ConfigError(
            f"{source} is stale: {conf_dir}/ changed after it was composed "
            f"(conf_digest {config.conf_digest or 'missing'}, conf/ now {current}); "
            "run `make params` to compose it again, or `dvc exp run`"
        )
