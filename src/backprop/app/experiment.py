"""``backprop-experiment``: the Hydra app over ``conf/``, for single runs and sweeps.

One composed config runs data -> preprocess -> train -> evaluate in this
process, with the very functions the DVC stages call, into one MLflow run::

    backprop-experiment                       # the defaults: the same model as dvc repro
    backprop-experiment optim.lr=0.3 model=relu
    backprop-experiment --multirun optim.lr=0.3,0.1,0.03 'model.hidden_sizes=[256,64],[128]'
    backprop-experiment --multirun hydra/launcher=joblib hydra.launcher.n_jobs=2 optim.lr=1,0.3

Outputs never touch the paths ``dvc.yaml`` tracks: each job writes under its
Hydra folder in ``outputs/`` (git-ignored), and the stages whose outputs jobs
share (the digits CSV, the prepared splits) write once into ``outputs/cache/``.

In a sweep, :class:`~backprop.app.sweep.SweepTracker` (a Hydra callback, in the
launching process) creates the MLflow database and a parent run before any job
starts; each job's run is nested under it.  A job that fails is marked FAILED
and the others go on; the sweep exits with status 1 naming the failed jobs.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backprop.app.command import ReaderGone, plain_warnings
from backprop.app.compose import COMPOSED, compose_config, describe_config_error, register
from backprop.app.job import again, run_job
from backprop.app.search import TRIAL_ENV
from backprop.app.sweep import (
    PARENT_RUN_ENV,
    job_colour,
    job_run_name,
    mark_parent_killed,
    short_overrides,
)
from backprop.errors import ConfigError, UserError
from backprop.pipeline.files import writing
from backprop.pipeline.interrupt import graceful
from backprop.pipeline.project import OUTPUTS, conf_dir, new_folder
from backprop.pipeline.settings import Settings
from backprop.pipeline.stages.train import TrainingInterrupted
from backprop.tracking.store import Store
from backprop.tracking.tracker import Tracker

PROG = "backprop-experiment"
PREFLIGHT_COMBINATIONS = 64


@contextlib.contextmanager
def _blas_threads(hydra_cfg: Any) -> Iterator[None]:
    """Parallel jobs share the cores: jobs x BLAS threads stays within them."""
    jobs = hydra_cfg.launcher.get("n_jobs") if "launcher" in hydra_cfg else None
    if not jobs or jobs == 1:
        yield
        return
    from threadpoolctl import threadpool_limits

    import backprop.nn.gemm  # noqa: F401  loads SciPy's BLAS, so that the limit reaches it

    cores = os.cpu_count() or 1
    jobs = cores if jobs < 0 else jobs
    with threadpool_limits(max(1, cores // jobs)):
        yield


def task(cfg: Any) -> float:
    """Hydra's task function: one job.  Returns the kept validation accuracy (NaN if it failed)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun:
        _exit_with_launcher()
    job_dir = Path(hc.runtime.output_dir)
    name = f"job {hc.job.num}" if multirun else "run"
    ticket = os.environ.get(TRIAL_ENV) if multirun else None  # a search's trial
    if ticket is not None:
        name = f"trial {ticket.rsplit(':', 1)[-1]}"
    try:
        params, settings = _resolve(cfg)
    except UserError as err:  # a sweep's combination that pre-flight did not compose
        if not multirun:
            raise SystemExit(f"{PROG}: error: {err}") from None
        _record_failed_job(cfg, _run_name(hc, multirun), _run_tags(hc, multirun), err)
        print(f"{PROG}: {name} failed: {err}", file=sys.stderr)
        return _failed(ticket, err)
    try:
        with _blas_threads(hc), graceful():
            if ticket is not None:
                return _trial(ticket, params, job_dir, _run_tags(hc, multirun))
            outcome = run_job(
                settings, params, job_dir, Store(), os.environ.get(PARENT_RUN_ENV),
                run_name=_run_name(hc, multirun), tags=_run_tags(hc, multirun),
                progress=not multirun,
            )  # fmt: skip
    except TrainingInterrupted as err:
        _sweep_killed(multirun)
        if ticket is not None:  # the search's study knows its trials
            how = "the same command: the search goes on with this trial"
        elif multirun:  # finished jobs have no checkpoint and run again; this one goes on
            how = "the same command plus train.resume=true"
        else:
            overrides = " ".join(o for o in hc.overrides.task if not o.startswith("train.resume="))
            how = f"`{PROG} {overrides} train.resume=true`".replace("  ", " ")
        print(err.message(PROG, how), file=sys.stderr)
        sys.exit(err.exit_status)
    except KeyboardInterrupt as err:  # after training: the run is KILLED, nothing to resume
        _sweep_killed(multirun)
        signal_name = getattr(err, "signal_name", "SIGINT")
        print(f"{PROG}: interrupted by {signal_name}", file=sys.stderr)
        sys.exit(getattr(err, "exit_status", 130))
    except UserError as err:
        if not multirun:
            print(f"{PROG}: error: {err}", file=sys.stderr)
            sys.exit(2)
        # In a sweep the other jobs go on; the job's MLflow run is already FAILED.
        print(f"{PROG}: {name} failed: {err}", file=sys.stderr)
        return _failed(ticket, err)
    except Exception as err:
        if not multirun:
            raise  # a bug in this code: its traceback
        traceback.print_exc()
        print(f"{PROG}: {name} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return _failed(ticket, err)
    chain = outcome.chain
    kept = chain.kept_val_accuracy
    shown = f"validation accuracy {kept:.4f}, " if kept is not None else ""
    accuracy = chain.test_metrics["test_accuracy"]
    print(
        f"{name}: {shown}test accuracy {accuracy:.4f} "
        f"(MLflow run {outcome.run_id}, outputs in {job_dir})"
    )
    if outcome.registered:
        print(f"registered the model as {outcome.registered}")
    return kept if kept is not None else math.nan


def _trial(trial_id: str, params: dict[str, Any], job_dir: Path, tags: dict[str, str]) -> Any:
    """One trial of a search (hydra/sweeper=optuna): its epochs go to the study."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from backprop.app.search import TrialTicket, run_trial

    sweeper = OmegaConf.to_container(HydraConfig.get().sweeper, resolve=True)
    ticket = TrialTicket.find(trial_id, sweeper)

    def one(values, folder, run_name, run_tags, parent, watch, earlier):  # one seed's run
        store = Store()
        settings, values = again(Settings.from_params(values, COMPOSED), values, earlier, store)
        outcome = run_job(
            settings, values, folder, store, parent,
            run_name=run_name, tags=run_tags, progress=False, watch=watch,
        )  # fmt: skip
        return outcome.run_id, outcome.chain.results["evaluate"].metrics

    result = run_trial(ticket, params, job_dir, tags, one)
    if result.state == "PRUNED":
        print(f"trial {ticket.number} ({ticket.name}): pruned after epoch {result.epoch} "
              f"(MLflow run {result.run_id})")  # fmt: skip
    else:
        spread = ""
        if len(result.values) > 1:
            import statistics

            spread = f" ± {statistics.stdev(result.values):.4f} over {len(result.values)} seeds"
        print(f"trial {ticket.number} ({ticket.name}): {ticket.metric} {result.value:.4f}{spread} "
              f"(MLflow run {result.run_id}, outputs in {job_dir})")  # fmt: skip
    return result


def _failed(ticket: str | None, err: BaseException) -> Any:
    """A failed job's return value: NaN, or a failed trial for a search."""
    if ticket is None:
        return math.nan
    from backprop.app.search import TrialOutcome

    return TrialOutcome("FAIL", error=f"{err}"[:500])


_LAUNCHER_PID = "BACKPROP_LAUNCHER_PID"
_watching = False  # this process watches its launcher already


def _exit_with_launcher() -> None:
    """In a worker process of a parallel launcher (joblib's loky, Ray): end when the
    process that launched the sweep is gone, as after a SIGKILL, instead of training on
    for nobody.  A daemon thread watches for it once a second; the job ends as if
    interrupted by SIGTERM (its run KILLED, its checkpoint kept)."""
    global _watching
    launcher = int(os.environ.get(_LAUNCHER_PID, "0"))
    if not launcher or launcher == os.getpid() or _watching:
        return
    _watching = True

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(launcher, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)  # the job's run ends KILLED
                time.sleep(10)  # then the worker, which its pool would keep idle
                os._exit(128 + signal.SIGTERM)
            except PermissionError:
                pass  # alive, another user's: not ours to tell

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _resolve(cfg: Any) -> tuple[dict[str, Any], Settings]:
    from omegaconf import OmegaConf

    try:
        params = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # the conf_digest resolver's check, wrapped by OmegaConf
        raise ConfigError(describe_config_error(err)) from None
    return params, Settings.from_params(params, COMPOSED)


def _record_failed_job(cfg: Any, run_name: str, tags: dict[str, str], err: UserError) -> None:
    """A job whose config does not validate is a FAILED run of the sweep all the same."""
    with contextlib.suppress(UserError), Tracker.open(
        Store(), cfg.experiment_name, parent_run_id=os.environ.get(PARENT_RUN_ENV),
        run_name=run_name, tags=tags,
    ):  # fmt: skip
        raise err


def _sweep_killed(multirun: bool) -> None:
    """An interrupted sweep's parent run is KILLED too, not left RUNNING."""
    parent = os.environ.get(PARENT_RUN_ENV)
    if multirun and parent:
        mark_parent_killed(Store(), parent)


def _run_name(hc: Any, multirun: bool) -> str:
    """What differs: a job's swept values (``lr=0.3 hidden_sizes=[16]``), a run's overrides."""
    overrides = list(hc.overrides.task)
    if multirun:
        return job_run_name(overrides)
    return short_overrides(overrides) or "defaults"


def _run_tags(hc: Any, multirun: bool) -> dict[str, str]:
    """The overrides whole, quoted for a shell (to copy onto a command line), and a job's
    number in its sweep."""
    task = [o for o in hc.overrides.task if not (multirun and o.startswith("train.resume="))]
    tags = {"overrides": " ".join(shlex.quote(o) for o in task)[:5000]}
    if multirun:
        tags["sweep_job"] = str(hc.job.num)
        tags["mlflow.runColor"] = job_colour(hc.job.num)
    return tags


def check_overrides(argv: list[str], conf: Path) -> None:
    """Compose every config the command line asks for, before Hydra starts any job.

    Hydra reports a bad override in several lines (and only when it reaches the job);
    here it is one line naming the key, exit status 2, and no MLflow run is opened.
    A sweep of up to PREFLIGHT_COMBINATIONS jobs is composed job by job (values that are
    each valid may not be together, e.g. two fractions summing past 1); a larger one has
    each value tried with the other overrides at their first value.
    """
    # Hydra's own command-line parser: it has no public one, and a copy would drift.
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.shell_completion:
        return
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
    except Exception as err:  # a syntax error: Hydra's message is one line
        raise ConfigError(str(err).strip().splitlines()[0]) from None
    plain, choices = [], []
    searching = any(o.input_line == "hydra/sweeper=optuna" for o in parsed)
    for o in parsed:
        if searching and o.get_key_element().startswith("hydra.sweeper."):
            _check_sweeper_key(o.get_key_element(), conf)
        if o.get_key_element() == "hydra.launcher.n_jobs" and o.value() == 0:
            raise ConfigError("hydra.launcher.n_jobs must be a number of parallel jobs >= 1 "
                              "(or -1: one per core), got 0")  # fmt: skip
        if o.is_hydra_override():
            continue
        _check_group_choice(o, conf)
        if o.is_sweep_override() and not args.multirun:
            raise ConfigError(f"{o.input_line} sweeps several values: add --multirun")
        if not o.is_sweep_override():
            plain.append(o)
            choices.append([None])
            continue
        try:
            values = [str(v) for v in o.sweep_string_iterator()]
        except Exception:  # glob(...) of group options: Hydra expands and checks it itself
            if o.is_range_sweep():  # range(a, b, 0)
                raise ConfigError(f"{o.input_line}: a range needs a step other than 0") from None
            continue
        if not values:
            raise ConfigError(f"{o.input_line}: no values; a range(start, stop[, step]) "
                              "stops before stop, so start must come before it")  # fmt: skip
        plain.append(o)
        choices.append(values)

    def text(o: Any, value: str | None) -> str:
        return o.input_line if value is None else f"{o.get_key_element()}={value}"

    # Each value with the others at their first (the bad value named alone), then, unless
    # there are too many to compose here (~0.1 s each), every job's combination.
    firsts = [text(o, values[0]) for o, values in zip(plain, choices)]
    candidates: list[tuple[str, ...]] = [tuple(firsts)]
    for i, (o, values) in enumerate(zip(plain, choices)):
        candidates += [(*firsts[:i], text(o, v), *firsts[i + 1 :]) for v in values[1:]]
    if math.prod(len(values) for values in choices) <= PREFLIGHT_COMBINATIONS:
        candidates += itertools.product(
            *([text(o, v) for v in values] for o, values in zip(plain, choices))
        )
    for overrides in dict.fromkeys(candidates):
        compose_config(list(overrides), conf)


def _check_sweeper_key(key: str, conf: Path) -> None:
    """``hydra.sweeper.n_trails=5``: Hydra's advice is a ``+``, which would hide the typo."""
    import yaml

    from backprop.pipeline.settings import unknown_key

    path = conf / "hydra/sweeper/optuna.yaml"
    with contextlib.suppress(OSError, yaml.YAMLError):
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}

        def keys(node: Any, prefix: str) -> list[str]:
            if not isinstance(node, dict) or (prefix.endswith(".params") and prefix):
                return [prefix]
            return [k for name, v in node.items() for k in keys(v, f"{prefix}.{name}")]

        known = [k for k in keys(values, "hydra.sweeper") if not k.endswith("._target_")]
        if key not in known and not key.startswith("hydra.sweeper.params."):
            raise unknown_key(key, known)


def _check_group_choice(override: Any, conf: Path) -> None:
    """``model=[1,2]`` names a config group with a value that is no option's name: Hydra
    fails deep inside with "argument of type 'int' is not iterable"."""
    key = override.get_key_element().lstrip("+~")
    group = conf / key
    if not group.is_dir() or override.is_sweep_override() or override.value() is None:
        return
    if not isinstance(override.value(), str):
        options = ", ".join(sorted(p.stem for p in group.glob("*.yaml")))
        raise ConfigError(
            f"{key} is a config group: choose one of {options} ({key}={options.split(', ')[0]}), "
            f"or set one of its keys ({key}.<key>=<value>)"
        )


def own_output_folder(argv: list[str], root: Path) -> list[str]:
    """``argv`` plus ``hydra.run.dir`` (or ``hydra.sweep.dir``) naming a folder created here.

    ``outputs/runs/<date>/<HH-MM-SS>`` (``outputs/sweeps/...`` for a sweep), with ``-2``,
    ``-3``... when another run took it in the same second: Hydra's own ``${now:}`` folders
    would be shared, and one run would evaluate the other's model.  A folder given on the
    command line is the user's; printing the config or help creates none.
    """
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.shell_completion or args.cfg or args.info:
        return argv
    key = "hydra.sweep.dir" if args.multirun else "hydra.run.dir"
    if any(o.lstrip("+").split("=", 1)[0] == key for o in args.overrides):
        return argv
    now = time.localtime()
    kind = "sweeps" if args.multirun else "runs"
    parent = root / OUTPUTS / kind / time.strftime("%Y-%m-%d", now)
    with writing(parent):  # a read-only project, a full disk: one line
        folder = new_folder(parent, time.strftime("%H-%M-%S", now))
    quoted = str(folder).replace("'", "\\'")  # Hydra's quoted string
    return [*argv, f"{key}='{quoted}'"]


def main() -> None:
    import hydra

    register()
    conf = conf_dir()
    if not (conf / "config.yaml").is_file():
        print(f"{PROG}: error: no conf/config.yaml in {Path.cwd()} or above; "
              "run it from the project folder", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    plain_warnings()
    try:
        check_overrides(sys.argv[1:], conf)
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        sys.argv[1:] = own_output_folder(sys.argv[1:], conf.parent)
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        sys.exit(2)
    os.environ[_LAUNCHER_PID] = str(os.getpid())  # workers watch it (_exit_with_launcher)
    sys.stdout = ReaderGone(sys.stdout)  # before Hydra's log handlers take it
    hydra.main(config_path=str(conf), config_name="config", version_base=None)(task)()


if __name__ == "__main__":
    main()
