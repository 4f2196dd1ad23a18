"""The ``backprop`` command.

A user's mistake ends in one line on stderr and exit status 2; a bug in this
code still raises with its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


class UserError(Exception):
    """A mistake the user can fix; its message is the whole report."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line gets one line, not the usage block too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _gradcheck(args: argparse.Namespace) -> int:
    from backprop.gradcheck import TOLERANCE, check_all

    results = check_all(seed=args.seed)
    print(f"{'activation':<10} {'output + loss':<25} {'tensor':<6} max relative error")
    for r in results:
        verdict = "ok" if r.ok else "FAIL"
        pair = f"{r.output} + {r.loss}"
        print(f"{r.activation:<10} {pair:<25} {r.tensor:<6} {r.max_relative_error:.2e}  {verdict}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} tensors above {TOLERANCE:g}", file=sys.stderr)
        return 1
    print(f"all {len(results)} tensors below {TOLERANCE:g}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from backprop.explain import explain, render

    try:
        explanation = explain(
            weight=args.weight,
            inputs=tuple(args.inputs),
            targets=tuple(args.targets),
            learning_rate=args.lr,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    print(render(explanation))
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from backprop.explain import (
        DEFAULT_INPUTS,
        DEFAULT_LEARNING_RATE,
        DEFAULT_TARGETS,
        WEIGHT_INDEX,
    )

    parser = _Parser(prog="backprop", description="A NumPy MLP trained by backpropagation.")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = commands.add_parser(
        "gradcheck",
        help="check analytic gradients against finite differences",
        description="For every hidden activation x output/loss pair, compare backpropagated "
        "gradients of a small random float64 network with central finite differences. "
        "Exits 0 only if every tensor's max relative error is below 1e-6.",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random networks (default 0)")
    p.set_defaults(run=_gradcheck)

    p = commands.add_parser(
        "explain",
        help="walk the chain rule for one weight of the article's 2-2-2 example",
        description="Forward pass, loss, chain-rule factors, finite-difference check and "
        "gradient-descent update of one weight of a 2-2-2 sigmoid network with squared error.",
    )
    p.add_argument(
        "--weight", default="w5", choices=list(WEIGHT_INDEX), help="which weight (default w5)"
    )
    p.add_argument(
        "--inputs",
        nargs=2,
        type=float,
        default=DEFAULT_INPUTS,
        metavar=("X1", "X2"),
        help=f"the two inputs (default {DEFAULT_INPUTS[0]} {DEFAULT_INPUTS[1]})",
    )
    p.add_argument(
        "--targets",
        nargs=2,
        type=float,
        default=DEFAULT_TARGETS,
        metavar=("T1", "T2"),
        help=f"the two targets (default {DEFAULT_TARGETS[0]} {DEFAULT_TARGETS[1]})",
    )
    p.add_argument(
        "--lr",
        type=_positive_float,
        default=DEFAULT_LEARNING_RATE,
        help=f"learning rate (default {DEFAULT_LEARNING_RATE})",
    )
    p.set_defaults(run=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UserError as err:
        print(f"backprop {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`backprop explain | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
