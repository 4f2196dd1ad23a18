"""Hydra's side of the configuration: the typed schema and the ``conf_digest`` resolver.

:func:`register` stores :class:`config.PipelineConfig` in Hydra's ConfigStore
as ``pipeline_schema`` (named first in ``conf/config.yaml``'s defaults list),
so composing ``conf/`` type-checks every key: ``optim.lr=oops`` and unknown
keys fail while composing.  It also registers ``${conf_digest:}``, which
resolves to the digest of ``conf/*.yaml`` and, before that, builds the whole
PipelineConfig, so an impossible value (``optim.lr=-1``) fails composition too,
naming its key.

DVC composes ``conf/`` into ``params.yaml`` in its own process and finds this
through ``hydra.plugins_path`` (``src/hydra_plugins/backprop_conf``); the
Hydra app imports it directly.
"""

from __future__ import annotations

from pathlib import Path

from backprop.config import ConfigError, PipelineConfig, conf_digest, pipeline_config

SCHEMA_NAME = "pipeline_schema"


def find_conf_dir(start: Path | None = None) -> Path:
    """The ``conf/`` folder of the project around ``start`` (default: the working directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf" / "config.yaml").is_file():
            return folder / "conf"
    return here / "conf"


def _checked_conf_digest(*, _root_) -> str:
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(_root_, resolve=False)
    values.pop("conf_digest", None)
    try:
        pipeline_config(values, "the composed config")
    except ConfigError as err:
        # One line, without the prefix: OmegaConf adds its own context.
        raise ValueError(str(err).removeprefix("the composed config: ")) from None
    return conf_digest(find_conf_dir())


def register() -> None:
    """Idempotent: store the schema and the resolver."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name=SCHEMA_NAME, node=PipelineConfig)
    if not OmegaConf.has_resolver("conf_digest"):
        OmegaConf.register_new_resolver("conf_digest", _checked_conf_digest)


def compose_config(overrides: list[str] | None = None, conf_dir: Path | None = None):
    """The PipelineConfig that ``conf/`` composes to with ``overrides``, checked."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register()
    conf_dir = conf_dir or find_conf_dir()
    try:
        with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
            cfg = compose(config_name="config", overrides=list(overrides or []))
        OmegaConf.resolve(cfg)
        return pipeline_config(OmegaConf.to_container(cfg), "the composed config")
    except ConfigError:
        raise
    except Exception as err:
        raise ValueError(describe_config_error(err)) from None


def compose_params(output: str | Path = "params.yaml", overrides: list[str] | None = None) -> Path:
    """Compose ``conf/`` into ``output`` with DVC's own function, as ``dvc exp run`` does.

    A bad override or value raises ValueError with one line naming the key.
    """
    from dvc.utils.hydra import compose_and_dump

    conf_dir = find_conf_dir()
    root = conf_dir.parent
    output = Path(output)
    try:
        compose_and_dump(
            output, str(conf_dir), None, "config", str(root / "src"), list(overrides or [])
        )
    except Exception as err:  # Hydra and OmegaConf raise many kinds; all mean a bad config
        raise ValueError(describe_config_error(err)) from None
    return output


def describe_config_error(err: BaseException) -> str:
    """One line from Hydra's and OmegaConf's multi-line, nested messages, naming the key."""
    chain = []
    while err is not None and len(chain) < 10:
        chain.append(err)
        err = err.__cause__ or err.__context__
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
