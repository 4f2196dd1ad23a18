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


def _digits(args: argparse.Namespace) -> int:
    from backprop.stages.digits import write_digits

    path = write_digits(args.output)
    print(f"wrote scikit-learn's handwritten digits (1797 rows, 64 features) to {path}")
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from backprop.config import ConfigError, DataConfig, PreprocessConfig, section
    from backprop.data import DataError
    from backprop.stages.preprocess import preprocess

    try:
        params, source = _load_params(args.params)
        data = section(params, "data", DataConfig, source)
        config = section(params, "preprocess", PreprocessConfig, source)
        summary = preprocess(args.input, args.out_dir, config, data.label_column, data.drop_missing)
    except (ConfigError, DataError) as err:
        raise UserError(str(err)) from None
    rows = summary["rows"]
    print(
        f"{args.input}: {rows['train']} train / {rows['val']} validation / {rows['test']} test "
        f"rows, {summary['features']} features, {len(summary['classes'])} classes, "
        f"{config.scaling} min-max scaling -> {args.out_dir}"
    )
    return 0


def _load_params(path: str | None) -> tuple[dict, str]:
    """The params file named, else ./params.yaml if there is one, else no settings (defaults)."""
    from pathlib import Path

    from backprop.config import read_params

    if path is None:
        if not Path(DEFAULT_PARAMS).exists():
            return {}, "defaults"
        path = DEFAULT_PARAMS
    return read_params(path), str(path)


DEFAULT_PARAMS = "params.yaml"


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

    p = commands.add_parser(
        "digits",
        help="write the embedded handwritten-digits data set as a CSV",
        description="Write scikit-learn's bundled handwritten digits (1,797 images of 8x8 "
        "pixels valued 0-16, 10 classes) as a CSV in the layout label,pixel0,...,pixel63. "
        "Needs no network; the bytes are the same on every run.",
    )
    p.add_argument(
        "output", nargs="?", default="data/raw/digits.csv", help="default data/raw/digits.csv"
    )
    p.set_defaults(run=_digits)

    p = commands.add_parser(
        "preprocess",
        help="split a labelled CSV and min-max scale it",
        description="Read INPUT (a CSV with a header row, numeric features and a label column), "
        "split it into stratified train/validation/test parts, fit min-max scaling on the "
        "training part only, and write train.npz, val.npz, test.npz, scaler.json and "
        "classes.json into OUT_DIR, replacing it as a whole. Settings come from the 'data' "
        "(label_column, drop_missing) and 'preprocess' (val_fraction, test_fraction, seed, "
        "scaling, clip) sections of --params, else of ./params.yaml if present, else the "
        "defaults: label_column null (the first column), drop_missing false, val_fraction "
        "0.15, test_fraction 0.15, seed 0, scaling per_feature (or global: one min and max "
        "for the whole matrix), clip true (values outside the training range are clipped "
        "to [0, 1]).",
    )
    p.add_argument("input", metavar="INPUT.csv", help="the labelled CSV")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder for the outputs")
    p.add_argument(
        "--params", metavar="FILE", help="YAML params file (default: ./params.yaml if present)"
    )
    p.set_defaults(run=_preprocess)
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
