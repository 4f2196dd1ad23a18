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
    from backprop.stages.preprocess import preprocess

    try:
        pipeline, _, _ = _pipeline_config(args.params)
        data, config = pipeline.data, pipeline.preprocess
        summary = preprocess(args.input, args.out_dir, config, data.label_column, data.drop_missing)
    except user_errors() as err:
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


def _pipeline_config(params_path: str | None):
    """(PipelineConfig, params dict, source name); refuses a stale params.yaml."""
    from pathlib import Path

    from backprop.config import check_fresh, pipeline_config

    params, source = _load_params(params_path)
    config = pipeline_config(params, source)
    if source != "defaults":
        check_fresh(config, Path(source).resolve().parent / "conf", source)
    return config, params, source


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean the user's data, settings or files are wrong."""
    from backprop.config import ConfigError
    from backprop.data import DataError
    from backprop.io import ModelFileError
    from backprop.tracking import TrackingError
    from backprop.training import TrainingDiverged

    return (ConfigError, DataError, ModelFileError, TrackingError, TrainingDiverged)


def interrupted_message(prog: str, err, how: str) -> str:
    """What to say when training was stopped by Ctrl-C or SIGTERM."""
    if err.epoch and err.checkpoint is not None:
        return (
            f"{prog}: interrupted by {err.signal_name}; epoch {err.epoch} is saved in "
            f"{err.checkpoint}; resume with {how}"
        )
    return f"{prog}: interrupted by {err.signal_name} before an epoch was saved; nothing to resume"


def _train(args: argparse.Namespace) -> int:
    from backprop import tracking
    from backprop.runner import checkpoint_for, run_to_resume, tracked_train
    from backprop.stages.train import TrainingInterrupted

    try:
        config, params, source = _pipeline_config(args.params)
        checkpoint = checkpoint_for(config, args.prepared_dir)
        resumed_run = run_to_resume(config, checkpoint)
        with tracking.pipeline_run(config.experiment_name, run_id=resumed_run) as run:
            trained = tracked_train(
                config,
                params if source != "defaults" else None,
                source,
                args.prepared_dir,
                args.model_dir,
                args.reports_dir,
                checkpoint=checkpoint,
                resuming=resumed_run is not None,
            )
            tracking.remember_run(run.info.run_id)
    except TrainingInterrupted as err:
        how = (
            "`dvc exp run -S train.resume=true` "
            "(or `backprop params train.resume=true`, then `dvc repro`)"
        )
        print(interrupted_message("backprop train", err, how), file=sys.stderr)
        return err.exit_status
    except (*user_errors(), ValueError) as err:
        raise UserError(str(err)) from None
    history = trained.history
    kept = f" (kept epoch {history.best_epoch})" if history.best_epoch else ""
    accuracy = history.kept().val_accuracy  # of the weights written, not of the last epoch
    val = f", validation accuracy {accuracy:.4f}" if accuracy is not None else ""
    print(
        f"trained {len(history.epochs)} epochs{kept}{val} -> {args.model_dir}; "
        f"MLflow run {run.info.run_id}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from backprop import tracking
    from backprop.runner import tracked_evaluate

    try:
        config, _, _ = _pipeline_config(args.params)
        with tracking.pipeline_run(config.experiment_name, tracking.remembered_run()) as run:
            metrics = tracked_evaluate(
                args.model_dir, args.prepared_dir, args.reports_dir, ["dvc.lock"]
            )
    except user_errors() as err:
        raise UserError(str(err)) from None
    test = metrics["test"]
    print(
        f"test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}, "
        f"macro F1 {test['macro_f1']:.4f} (MLflow run {run.info.run_id})"
    )
    if config.registered_model_name and not tracking.offline():
        _register_model(run.info.run_id, config.registered_model_name)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from backprop.runs import format_table, run_table

    try:
        config, _, _ = _pipeline_config(args.params)
        rows = run_table(
            args.experiment or config.experiment_name, args.sweep, args.sort, args.limit
        )
    except (*user_errors(), ValueError) as err:
        raise UserError(str(err)) from None
    print(format_table(rows))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from backprop.predict import model_folder, predict_csv
    from backprop.predictor import InputError

    if args.output is not None and os.path.abspath(args.output) == os.path.abspath(args.input):
        raise UserError(f"{args.output}: the output would overwrite the input; pick another -o")
    try:
        with model_folder(args.model) as folder:
            summary = predict_csv(folder, args.input, args.output, args.chunk_rows)
    except (*user_errors(), InputError) as err:
        raise UserError(str(err)) from None
    where = f" -> {args.output}" if args.output else ""
    line = f"predicted {summary.rows} rows{where}"
    if summary.accuracy is not None:
        line += f"; accuracy {summary.accuracy:.4f} ({summary.correct} of {summary.rows} right)"
        if summary.unknown_labels:
            line += f"; {summary.unknown_labels} rows have a label the model was not trained on"
    print(line, file=sys.stderr if args.output is None else sys.stdout)
    return 0


def _register(args: argparse.Namespace) -> int:
    _register_model(args.run_id, args.name)
    return 0


def _register_model(run_id: str, name: str) -> None:
    from backprop import tracking

    try:
        version = tracking.register_model(run_id, name)
    except user_errors() as err:
        raise UserError(str(err)) from None
    print(f"registered the model of run {run_id} as models:/{name}/{version}")


def _reproduce(args: argparse.Namespace) -> int:
    from backprop.reproduce import reproduce

    try:
        r = reproduce(args.run_id)
    except user_errors() as err:
        raise UserError(str(err)) from None
    if r.code_note:
        print(f"note: {r.code_note}")
    print(f"reproduced run {r.original_run_id} as run {r.run_id} (outputs in {r.outputs})")
    short = r.sha256[:16]
    if r.original_sha256 is None:
        print(f"  weights SHA-256: {short}... (the original run recorded none to compare)")
    elif r.same_weights:
        print(f"  weights SHA-256: identical ({short}...)")
    else:
        print(f"  weights SHA-256: DIFFER (was {r.original_sha256[:16]}..., now {short}...)")
    if r.metric_changes:
        shown = ", ".join(f"{k} {a:.6g} -> {b if b is None else format(b, '.6g')}"
                          for k, (a, b) in sorted(r.metric_changes.items()))  # fmt: skip
        print(f"  test metrics: DIFFER ({shown})")
    else:
        accuracy = r.test_metrics.get("test_accuracy")
        print(f"  test metrics: identical (test accuracy {accuracy:.4f})")
    print("bit-identical" if r.identical else "NOT identical")
    return 0 if r.identical else 1


def _params(args: argparse.Namespace) -> int:
    from backprop.conf_store import compose_params

    try:
        path = compose_params(args.output, args.overrides)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"composed conf/ into {path}")
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
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

    p = commands.add_parser(
        "params",
        help="compose conf/ into params.yaml, as `dvc exp run` does",
        description="Compose the Hydra configuration in conf/ (with optional overrides such as "
        "optim.lr=0.1) and write it to params.yaml through DVC's own composition, so the file "
        "is byte for byte what `dvc exp run` would write.",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    p.add_argument("--output", default="params.yaml", help="default params.yaml")
    p.set_defaults(run=_params)

    p = commands.add_parser(
        "train",
        help="train the network on prepared splits, tracked in MLflow",
        description="Train on PREPARED_DIR (written by `backprop preprocess`) with the model, "
        "optim and train sections of the params file; write the model to MODEL_DIR and "
        "history.csv and training.png to REPORTS_DIR. Opens an MLflow run (params, per-epoch "
        "metrics, model, artifacts) that `backprop evaluate` completes.",
    )
    p.add_argument("prepared_dir", metavar="PREPARED_DIR")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("reports_dir", metavar="REPORTS_DIR")
    p.add_argument("--params", metavar="FILE", help="default ./params.yaml if present")
    p.set_defaults(run=_train)

    p = commands.add_parser(
        "evaluate",
        help="score the model on the test split; metrics, plots, MLflow",
        description="Score MODEL_DIR on the test split of PREPARED_DIR; write metrics.json, "
        "confusion.csv and figures/ to REPORTS_DIR and log them into the training's MLflow run.",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("prepared_dir", metavar="PREPARED_DIR")
    p.add_argument("reports_dir", metavar="REPORTS_DIR")
    p.add_argument("--params", metavar="FILE", help="default ./params.yaml if present")
    p.set_defaults(run=_evaluate)

    p = commands.add_parser(
        "predict",
        help="labels and class probabilities for the rows of a CSV",
        description="Predict every row of INPUT.csv (the training layout: a header naming the "
        "feature columns, in any order, and optionally the label column) with MODEL: a model "
        "folder written by `backprop train` (such as data/model) or an MLflow model URI "
        "(runs:/<run id>/model, models:/<name>/<version>; tracking store MLFLOW_TRACKING_URI, "
        "else ./mlflow.db). The stored min-max scaler is applied. Writes a CSV with the "
        "predicted label and one proba_<class> column per class, row for row, to -o (whole or "
        "not at all) or to standard output; with labels in the input it reports the accuracy. "
        "Reads and writes in chunks, so files larger than memory work.",
    )
    p.add_argument("model", metavar="MODEL", help="model folder or MLflow model URI")
    p.add_argument("input", metavar="INPUT.csv", help="rows to predict")
    p.add_argument("-o", "--output", metavar="FILE", help="output CSV (default: standard output)")
    p.add_argument(
        "--chunk-rows", type=_positive_int, default=10_000, help="rows per chunk (default 10000)"
    )
    p.set_defaults(run=_predict)

    p = commands.add_parser(
        "register",
        help="register a run's model in MLflow's model registry",
        description="Add the model logged by run RUN_ID as a new version of the registered "
        "model NAME (created if needed), so that models:/NAME/<version> works for "
        "`backprop predict` and `mlflow models serve`. Setting registered_model_name in "
        "conf/ does the same at the end of every pipeline run. Tracking store: "
        "MLFLOW_TRACKING_URI, else ./mlflow.db.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(run=_register)

    p = commands.add_parser(
        "reproduce",
        help="train a tracked run again and compare the result",
        description="Read the composed config logged by MLflow run RUN_ID, check that the data "
        "has the SHA-256 the run recorded (refusing otherwise), run data -> preprocess -> "
        "train -> evaluate again (outputs under outputs/reproductions/, a new MLflow run "
        "tagged reproduces=RUN_ID) and report whether the weights' SHA-256 and the test "
        "metrics equal the original's. Exit status 0 if they do, 1 if not.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.set_defaults(run=_reproduce)

    p = commands.add_parser(
        "runs",
        help="list tracked runs, best first",
        description="The MLflow runs of an experiment (default: experiment_name of the params "
        "file) or of one sweep, sorted by a metric, with the params that vary between them, "
        "status and duration. Tracking store: MLFLOW_TRACKING_URI, else ./mlflow.db.",
    )
    p.add_argument("--experiment", help="experiment name (default from params.yaml)")
    p.add_argument("--sweep", metavar="RUN_ID", help="a sweep's parent run id, or 'latest'")
    p.add_argument("--sort", default="kept_val_accuracy", help="metric to sort by, best first")
    p.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    p.add_argument("--params", metavar="FILE", help="default ./params.yaml if present")
    p.set_defaults(run=_runs)
    return parser


def plain_warnings() -> None:
    """Our own warnings as one line, ``backprop: warning: ...``, not Python's file and code."""
    import warnings

    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if f"{os.sep}backprop{os.sep}" in str(filename):
            return f"backprop: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = one_line


def main(argv: Sequence[str] | None = None) -> int:
    from backprop import interrupt

    plain_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with interrupt.graceful():  # SIGTERM ends a command as Ctrl-C does, cleanly
            return args.run(args)
    except UserError as err:
        print(f"backprop {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        name = getattr(err, "signal_name", "SIGINT")
        print(f"backprop {args.command}: interrupted by {name}", file=sys.stderr)
        return getattr(err, "exit_status", 130)
    except BrokenPipeError:
        # The reader went away (`backprop explain | head`): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
