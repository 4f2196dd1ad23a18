"""``backprop gradcheck`` and ``backprop explain``: the maths, shown and checked."""

from __future__ import annotations

import argparse
import sys

from backprop.app.command import Command
from backprop.nn.explain import (
    DEFAULT_INPUTS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_TARGETS,
    WEIGHT_INDEX,
    explain,
    render,
)
from backprop.nn.gradcheck import TOLERANCE, check_all


def _gradcheck_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of the random networks (default 0)")


def _gradcheck(args: argparse.Namespace) -> int:
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


GRADCHECK = Command(
    description="For every hidden activation x output/loss pair, compare backpropagated "
    "gradients of a small random float64 network with central finite differences. "
    "Exits 0 only if every tensor's max relative error is below 1e-6.",
    arguments=_gradcheck_arguments,
    run=_gradcheck,
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _explain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weight", default="w5", choices=list(WEIGHT_INDEX), help="which weight (default w5)"
    )
    p.add_argument(
        "--inputs", nargs=2, type=float, default=DEFAULT_INPUTS, metavar=("X1", "X2"),
        help=f"the two inputs (default {DEFAULT_INPUTS[0]} {DEFAULT_INPUTS[1]})",
    )  # fmt: skip
    p.add_argument(
        "--targets", nargs=2, type=float, default=DEFAULT_TARGETS, metavar=("T1", "T2"),
        help=f"the two targets (default {DEFAULT_TARGETS[0]} {DEFAULT_TARGETS[1]})",
    )  # fmt: skip
    p.add_argument(
        "--lr", type=_positive_float, default=DEFAULT_LEARNING_RATE,
        help=f"learning rate (default {DEFAULT_LEARNING_RATE})",
    )  # fmt: skip


def _explain(args: argparse.Namespace) -> int:
    explanation = explain(
        weight=args.weight,
        inputs=tuple(args.inputs),
        targets=tuple(args.targets),
        learning_rate=args.lr,
    )
    print(render(explanation))
    return 0


EXPLAIN = Command(
    description="Forward pass, loss, chain-rule factors, finite-difference check and "
    "gradient-descent update of one weight of a 2-2-2 sigmoid network with squared error.",
    arguments=_explain_arguments,
    run=_explain,
)
