"""What an activation is, and the table of them."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

# name -> class, filled as the modules of this package are imported, in name order
ACTIVATIONS: dict[str, type[Activation]] = {}


class Activation:
    """A hidden-layer activation.  Subclasses are settings classes (``@settings``)
    whose fields are the activation's options, and register under ``name``."""

    name: ClassVar[str]
    # Glorot keeps the variance of sigmoid/tanh layers near their linear region; He
    # doubles it for units that zero (about) half of their inputs.  The article's
    # unscaled randn gives a 784-input sigmoid layer pre-activations of standard
    # deviation ~16, so every unit saturates and its gradient a (1 - a) vanishes.
    initialisation: ClassVar[str] = "glorot"
    # True: the derivative needs only the output, so forward may overwrite z.
    in_place: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            ACTIVATIONS[cls.name] = cls
            order = sorted(ACTIVATIONS)
            for key in order:  # keep the table sorted: error messages list it
                ACTIVATIONS[key] = ACTIVATIONS.pop(key)

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``a = f(z)`` into ``out`` (which is ``z`` itself for an in-place activation)."""
        raise NotImplementedError

    def derivative(
        self, delta: np.ndarray, a: np.ndarray, z: np.ndarray, scratch: np.ndarray
    ) -> np.ndarray:
        """Turn ``delta = dE/da`` into ``dE/dz`` in place.  ``a`` is the output, ``z`` the
        pre-activation (the same array as ``a`` when in place), ``scratch`` spare room."""
        raise NotImplementedError

    def reference(self, torch: Any, z: Any) -> Any:
        """PyTorch's function of the same name and options, applied to the tensor ``z``:
        the independent implementation that the tests compare forward and gradients with."""
        raise NotImplementedError

    def init_std(self, fan_in: int, fan_out: int) -> float:
        """Standard deviation of a normal initialisation suited to this activation."""
        if self.initialisation == "he":
            return float(np.sqrt(2.0 / fan_in))
        return float(np.sqrt(2.0 / (fan_in + fan_out)))

    def options(self) -> dict[str, Any]:
        """The activation's settings (its fields), as model.json records them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
