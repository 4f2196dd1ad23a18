"""Hydra's side of the configuration: composing ``conf/``, checked as the stages check it.

:func:`register` adds the ``${conf_digest:}`` resolver that ``conf/config.yaml``
uses: it resolves to the digest of ``conf/*.yaml`` (how a stale ``params.yaml``
is told from one composed with overrides) and, before that, builds the whole
:class:`~backprop.pipeline.settings.Settings`, so composing fails on a wrong
type, an impossible value or an unknown key with one line naming the key,
through whichever front door composes.

DVC composes ``conf/`` into ``params.yaml`` in its own process and finds this
through ``hydra.plugins_path`` (``src/hydra_plugins/backprop_conf``); the
Hydra app imports it directly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

import yaml

from backprop.app.command import Command
from backprop.errors import ConfigError
from backprop.pipeline.project import conf_dir as project_conf_dir
from backprop.pipeline.settings import Settings, conf_digest, yaml_problem

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
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register()
    conf_dir = conf_dir or project_conf_dir()
    check_choices(list(overrides or []), conf_dir)
    try:
        with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
            cfg = compose(config_name="config", overrides=list(overrides or []))
        OmegaConf.resolve(cfg)
        values = OmegaConf.to_container(cfg)
    except Exception as err:  # Hydra and OmegaConf raise many kinds; all mean a bad config
        raise ConfigError(describe_config_error(err)) from None
    try:
        return Settings.from_params(values, COMPOSED)
    except ConfigError as err:
        raise ConfigError(err.text, err.key) from None


def compose_params(output: str | Path = "params.yaml", overrides: list[str] | None = None) -> Path:
    """Compose ``conf/`` into ``output`` with DVC's own function, as ``dvc exp run`` does.

    A bad override or value raises ConfigError with one line naming the key.
    """
    from dvc.utils.hydra import compose_and_dump

    conf_dir = project_conf_dir()
    check_choices(list(overrides or []), conf_dir)
    output = Path(output)
    try:
        compose_and_dump(
            output, str(conf_dir), None, "config", str(conf_dir.parent / "src"),
            list(overrides or []),
        )  # fmt: skip
    except Exception as err:  # Hydra and OmegaConf raise many kinds; all mean a bad config
        raise ConfigError(describe_config_error(err)) from None
    return output


def describe_config_error(err: BaseException) -> str:
    """One line from Hydra's and OmegaConf's multi-line, nested messages, naming the key."""
    chain = []
    while err is not None and len(chain) < 10:
        chain.append(err)
        err = err.__cause__ or err.__context__
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
