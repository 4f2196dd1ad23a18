"""Update rules, one module each: given parameters and their gradients, move the parameters.

Each optimizer updates the arrays in place and may overwrite the gradient
arrays, which are scratch space refilled by every backward pass.  Its settings
are a subclass of :class:`OptimConfig` (the ``optim`` section: ``name``, ``lr``,
weight decay and the learning-rate schedule, plus the optimizer's own options),
so an option belongs to exactly one optimizer and a key of another is an error.

Adding one is adding a module here: a subclass of :class:`Optimizer` with a
``name`` and a ``Config`` registers itself in :data:`OPTIMIZERS`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backprop.errors import ConfigError
from backprop.nn.optimizers.base import OPTIMIZERS, OptimConfig, Optimizer, scheduled_lr
from backprop.schema import build

__all__ = ["OPTIMIZERS", "OptimConfig", "Optimizer", "make_optimizer", "optim_config",
           "scheduled_lr"]  # fmt: skip

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def optim_config(values: Mapping[str, Any] | None = None, **overrides: Any) -> OptimConfig:
    """The settings of the optimizer that ``values["name"]`` names (default sgd)."""
    values = {**(values or {}), **overrides}
    name = values.get("name", "sgd")
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ConfigError(f"must be one of {', '.join(OPTIMIZERS)}, got {name!r}", "name")
    return build(OPTIMIZERS[name].Config, values)


def make_optimizer(config: OptimConfig, params: Sequence[np.ndarray]) -> Optimizer:
    """The optimizer ``config.name`` for ``params``, with its options from ``config``."""
    return OPTIMIZERS[config.name](params, config)
