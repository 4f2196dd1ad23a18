"""The ``backprop`` command: a subcommand per pipeline stage (what ``dvc.yaml`` runs), and tools.

The stage subcommands come from ``pipeline/registry.py``: their arguments are
the stage's inputs and outputs, defaulting to the paths of the DVC pipeline.
The other commands live in their own modules, named in :data:`COMMANDS` and
imported only when run, so that a stage's command loads the stage's code only.

A user's mistake (:class:`~backprop.errors.UserError`) ends in one line on
stderr and exit status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backprop.app.command import Command, plain_warnings
from backprop.errors import UserError
from backprop.pipeline.files import is_stream
from backprop.pipeline.interrupt import graceful
from backprop.pipeline.registry import STAGES, Stage, resolve
from backprop.pipeline.settings import describe_settings, load_settings

PROG = "backprop"


# name -> ("module:attribute" of its Command, one-line help)
COMMANDS = {
    "params": (
        "backprop.app.compose:PARAMS",
        "compose conf/ into params.yaml, as `dvc exp run` does",
    ),
    "predict": (
        "backprop.app.predict:PREDICT",
        "labels and class probabilities for the rows of a CSV",
    ),
    "register": ("backprop.app.runs:REGISTER", "register a run's model in MLflow's model registry"),
    "reproduce": (
        "backprop.app.reproduce:REPRODUCE",
        "train a tracked run again and compare the result",
    ),
    "runs": ("backprop.app.runs:RUNS", "list tracked runs, best first"),
    "mnist-download": (
        "backprop.app.mnist_download:MNIST_DOWNLOAD",
        "fetch MNIST's four idx files into a folder, checking their SHA-256",
    ),
    "gradcheck": (
        "backprop.app.teach:GRADCHECK",
        "check analytic gradients against finite differences",
    ),
    "explain": (
        "backprop.app.teach:EXPLAIN",
        "walk the chain rule for one weight of the article's 2-2-2 example",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line, not the usage block too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s own module is imported to describe its arguments."""
    parser = _Parser(prog=PROG, description="A NumPy MLP trained by backpropagation.")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for stage in STAGES:
        _add_stage(commands, stage)
    for name, (entry, help_text) in COMMANDS.items():
        if name != command:
            commands.add_parser(name, help=help_text)
            continue
        spec = _load(entry)
        p = commands.add_parser(name, help=help_text, description=spec.description)
        spec.arguments(p)
        p.set_defaults(run=spec.run)
    return parser


def _load(entry: str) -> Command:
    module, attribute = entry.split(":")
    return getattr(importlib.import_module(module), attribute)


def _add_stage(commands: Any, stage: Stage) -> None:
    ports = "; ".join(f"{p.name.upper()}: {p.help} (default {p.path})" for p in stage.ports)
    reads = f"the settings {describe_settings(stage.params)}" if stage.params else "no settings"
    p = commands.add_parser(
        stage.command,
        help=stage.help,
        description=f"The pipeline's {stage.name} stage: {stage.help}. {ports}. It reads "
        f"{reads}, from --params, else ./params.yaml if present, else the defaults shown.",
    )
    for port in stage.ports:
        p.add_argument(port.name, nargs="?", metavar=port.name.upper(), help=port.help)
    p.add_argument("--params", metavar="FILE", help="YAML params file (default ./params.yaml)")
    p.set_defaults(run=lambda args: run_stage(stage, args))


# How the DVC front door runs the tracked stages: train opens the run, evaluate completes it.
TRACKED = {"train": "backprop.app.dvc_train:run", "evaluate": "backprop.app.dvc_evaluate:run"}


def run_stage(stage: Stage, args: argparse.Namespace) -> int:
    """One stage, as DVC runs it: settings from the params file, paths from the command line."""
    settings, source = load_settings(args.params)
    ports = {p.name: Path(getattr(args, p.name) or resolve(p.path, settings)) for p in stage.ports}
    if stage.name in TRACKED:
        module, name = TRACKED[stage.name].split(":")
        return getattr(importlib.import_module(module), name)(stage, settings, source, ports)
    summary = stage.function(settings, **ports).summary
    # an output written to a stream (`backprop digits /dev/stdout`) gets the rows alone
    streamed = any(is_stream(ports[p.name]) for p in stage.outputs)
    print(summary, file=sys.stderr if streamed else sys.stdout)
    return 0


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plain_warnings()
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    try:
        with graceful():  # SIGTERM ends a command as Ctrl-C does, cleanly
            return args.run(args)
    except UserError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        name = getattr(err, "signal_name", "SIGINT")
        print(f"{PROG} {args.command}: interrupted by {name}", file=sys.stderr)
        return getattr(err, "exit_status", 130)
    except BrokenPipeError:
        # The reader went away (`backprop explain | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["COMMANDS", "Command", "main"]
