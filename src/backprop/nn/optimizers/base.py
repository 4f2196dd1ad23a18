"""What an optimizer is, the settings every one shares, and the table of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import numpy as np
from annotated_types import Ge, Gt

from backprop.errors import ConfigError
from backprop.nn.schedules import SCHEDULES
from backprop.schema import choice, settings

LearningRate = Annotated[float, Gt(0)]

# name -> class, filled as the modules of this package are imported, in name order
OPTIMIZERS: dict[str, type[Optimizer]] = {}


@settings
class OptimConfig:
    """The ``optim`` section: the update rule, its learning rate and schedule.

    Each optimizer's ``Config`` subclasses this with its own options.
    """

    name: Annotated[str, choice(OPTIMIZERS)] = "sgd"
    lr: LearningRate = 1.0
    weight_decay: Annotated[float, Ge(0)] = 0.0  # L2 penalty on the weights (not the biases)
    schedule: Annotated[str, choice(SCHEDULES)] = "constant"
    gamma: Annotated[float, Gt(0)] = 0.5  # step and exponential schedules
    step_size: Annotated[int, Ge(1)] = 10  # step schedule, in epochs
    min_lr: Annotated[float, Ge(0)] = 0.0  # cosine schedule

    def __post_init__(self) -> None:
        wanted = OPTIMIZERS[self.name].Config if self.name in OPTIMIZERS else None
        if wanted is None:
            raise ConfigError(f"must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}", "name")
        if type(self) is not wanted:
            raise ConfigError(
                f"is {self.name!r}, whose settings are {wanted.__name__}, "
                f"not {type(self).__name__}",
                "name",
            )


def scheduled_lr(config: OptimConfig, epoch: int, epochs: int) -> float:
    """Learning rate of ``epoch`` (1-based) under ``config.schedule``."""
    rule = SCHEDULES[config.schedule]
    return rule(config.lr, epoch - 1, epochs, config.gamma, config.step_size, config.min_lr)


class Optimizer:
    """An update rule over a fixed list of parameter arrays."""

    name: ClassVar[str]
    Config: ClassVar[type[OptimConfig]]
    # True: the network can apply the step inside its backward pass (MLP.sgd_step).
    fused: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            OPTIMIZERS[cls.name] = cls
            for key in sorted(OPTIMIZERS):  # keep the table sorted: error messages list it
                OPTIMIZERS[key] = OPTIMIZERS.pop(key)

    def __init__(self, params: Sequence[np.ndarray], config: OptimConfig) -> None:
        self.config = config

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
        raise NotImplementedError

    @classmethod
    def copies(cls, config: OptimConfig) -> int:
        """How many arrays the size of the parameters this rule keeps (Adam: 2), counted
        in the state it keeps for one small parameter."""
        probe = np.zeros((2, 3), np.float32)
        return sum(a.shape == probe.shape for a in cls([probe], config).state().values())

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint, so that training goes on exactly where it stopped."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        pass

    def reference(self, torch: Any, params: list[Any], lr: float) -> Any:
        """PyTorch's optimizer with the same rule and options over ``params``: the
        independent implementation that the tests compare training steps with."""
        raise NotImplementedError
