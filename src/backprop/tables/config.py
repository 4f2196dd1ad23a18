"""The ``preprocess`` section: how the rows are split and scaled."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Interval

from backprop.errors import ConfigError
from backprop.schema import choice, settings
from backprop.tables.scaling import MODES


@settings
class PreprocessConfig:
    # 0 is a choice for validation (no early stopping then), never for the test split.
    val_fraction: Annotated[float, Interval(ge=0, lt=1)] = 0.15
    test_fraction: Annotated[float, Interval(gt=0, lt=1)] = 0.15
    seed: Annotated[int, Ge(0)] = 0
    scaling: Annotated[str, choice(MODES)] = "per_feature"  # or "global": one min and max
    clip: bool = True  # clip values outside the training range to [0, 1]

    def __post_init__(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"must be small enough that val_fraction + test_fraction < 1 (test_fraction is "
                f"{self.test_fraction}), got {self.val_fraction}",
                "val_fraction",
            )
