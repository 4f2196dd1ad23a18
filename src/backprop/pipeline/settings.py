"""The pipeline's settings: ``params.yaml``, the composition of ``conf/``, as one object.

Each section is the very settings class its user takes: ``model`` is the
network's :class:`ModelConfig`, ``optim`` the chosen optimizer's config,
``train`` the training loop's :class:`TrainConfig`, ``preprocess`` the split
and scaling's :class:`PreprocessConfig`.  Every value is checked where its
field is declared (see ``schema.py``); here the sections are put together, and
an error is named by file and dotted key:
``params.yaml: optim.lr must be a number > 0, got -1.0``.

The same function checks what Hydra composes (``app/compose.py`` resolves
``${conf_digest:}`` through it) and what the DVC stages read, so a setting means
the same thing through every front door.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml

from backprop.errors import ConfigError
from backprop.nn.network import ModelConfig, model_config
from backprop.nn.optimizers import OptimConfig, optim_config
from backprop.nn.training import TrainConfig
from backprop.schema import NonEmptyName, build, describe, identity, rule, settings
from backprop.tables.config import PreprocessConfig

# data.name values whose file a stage of the pipeline writes (the rest are the user's).
BUILT_IN_DATA = ("digits", "mnist5k")
IDX = "mnist_idx"  # data.name of a folder of MNIST's idx files


@settings
class DataConfig:
    """Where the data are and how to read them: a labelled CSV, or (``name: mnist_idx``)
    a folder of MNIST's four idx files."""

    # "digits", "mnist5k": built in, written by a stage; "mnist_idx": data.dir; else a CSV
    name: str = "digits"
    path: Annotated[str, rule("a file path", lambda v: v != "")] = "data/raw/digits.csv"
    label_column: str | None = None  # None: the first column
    drop_missing: bool = False  # drop rows with an empty/NaN cell instead of refusing them
    dir: str | None = None  # mnist_idx: the folder of the idx files (data.path follows it)

    def __post_init__(self) -> None:
        for key in ("dir", "path"):
            value = getattr(self, key)
            if isinstance(value, str) and value.startswith("~"):
                raise ConfigError(
                    f"must be a path without ~, which is not expanded here (the stages get "
                    f"it quoted), got {value}; give it in full: {os.path.expanduser(value)}",
                    key,
                )
        # path is conf/data/mnist_idx.yaml's ${.dir}, resolved or not (yet)
        if self.name == IDX and self.path not in (self.dir, "${.dir}"):
            raise ConfigError(
                f"must follow data.dir for data=mnist_idx, which reads the folder data.dir "
                f"({self.dir}); got {self.path}: set data.dir instead",
                "path",
            )


@settings
class RunConfig:
    """The top-level keys."""

    experiment_name: NonEmptyName = "backprop"
    # Register each finished pipeline run's model under this name in MLflow's model
    # registry (a sweep registers its best job's); null: do not register.
    registered_model_name: NonEmptyName | None = None
    conf_digest: str = ""  # digest of conf/*.yaml when params.yaml was composed


SECTIONS: dict[str, Callable[[Any], Any]] = {
    "data": lambda values: build(DataConfig, values),
    "preprocess": lambda values: build(PreprocessConfig, values),
    "model": model_config,
    "optim": optim_config,
    "train": lambda values: build(TrainConfig, values),
}


@dataclass(frozen=True)
class Settings:
    """Everything ``params.yaml`` holds, each section checked."""

    experiment_name: str
    data: DataConfig
    preprocess: PreprocessConfig
    model: ModelConfig
    optim: OptimConfig
    train: TrainConfig
    registered_model_name: str | None = None
    conf_digest: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, Any], source: str) -> Settings:
        """The settings of a params mapping; unknown keys and bad values raise ConfigError
        naming ``source`` and the dotted key."""
        top = [f.name for f in dataclasses.fields(RunConfig)]
        unknown = sorted(set(params) - set(top) - set(SECTIONS))
        if unknown:
            raise unknown_key(_first_leaf(params, unknown[0]), known_keys(params)).at(source)
        sections = {}
        for name, make in SECTIONS.items():
            values = params.get(name)
            if values is not None and not isinstance(values, Mapping):
                raise ConfigError(
                    "{key} must be a mapping of its settings (key: value lines indented under it), "
                    f"got {values!r}",
                    name,
                ).at(source)
            try:
                sections[name] = make(values)
            except ConfigError as err:
                if err.key is not None and err.key not in _section_keys(make, values):
                    raise unknown_key(f"{name}.{err.key}", known_keys(params)).at(source) from None
                raise err.within(name).at(source) from None
        try:
            run = build(RunConfig, {k: params[k] for k in top if k in params})
        except ConfigError as err:
            raise err.at(source) from None
        return cls(**{f.name: getattr(run, f.name) for f in dataclasses.fields(run)}, **sections)

    @classmethod
    def defaults(cls) -> Settings:
        return cls.from_params({}, "the defaults")

    def value(self, key: str) -> Any:
        """The value of a dotted key (``optim.lr``) or of a whole section (``optim``)."""
        value: Any = self
        for part in key.split("."):
            value = getattr(value, part)
        return value

    def as_params(self) -> dict[str, Any]:
        """The settings as plain data in params.yaml's layout, without run options."""
        params = identity(self)
        params.pop("conf_digest", None)
        return params


def known_keys(params: Mapping[str, Any]) -> list[str]:
    """The dotted keys that :meth:`Settings.from_params` takes: the top-level keys, then each
    section's, of the class its values choose (``optim.beta1`` with ``optim.name: adam``)."""
    top = [f.name for f in dataclasses.fields(RunConfig)]
    keys = [*top[:1], *SECTIONS, *top[1:]]
    for name, make in SECTIONS.items():
        keys += [f"{name}.{key}" for key in _section_keys(make, params.get(name))]
    return keys


def _section_keys(make: Callable[[Any], Any], values: Any) -> list[str]:
    """The keys of the settings class that ``make`` builds from ``values``: a key it refuses
    (unknown, or a bad value) is left out until it builds, else its defaults' class."""
    values = dict(values) if isinstance(values, Mapping) else {}
    while True:  # each turn removes a key
        try:
            return [f.name for f in dataclasses.fields(make(values))]
        except ConfigError as err:
            if err.key not in values:
                return [f.name for f in dataclasses.fields(make({}))]
            del values[err.key]


def _first_leaf(params: Mapping[str, Any], key: Any) -> str:
    """``modle.hidden_sizes`` for an unknown ``modle`` holding a mapping: the whole key given."""
    path, value = [str(key)], params[key]
    while isinstance(value, Mapping) and value:
        first = next(iter(value))
        path.append(str(first))
        value = value[first]
    return ".".join(path)


def close_keys(key: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known dotted keys most like ``key``, by :func:`difflib.get_close_matches`.

    Its last part is matched against the last parts of the known keys, whatever their
    section (``lr`` finds ``optim.lr``, ``train.epoch`` ``train.epochs``), those of its own
    section first and alone if there are any, sections only for a top-level key; a section
    that is none of the config's stands for the sections it is like (``modle.hidden_sizes``
    finds ``model.hidden_sizes``).  Matching the whole dotted keys instead would make
    ``optim.zzz`` like ``optim.lr`` by the ``optim.`` they share, and ``lr`` like nothing.
    """
    known = [k for k in known if k != key]
    section, _, name = key.rpartition(".")
    sections = {k.rpartition(".")[0] for k in known}
    if section and section not in sections:
        found = []
        for alike in difflib.get_close_matches(section, sorted(sections - {""}), n):
            within = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == alike}
            found += [within[close] for close in difflib.get_close_matches(name, within, n)]
        if found:
            return found[:n]
    by_name: dict[str, list[str]] = {}
    for k in known:
        if not section or k not in sections:
            by_name.setdefault(k.rpartition(".")[2], []).append(k)
    found = [k for close in difflib.get_close_matches(name, by_name, n) for k in by_name[close]]
    own = [k for k in found if k.rpartition(".")[0] == section]
    return list(dict.fromkeys(own or found))[:n]


def unknown_key(key: str, known: Iterable[str]) -> ConfigError:
    """``unknown key optim.lrr; did you mean optim.lr? (the keys of optim are name, lr, ...)``:
    the closest of the ``known`` dotted keys, then the keys beside it (without a close one:
    ``unknown key optim.zzz; the keys of optim are ...``)."""
    known = list(known)
    sections = {k.rpartition(".")[0] for k in known}
    parts = key.split(".")
    section = next(
        (s for s in (".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)) if s in sections),
        "",
    )
    beside = [k[len(section) + 1 :] if section else k for k in known
              if k.rpartition(".")[0] == section]  # fmt: skip
    listed = f"the keys of {section}" if section else "the top-level keys"
    listing = f"{listed} are {', '.join(beside)}"
    close = close_keys(key, known)
    if not close:
        return ConfigError(f"unknown key {{key}}; {listing}", key)
    guess = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return ConfigError(f"unknown key {{key}}; did you mean {guess}? ({listing})", key)


def yaml_problem(err: yaml.YAMLError) -> str:
    """What is wrong, in words a user acts on (PyYAML's "found character '\\t' that cannot
    start any token" is a tab used to indent)."""
    problem = str(getattr(err, "problem", None) or err).strip()
    if "'\\t'" in problem:
        return "a tab, which YAML does not allow for indenting; indent with spaces"
    if problem.startswith("found duplicate key"):
        return f"{problem}; give each key once"
    return problem


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently), as Hydra refuses it in ``conf/``."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": keys it brings may repeat
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:  # unhashable: the safe loader refuses it below
                    continue
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key}", key_node.start_mark,
                    )  # fmt: skip
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML params file (safe loader; a key given twice is an error)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("params file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read ({err})", source=str(path)) from None
    try:
        params = yaml.load(text, Loader=_UniqueKeyLoader)  # the safe loader, stricter
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"not valid YAML{where}: {yaml_problem(err)}", source=str(path)) from None
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(
            f"expected a mapping of sections, got {type(params).__name__}", source=str(path)
        )
    return params


def conf_digest(conf_dir: str | os.PathLike) -> str:
    """SHA-256 (first 16 hex digits) of every ``*.yaml`` under ``conf_dir``, names included,
    but those under ``hydra/``: launchers and sweepers, which params.yaml never holds."""
    conf_dir = Path(conf_dir)
    digest = hashlib.sha256()
    for path in sorted(conf_dir.rglob("*.yaml")):
        if path.relative_to(conf_dir).parts[0] == "hydra":
            continue
        digest.update(path.relative_to(conf_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def check_fresh(config: Settings, conf_dir: str | os.PathLike, source: str) -> None:
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


DEFAULT_PARAMS = "params.yaml"


def load_settings(path: str | os.PathLike | None = None) -> tuple[Settings, str | None]:
    """The settings of the params file named, else of ./params.yaml if there is one, else the
    defaults; and the file they came from.  A params file composed from an older ``conf/``
    (beside it) is refused."""
    if path is None:
        if not Path(DEFAULT_PARAMS).exists():
            return Settings.defaults(), None
        path = DEFAULT_PARAMS
    settings = Settings.from_params(read_params(path), str(path))
    check_fresh(settings, Path(path).resolve().parent / "conf", str(path))
    return settings, str(path)


def describe_settings(keys: tuple[str, ...]) -> str:
    """``key default`` for each setting under ``keys`` (sections expanded), with the choices
    of a setting that names one: for ``--help``."""
    defaults = Settings.defaults()
    parts = []
    for key in keys:
        value = defaults.value(key)
        fields = dataclasses.fields(value) if dataclasses.is_dataclass(value) else None
        if fields is None:
            parts.append(f"{key} {_shown(value)}")
            continue
        hints = typing.get_type_hints(type(value), include_extras=True)
        for f in fields:
            rule = describe(hints[f.name])
            choices = f" ({rule})" if rule.startswith("one of") else ""
            parts.append(f"{key}.{f.name} {_shown(getattr(value, f.name))}{choices}")
    return ", ".join(parts)


def _shown(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
