"""Hydra's side of the configuration: composing ``conf/``, checked as the stages check it.

:func:`register` adds the ``${conf_digest:}`` resolver that ``conf/config.yaml``
uses: it resolves to the digest of ``conf/*.yaml`` (how a stale ``params.yaml``
is told from one composed with overrides) and, before that, builds the whole
:class:`~backprop.pipeline.settings.Settings`, so composing fails on a wrong
type, an impossible value or an unknown key with one line naming the key,
through whichever front door composes.

DVC composes ``conf/`` into ``params.yaml`` in its own process and finds this
through ``hydra.plugins_path`` (``src/hydra_plugins/backprop_conf``), whose plugin
also runs :func:`check_composition` on DVC's overrides before DVC composes; the
Hydra app imports it directly.

A key that ``conf/`` does not have is named with the closest keys it has:
``unknown key optim.lrr; did you mean optim.lr? (the keys of optim are ...)``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from backprop.app.command import Command
from backprop.errors import ConfigError
from backprop.pipeline.project import conf_dir as project_conf_dir
from backprop.pipeline.settings import Settings, conf_digest, unknown_key, yaml_problem

COMPOSED = "the composed config"


def _checked_conf_digest(*, _root_: Any) -> str:
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(_root_, resolve=False)
    values.pop("conf_digest", None)
    values.pop("hydra", None)
    try:
        Settings.from_params(values, COMPOSED)
    except ConfigError as err:
        # One line, without the source: OmegaConf adds its own context.
        raise ConfigError(err.text, err.key) from None
    return conf_digest(project_conf_dir())


def register() -> None:
    """Idempotent: add the ``conf_digest`` resolver."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("conf_digest"):
        OmegaConf.register_new_resolver("conf_digest", _checked_conf_digest)


# Keys whose value picks a plug-in that has its own file in a conf group: setting the key
# alone would keep the other file's settings (optim.name=rmsprop with sgd's lr of 1.0).
CHOSEN_BY_FILE = {"optim.name": "optim"}


def check_choices(overrides: list[str], conf_dir: Path) -> None:
    """Refuse ``optim.name=rmsprop`` unless the optim file chosen is rmsprop's own."""
    given = dict(o.lstrip("+").split("=", 1) for o in overrides if "=" in o)
    for key, group in CHOSEN_BY_FILE.items():
        value = given.get(key)
        if value is None or not (conf_dir / group / f"{value}.yaml").is_file():
            continue
        chosen = given.get(group) or _default_choice(conf_dir, group)
        if value != chosen:
            raise ConfigError(
                f"{key}={value} would keep the other settings of {group}/{chosen}.yaml "
                f"(its lr among them); choose the file instead: {group}={value}"
            )


def _default_choice(conf_dir: Path, group: str) -> str | None:
    try:
        with open(conf_dir / "config.yaml", encoding="utf-8") as f:  # marks name the file
            config = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(describe_config_error(err)) from None
    defaults = config.get("defaults", []) if isinstance(config, dict) else []
    return next((d[group] for d in defaults if isinstance(d, dict) and group in d), None)


def compose_config(overrides: list[str] | None = None, conf_dir: Path | None = None) -> Settings:
    """The settings that ``conf/`` composes to with ``overrides``; ConfigError in one line."""
    conf_dir = conf_dir or project_conf_dir()
    check_choices(list(overrides or []), conf_dir)
    values = check_composition(conf_dir, list(overrides or []))
    try:
        return Settings.from_params(values, COMPOSED)
    except ConfigError as err:
        raise ConfigError(err.text, err.key) from None


def check_composition(
    conf_dir: Path, overrides: Sequence[str], config_name: str = "config"
) -> dict[str, Any]:
    """``conf/`` composed with ``overrides`` and resolved, as DVC composes it (the
    ``conf_digest`` resolver checks every value); ConfigError in one line if it fails."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register()
    try:
        with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides))
        OmegaConf.resolve(cfg)
        return OmegaConf.to_container(cfg)
    except Exception as err:  # Hydra and OmegaConf raise many kinds; all mean a bad config
        message = describe_config_error(err, conf_dir, overrides, config_name)
        raise ConfigError(message) from None


def compose_params(output: str | Path = "params.yaml", overrides: list[str] | None = None) -> Path:
    """Compose ``conf/`` into ``output`` with DVC's own function, as ``dvc exp run`` does.

    A bad override or value raises ConfigError with one line naming the key.
    """
    from dvc.utils.hydra import compose_and_dump

    conf_dir = project_conf_dir()
    overrides = list(overrides or [])
    check_choices(overrides, conf_dir)
    output = Path(output)
    try:
        compose_and_dump(
            output, str(conf_dir), None, "config", str(conf_dir.parent / "src"), overrides
        )  # fmt: skip
    except Exception as err:  # Hydra and OmegaConf raise many kinds; all mean a bad config
        raise ConfigError(describe_config_error(err, conf_dir, overrides)) from None
    return output


def describe_config_error(
    err: BaseException,
    conf_dir: Path | None = None,
    overrides: Sequence[str] = (),
    config_name: str = "config",
) -> str:
    """One line from Hydra's and OmegaConf's multi-line, nested messages, naming the key.

    Given the ``conf_dir`` and ``overrides`` composed, an override of a key that the config
    does not have is named with the closest keys it has.
    """
    chain = list(_chain(err))
    key = _unknown_override(chain, overrides) if conf_dir is not None else None
    if key is not None:
        known = _known_keys(Path(conf_dir), [o for o in overrides if _key(o) != key], config_name)
        if known:
            return str(unknown_key(key, known))
    for e in chain:  # a conf file that is not YAML: its file and line
        mark = getattr(e, "problem_mark", None)
        if isinstance(e, yaml.YAMLError) and mark is not None:
            name = mark.name
            with contextlib.suppress(ValueError):
                name = os.path.relpath(name) if os.path.isabs(name) else name
            return f"{name}, line {mark.line + 1}, column {mark.column + 1}: {yaml_problem(e)}"
    for e in chain:  # our own check, raised inside the conf_digest resolver
        if "raised while resolving interpolation: " in str(e):
            return str(e).split("raised while resolving interpolation: ", 1)[1].splitlines()[0]
    for e in chain:  # OmegaConf's type and key errors carry the full key
        key = getattr(e, "full_key", None)
        if key:
            return f"{key}: {str(e).splitlines()[0]}"
    lines = [line.strip() for line in str(chain[0]).splitlines() if line.strip()]
    first = lines[0] if lines else type(chain[0]).__name__
    options = [line for line in lines[1:] if not line.startswith(("Config search", "provider="))]
    if first.startswith("In ") and "Could not find" in first and len(options) > 1:
        return f"{first}; {options[0].rstrip(':').lower()}: {', '.join(options[1:])}"
    return first


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    """The exception and those it was raised from or during, up to 10."""
    for _ in range(10):
        if err is None:
            return
        yield err
        err = err.__cause__ or err.__context__


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def _unknown_override(chain: list[BaseException], overrides: Sequence[str]) -> str | None:
    """The key of the override (``optim.lrr=0.1``, no ``+``) that Hydra could not apply
    because the config has no such key: OmegaConf's "not in struct" names it, or the first
    part of it that is missing (``modle`` of ``modle.hidden_sizes``)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    missing = next(
        (e.full_key for e in chain
         if isinstance(e, ConfigAttributeError | ConfigKeyError) and e.full_key),
        None,
    )  # fmt: skip
    if not missing:
        return None
    keys = [_key(o) for o in overrides if not o.startswith(("+", "~"))]
    return next((k for k in keys if k == missing or k.startswith(missing + ".")), None)


def _known_keys(conf_dir: Path, overrides: list[str], config_name: str) -> list[str]:
    """The dotted keys of ``conf/`` composed with the other overrides (their choices of
    files decide the keys: ``optim=adam`` has ``optim.beta1``), unresolved; an override that
    fails too is left out, and all of them if another kind fails."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    while True:  # each turn leaves out an override, or all
        try:
            with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
                cfg = compose(config_name=config_name, overrides=overrides)
            values = OmegaConf.to_container(cfg, resolve=False)
            break
        except Exception as err:  # Hydra and OmegaConf raise many kinds
            if not overrides:
                return []
            other = _unknown_override(list(_chain(err)), overrides)
            overrides = [o for o in overrides if _key(o) != other] if other else []
    values.pop("hydra", None)
    return list(_dotted(values))


def _dotted(values: dict[Any, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        yield prefix + str(key)
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")


def _params_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    p.add_argument("--output", default="params.yaml", help="default params.yaml")


def _params(args: argparse.Namespace) -> int:
    path = compose_params(args.output, args.overrides)
    print(f"composed conf/ into {path}")
    return 0


PARAMS = Command(
    description="Compose the Hydra configuration in conf/ (with optional overrides such as "
    "optim.lr=0.1) and write it to params.yaml through DVC's own composition, so the file "
    "is byte for byte what `dvc exp run` would write.",
    arguments=_params_arguments,
    run=_params,
)
