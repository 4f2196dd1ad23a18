# Found by Hydra's plugin discovery (DVC's hydra.plugins_path points at src/):
# importing it registers backprop's config schema and resolvers.
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from backprop.app.compose import check_composition, register
from backprop.errors import ConfigError

register()

_checking = False  # check_composition composes too, which calls the plugin again


class CheckDvcOverrides(SearchPathPlugin):
    """``dvc exp run -S optim.lrr=0.1``: our one line first, not DVC's many.

    DVC composes conf/ in its own process (``dvc.utils.hydra.compose_and_dump``) and
    reports a Hydra error as "unexpected error" in several lines; and Hydra refuses an
    override of a key that conf/ lacks while it composes, before any resolver of ours
    runs, so ``${conf_digest:}`` cannot catch that one.  Hydra calls this plugin in
    ``initialize_config_dir``, inside compose_and_dump and before it composes: if the
    composition DVC is about to make is of our conf/ (its config uses ``${conf_digest:}``)
    this composes it first, with the very overrides and config, through
    :func:`~backprop.app.compose.check_composition`, and on a ConfigError raises DVC's own
    InvalidArgumentError with our one line; DVC prints it as ``ERROR: <line>`` and
    stashes, queues and runs nothing.  It refuses only what DVC's composition, the same,
    would then refuse; anything valid is composed by DVC as before.

    DVC gives a plugin no other way to learn the overrides: they are read from the
    arguments of the compose_and_dump call on the stack (its documented parameters).  In
    any other process, or another project's composition, it does nothing.
    """

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        global _checking
        composing = None if _checking else _dvc_composition()
        if composing is None:
            return
        conf_dir, config_name, overrides = composing
        _checking = True
        try:
            check_composition(conf_dir, overrides, config_name)
        except ConfigError as err:
            from dvc.exceptions import InvalidArgumentError

            raise InvalidArgumentError(str(err)) from None
        finally:
            _checking = False


def _dvc_composition() -> tuple[Path, str, list[str]] | None:
    """The conf folder, config name and overrides of the ``compose_and_dump`` call of DVC
    that this runs in, if it composes our conf/; else None."""
    import sys

    dvc_hydra = sys.modules.get("dvc.utils.hydra")  # not imported: not DVC composing
    code = getattr(getattr(dvc_hydra, "compose_and_dump", None), "__code__", None)
    frame = inspect.currentframe() if code is not None else None
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    if frame is None:
        return None
    arguments: dict[str, Any] = frame.f_locals
    conf_dir, config_name = arguments.get("config_dir"), arguments.get("config_name")
    overrides = arguments.get("overrides")
    if not (conf_dir and isinstance(config_name, str) and isinstance(overrides, list)):
        return None  # a config module, or a DVC whose compose_and_dump is another
    try:
        primary = (Path(conf_dir) / f"{config_name}.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "${conf_digest:}" not in primary:  # another project's conf
        return None
    return Path(conf_dir), config_name, [str(o) for o in overrides]
