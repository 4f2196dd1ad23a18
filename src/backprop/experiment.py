"""``backprop-experiment``: the Hydra app over ``conf/``, for single runs and sweeps.

One composed config runs data -> preprocess -> train -> evaluate in this
process, with the very functions the DVC stages call, into one MLflow run::

    backprop-experiment                       # the defaults: the same model as dvc repro
    backprop-experiment optim.lr=0.3 model=relu
    backprop-experiment --multirun optim.lr=0.3,0.1,0.03 'model.hidden_sizes=[256,64],[128]'
    backprop-experiment --multirun hydra/launcher=joblib hydra.launcher.n_jobs=2 optim.lr=1,0.3

Outputs never touch the paths ``dvc.yaml`` tracks: each job writes under its
Hydra folder in ``outputs/`` (git-ignored), the digits CSV and the prepared
splits go to ``outputs/cache/``, keyed by the content of the input file and
the preprocessing settings, so a sweep prepares each distinct split once.

In a sweep, :class:`SweepTracker` (a Hydra callback, in the launching
process) creates the MLflow database and a parent run before any job starts;
each job's run is nested under it.  A job that fails is marked FAILED and the
others go on; at the end the parent records the best job and a summary
figure, and the sweep exits with status 1 naming the failed jobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backprop.conf_store import find_conf_dir, register
from backprop.io import exclusive_lock

PARENT_RUN_ENV = "BACKPROP_SWEEP_PARENT_RUN"
OUTPUTS = "outputs"


def cache_dir() -> Path:
    from backprop.tracking import project_root

    return project_root() / OUTPUTS / "cache"


def dataset_csv(config, cache: Path) -> Path:
    """The CSV to read: the embedded digits from the cache, or the configured file."""
    from backprop.stages.digits import write_digits

    if config.data.name != "digits":
        return Path(config.data.path)
    path = cache / "digits.csv"
    with exclusive_lock(cache / "digits.lock"):
        if not path.exists():
            write_digits(path)
    return path


def prepared_dir(csv: Path, config, cache: Path) -> Path:
    """Preprocessed splits for (file content, settings), made once and then reused."""
    from dataclasses import asdict

    from backprop.data import DataError
    from backprop.io import file_digest
    from backprop.stages.preprocess import preprocess

    if not csv.is_file():
        raise DataError(f"{csv}: file not found; check data.path")
    settings = {
        "file": file_digest(csv),
        "label_column": config.data.label_column,
        "drop_missing": config.data.drop_missing,
        "preprocess": asdict(config.preprocess),
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    out = cache / "prepared" / key
    with exclusive_lock(cache / "prepared" / f"{key}.lock"):
        if not (out / "classes.json").exists():
            preprocess(
                csv, out, config.preprocess, config.data.label_column, config.data.drop_missing
            )
    return out


def run_pipeline(
    config, params: dict[str, Any], job_dir: Path, parent_run_id: str | None = None,
    run_name: str | None = None, show_progress: bool = True, tags: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """All four stages for one config, tracked as one MLflow run.  Returns a summary."""
    import yaml

    from backprop import tracking
    from backprop.io import atomic_write_text
    from backprop.runner import checkpoint_for, run_to_resume, tracked_evaluate, tracked_train

    params_file = job_dir / "params.yaml"
    atomic_write_text(params_file, yaml.safe_dump(params, sort_keys=False))
    cache = cache_dir()
    checkpoint = resumed_run = None
    if config.train.resume:  # the checkpoint's run goes on: find it before opening one
        checkpoint = _checkpoint_of(config, cache)
        resumed_run = run_to_resume(config, checkpoint)
    with tracking.pipeline_run(
        config.experiment_name,
        run_id=resumed_run,
        parent_run_id=parent_run_id,
        run_name=run_name,
        tags=tags,
    ) as run:  # opened first, so that a job failing on its data is a FAILED run too
        csv = dataset_csv(config, cache)
        prepared = str(prepared_dir(csv, config, cache))
        trained = tracked_train(
            config, params, str(params_file), prepared, str(job_dir / "model"),
            str(job_dir / "reports"), show_progress,
            checkpoint or checkpoint_for(config, prepared), resuming=resumed_run is not None,
        )  # fmt: skip
        metrics = tracked_evaluate(str(job_dir / "model"), prepared, str(job_dir / "reports"))
    version = None
    if config.registered_model_name and parent_run_id is None and not tracking.offline():
        version = tracking.register_model(run.info.run_id, config.registered_model_name)
    return {
        "run_id": run.info.run_id,
        "weights_sha256": trained_weights_sha256(job_dir / "model"),
        "test_metrics": {
            f"test_{k}": v for k, v in metrics["test"].items() if isinstance(v, float)
        },
        "kept_val_accuracy": trained.history.kept().val_accuracy,
        "test_accuracy": metrics["test"]["accuracy"],
        "registered": version and f"models:/{config.registered_model_name}/{version}",
    }


def _checkpoint_of(config, cache: Path) -> Path | None:
    """The checkpoint file of ``config``, from the data file's digest (no preprocessing)."""
    from backprop import tracking
    from backprop.io import file_digest
    from backprop.stages.train import checkpoint_file

    csv = dataset_csv(config, cache)
    if not csv.is_file():
        return None
    return checkpoint_file(config, file_digest(csv), tracking.project_root())


def trained_weights_sha256(model_dir: Path) -> str:
    return json.loads((model_dir / "model.json").read_text(encoding="utf-8"))["weights_sha256"]


@contextlib.contextmanager
def _blas_threads(hydra_cfg) -> Iterator[None]:
    """Parallel jobs share the cores: jobs x BLAS threads stays within them."""
    jobs = hydra_cfg.launcher.get("n_jobs") if "launcher" in hydra_cfg else None
    if not jobs or jobs == 1:
        yield
        return
    from threadpoolctl import threadpool_limits

    import backprop.gemm  # noqa: F401  loads SciPy's BLAS, so that the limit reaches it

    cores = os.cpu_count() or 1
    jobs = cores if jobs < 0 else jobs
    with threadpool_limits(max(1, cores // jobs)):
        yield


def task(cfg) -> float:
    """Hydra's task function: one job.  Returns the kept validation accuracy (NaN if it failed)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from backprop import interrupt
    from backprop.cli import interrupted_message, user_errors
    from backprop.config import pipeline_config
    from backprop.stages.train import TrainingInterrupted

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    job_dir = Path(hc.runtime.output_dir)
    name = f"job {hc.job.num}" if multirun else "run"
    try:
        params = OmegaConf.to_container(cfg, resolve=True)
        config = pipeline_config(params, "the composed config")
        with _blas_threads(hc), interrupt.graceful():
            result = run_pipeline(
                config, params, job_dir, os.environ.get(PARENT_RUN_ENV),
                run_name=_run_name(hc) if multirun else None, show_progress=not multirun,
            )  # fmt: skip
    except TrainingInterrupted as err:
        _sweep_killed(multirun)
        if multirun:  # finished jobs have no checkpoint and run again; this one goes on
            how = "the same command plus train.resume=true"
        else:
            overrides = " ".join(o for o in hc.overrides.task if not o.startswith("train.resume="))
            how = f"`backprop-experiment {overrides} train.resume=true`".replace("  ", " ")
        print(interrupted_message("backprop-experiment", err, how), file=sys.stderr)
        sys.exit(err.exit_status)
    except KeyboardInterrupt as err:  # after training: the run is KILLED, nothing to resume
        _sweep_killed(multirun)
        name = getattr(err, "signal_name", "SIGINT")
        print(f"backprop-experiment: interrupted by {name}", file=sys.stderr)
        sys.exit(getattr(err, "exit_status", 130))
    except Exception as err:
        mistake = isinstance(err, (*user_errors(), ValueError))  # incl. TrackingError
        if not multirun:
            if not mistake:
                raise  # a bug in this code: its traceback
            print(f"backprop-experiment: error: {err}", file=sys.stderr)
            sys.exit(2)
        # In a sweep the other jobs go on; the job's MLflow run is already FAILED.
        kind = "" if mistake else f"{type(err).__name__}: "
        print(f"backprop-experiment: {name} failed: {kind}{err}", file=sys.stderr)
        return math.nan
    kept = result["kept_val_accuracy"]
    shown = f"validation accuracy {kept:.4f}, " if kept is not None else ""
    print(
        f"{name}: {shown}test accuracy {result['test_accuracy']:.4f} "
        f"(MLflow run {result['run_id']}, outputs in {job_dir})"
    )
    if result["registered"]:
        print(f"registered the model as {result['registered']}")
    return kept if kept is not None else math.nan


def _sweep_killed(multirun: bool) -> None:
    """An interrupted sweep's parent run is KILLED too, not left RUNNING."""
    parent = os.environ.get(PARENT_RUN_ENV)
    if multirun and parent:
        from backprop import tracking

        tracking.terminate(parent, "KILLED")


def _run_name(hc) -> str:
    overrides = ",".join(hc.overrides.task) or "defaults"
    return f"{hc.job.num}: {overrides}"[:250]


def check_overrides(argv: list[str], conf_dir: Path) -> None:
    """Compose every config the command line asks for, before Hydra starts any job.

    Hydra reports a bad override in several lines (and only when it reaches the job);
    here it is one line naming the key, exit status 2, and no MLflow run is opened.
    A sweep's values are each tried with the other overrides at their first value.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from backprop.conf_store import compose_config

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.shell_completion:
        return
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
    except Exception as err:  # a syntax error: Hydra's message is one line
        _fail(str(err).strip().splitlines()[0])
    plain, choices = [], []
    for o in parsed:
        if o.is_hydra_override():
            continue
        if not o.is_sweep_override():
            plain.append(o)
            choices.append([None])
            continue
        try:
            values = [str(v) for v in o.sweep_string_iterator()]
        except Exception:  # glob(...) of group options: Hydra expands and checks it itself
            continue
        plain.append(o)
        choices.append(values)

    def text(o, value: str | None) -> str:
        if value is None:
            return o.input_line
        return f"{o.get_key_element()}={value}"

    firsts = [text(o, values[0]) for o, values in zip(plain, choices)]
    candidates = [firsts]
    for i, (o, values) in enumerate(zip(plain, choices)):
        candidates += [[*firsts[:i], text(o, v), *firsts[i + 1 :]] for v in values[1:]]
    for overrides in candidates:
        try:
            compose_config(overrides, conf_dir)
        except ValueError as err:
            _fail(str(err).removeprefix("the composed config: "))


def _fail(message: str) -> None:
    print(f"backprop-experiment: error: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    import hydra

    from backprop.cli import plain_warnings

    register()
    conf_dir = find_conf_dir()
    if not (conf_dir / "config.yaml").is_file():
        sys.exit(f"backprop-experiment: error: no conf/config.yaml in {Path.cwd()} or above; "
                 "run it from the project folder")  # fmt: skip
    plain_warnings()
    check_overrides(sys.argv[1:], conf_dir)
    hydra.main(config_path=str(conf_dir), config_name="config", version_base=None)(task)()


if __name__ == "__main__":
    main()
