"""Hidden-layer activations, one module each, each forward next to its derivative.

An activation turns a layer's pre-activation ``z`` of shape ``(n_samples,
n_units)`` into its output ``a``, and in the backward pass turns ``dE/da`` into
``dE/dz``.  Where the derivative can be written in terms of the output alone
(sigmoid ``a (1 - a)``, tanh ``1 - a^2``, relu ``1 if a > 0``) the activation is
``in_place``: the forward pass overwrites ``z`` with ``a`` and the backward pass
needs nothing but what it kept.  One whose derivative needs ``z`` itself (GELU)
sets ``in_place = False`` and the network keeps both arrays.

Adding one is adding a module here: a subclass of :class:`Activation` with a
``name`` registers itself in :data:`ACTIVATIONS` (this package imports every
module in it), and a field of the class is a setting of the ``model`` section
(``negative_slope``), validated as every other setting is.
"""

from __future__ import annotations

import importlib
import pkgutil

from backprop.errors import ConfigError
from backprop.nn.activations.base import ACTIVATIONS, Activation

__all__ = ["ACTIVATIONS", "Activation", "make_activation"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def make_activation(name: str, **options: object) -> Activation:
    """The activation ``name`` with its options; ConfigError, listing the known ones, if unknown."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](**options)
