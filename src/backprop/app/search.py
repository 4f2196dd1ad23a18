"""Bayesian search over ``conf/`` with Optuna: the sweeper's side and the trial's side.

``backprop-experiment --multirun hydra/sweeper=optuna 'optim.lr=tag(log, interval(0.001, 1))'``
runs :class:`Search` (through the Hydra plugin ``hydra_plugins.backprop_optuna``) in the
launching process: it reads the search space from the command line and the sweeper's
``params:`` block, checks it before any trial starts, opens the study in its database,
asks Optuna for trials (ask-and-tell), launches them as Hydra jobs with the configured
launcher (basic, joblib, Ray) and tells Optuna how each ended.

Each job learns its trial through ``hydra.job.env_set`` (:data:`TRIAL_ENV`; a reused
worker process keeps its first environment otherwise) and runs :func:`run_trial`:
the job's epochs are reported to the study, and a pruner's verdict ends training
(:class:`~backprop.pipeline.runlog.TrainingStopped`): the run is KILLED with tags
``optuna.state=PRUNED`` and ``pruned_epoch``, its checkpoint kept.

The study is named after what it searches (the space, the fixed overrides, the metric),
so the same command continues it: finished trials are not run again, a trial left
RUNNING by a sweep of this machine that is gone runs again from its checkpoint, and
``n_trials`` counts the study's trials in all.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import socket
import statistics
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge

from backprop.app.sweep import (
    BEST_RUN_ENV,
    FAILED_TRIALS_ENV,
    PARENT_COLOUR,
    PARENT_RUN_ENV,
    SCORE_ENV,
    job_colour,
    mark_parent_killed,
)
from backprop.errors import ConfigError, TrackingError, UserError
from backprop.pipeline.files import atomic_write_bytes, exclusive_lock, process_alive
from backprop.pipeline.project import project_root
from backprop.pipeline.runlog import TrainingStopped
from backprop.schema import build, choice, settings

PROG = "backprop-experiment"
TRIAL_ENV = "BACKPROP_TRIAL"  # <study id>:<trial id>:<trial number> (see TrialTicket.find)
STUDY_FILE = "optuna.db"
METRICS = {
    "val_accuracy": ("maximize", "kept_val_accuracy"),
    "val_loss": ("minimize", "kept_val_loss"),
}
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler",
            "cmaes": "CmaEsSampler"}  # fmt: skip
PRUNERS = {"median": "MedianPruner", "hyperband": "HyperbandPruner", "none": "NopPruner"}
FIGURES = ("optimization_history", "param_importances", "parallel_coordinate", "slice")


# -- the sweeper's settings (conf/hydra/sweeper/optuna.yaml) ----------------------------


@settings
class SamplerSettings:
    name: Annotated[str, choice(SAMPLERS)] = "tpe"
    seed: Annotated[int, Ge(0)] | None = 0  # null: a different search every time


@settings
class PrunerSettings:
    name: Annotated[str, choice(PRUNERS)] = "median"
    # median: no pruning until this many trials have finished, nor before this epoch
    n_startup_trials: Annotated[int, Ge(0)] = 5
    n_warmup_steps: Annotated[int, Ge(0)] = 5
    # hyperband: the fewest epochs a trial gets, and the factor between its brackets
    min_resource: Annotated[int, Ge(1)] = 1
    reduction_factor: Annotated[int, Ge(2)] = 3


@settings
class SearchSettings:
    n_trials: Annotated[int, Ge(1)] = 20
    n_jobs: Annotated[int, Ge(1)] | None = None  # trials at once; null: the launcher's n_jobs
    metric: Annotated[str, choice(METRICS)] = "val_accuracy"
    repeats: Annotated[int, Ge(1)] = 1
    storage: str | None = None  # null: sqlite:///<project>/optuna.db
    study_name: str | None = None  # null: named after the search (space, fixed overrides)
    max_failures: Annotated[int, Ge(1)] | None = None  # null: n_trials
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    params: dict[str, str] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return METRICS[self.metric][0]

    @property
    def score(self) -> str:
        """The run metric a trial's value is: the kept epoch's (``kept_val_accuracy``)."""
        return METRICS[self.metric][1]


def search_settings(values: Mapping[str, Any]) -> SearchSettings:
    """The sweeper's settings; ConfigError naming ``hydra.sweeper.<key>``."""
    values = dict(values)
    sections = {}
    for key, make in (("sampler", SamplerSettings), ("pruner", PrunerSettings)):
        try:
            sections[key] = build(make, values.pop(key, None))
        except ConfigError as err:
            raise err.within(f"hydra.sweeper.{key}") from None
    params = values.pop("params", None) or {}
    if not isinstance(params, Mapping):
        raise ConfigError(
            "must map keys to search spaces, e.g. optim.lr: interval(0.01, 1)",
            "hydra.sweeper.params",
        )
    try:
        return build(
            SearchSettings,
            {**values, **sections, "params": {str(k): str(v) for k, v in params.items()}},
        )
    except ConfigError as err:
        raise err.within("hydra.sweeper") from None


# -- the search space --------------------------------------------------------------------


@dataclass
class Space:
    """What a sweep searches: a distribution per key, and the overrides every trial gets."""

    distributions: dict[str, Any]
    written: dict[str, str]  # key -> as written (``tag(log, interval(0.001, 1.0))``)
    fixed: list[str]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's command line: the fixed overrides, then its sampled values."""
        return [*self.fixed, *(f"{k}={_override_value(params[k])}" for k in self.distributions)]

    def identity(self) -> dict[str, str]:
        """The space as Optuna reads it (spacing and spelling aside): what names a study and
        what a study remembers searching."""
        from optuna.distributions import distribution_to_json

        return {k: distribution_to_json(d) for k, d in sorted(self.distributions.items())}

    def name(self, params: Mapping[str, Any]) -> str:
        """A trial's run name: its values, by the keys' last parts (``lr=0.0123 ...``)."""
        return " ".join(
            f"{k.rsplit('.', 1)[-1]}={shown_value(params[k])}" for k in self.distributions
        )[:250]

    def samples(self) -> Iterator[list[str]]:
        """Overrides to compose before any trial: each key at its ends (or each of its
        choices) with the others at their first value."""
        ends = {k: _ends(d) for k, d in self.distributions.items()}
        first = {k: v[0] for k, v in ends.items()}
        yield self.overrides(first)
        for key, values in ends.items():
            for value in values[1:]:
                yield self.overrides({**first, key: value})


def parse_space(arguments: list[str], params: Mapping[str, str], grid: bool) -> Space:
    """The search space of a command line (``interval``, ``tag(log, ...)``, ``tag(int,
    ...)``, ``choice``, ``range``, ``a,b,c``) over the sweeper's ``params:`` block (the
    command line wins); ConfigError in one line for what Optuna cannot search."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    given = []
    for line in [*(f"{k}={v}" for k, v in params.items()), *arguments]:
        try:
            given += parser.parse_overrides([line])
        except Exception as err:  # a syntax error: Hydra's message is one line
            raise ConfigError(f"{line}: {str(err).strip().splitlines()[0]}") from None
    distributions: dict[str, Any] = {}
    written: dict[str, str] = {}
    fixed: dict[str, str] = {}
    for o in given:
        key = o.get_key_element()
        line = o.input_line or f"{key}={o.get_value_element_as_str()}"
        if not o.is_sweep_override():
            value = o.get_value_element_as_str() if not o.is_delete() else None
            fixed[key] = line if value is None else f"{o.key_or_group}={value}"
            if o.input_line and o.input_line.startswith(("+", "~")):
                fixed[key] = o.input_line
            distributions.pop(key, None)
            continue
        if o.is_hydra_override():
            raise ConfigError(f"{line}: a hydra.* key cannot be searched")
        fixed.pop(key, None)
        distributions[key] = _distribution(o, line, grid)
        written[key] = line.split("=", 1)[1]
    if not distributions:
        raise ConfigError(
            "nothing to search: give at least one key a search space, e.g. "
            "'optim.lr=tag(log, interval(0.001, 1.0))' or 'train.batch_size=choice(16,32)'"
        )
    return Space(distributions, written, list(fixed.values()))


def _distribution(o: Any, line: str, grid: bool) -> Any:
    from hydra.core.override_parser.types import Glob, Transformer
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = o.value()
    if isinstance(value, Glob):
        raise ConfigError(f"{line}: glob() is not a search space; list the options with choice()")
    if o.is_choice_sweep() or (o.is_range_sweep() and value.shuffle):
        choices = list(o.sweep_iterator(transformer=Transformer.encode))
        if len(set(map(repr, choices))) < len(choices):
            raise ConfigError(f"{line}: a choice is listed twice")
        return CategoricalDistribution(choices)
    if o.is_range_sweep():
        numbers = list(o.sweep_iterator())
        if not numbers:
            raise ConfigError(
                f"{line}: empty range; write range(start, stop[, step]) with "
                "start < stop (stop is not included)"
            )
        return CategoricalDistribution(numbers)
    assert o.is_interval_sweep(), line
    if grid:
        raise ConfigError(
            f"{line}: the grid sampler needs values to try: use choice(...) or "
            "range(...), or another sampler (hydra.sweeper.sampler.name=tpe)"
        )
    low, high, tags = value.start, value.end, set(value.tags)
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(
            f"{line}: unknown tag {sorted(unknown)[0]!r}; an interval takes "
            "tag(log, ...) and tag(int, ...)"
        )
    if not low < high:
        raise ConfigError(f"{line}: empty interval; write interval(low, high) with low < high")
    log = "log" in tags
    if log and low <= 0:
        raise ConfigError(f"{line}: a log scale needs low > 0")
    if "int" in tags:
        if low != int(low) or high != int(high):
            raise ConfigError(f"{line}: tag(int, ...) needs whole-number ends")
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _ends(distribution: Any) -> list[Any]:
    if hasattr(distribution, "choices"):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _override_value(value: Any) -> str:
    """A sampled value as Hydra's grammar reads it back (choices are encoded strings)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def shown_value(value: Any) -> str:
    """A sampled value in a run name: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- the study ---------------------------------------------------------------------------


def storage_url(search: SearchSettings, root: Path) -> str:
    """The study's database: ``optuna.db`` at the project root, or ``search.storage``
    (a relative SQLite path made absolute: jobs may run in other folders)."""
    if search.storage is None:
        return f"sqlite:///{root / STUDY_FILE}"
    url = search.storage
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{(Path.cwd() / url.removeprefix('sqlite:///')).resolve()}"
    return url


def shown_url(url: str) -> str:
    """A storage URL without its password, to print and to tag."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def study_name(search: SearchSettings, space: Space, experiment: str) -> str:
    """``<experiment>-<digest>``: the same search (space, fixed overrides, metric, repeats)
    gets the same study, whatever n_trials says."""
    if search.study_name:
        return search.study_name
    what = {
        "space": space.identity(),
        "fixed": sorted(space.fixed),
        "metric": search.metric,
        "repeats": search.repeats,
        "sampler": search.sampler.name,
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]
    return f"{experiment}-{digest}"


def _same_search(study: Any, space: Space, search: SearchSettings, url: str) -> None:
    """A study searches one space: a new study records it, an old one must match it
    (Optuna cannot change a choice list, and mixed spaces make its history meaningless)."""
    searched = {"space": space.identity(), "metric": search.metric, "repeats": search.repeats}
    known = study.user_attrs.get("search")
    if known is None:
        study.set_user_attr("search", searched)
        study.set_metric_names([search.metric])
        return
    if known != searched:
        was = ", ".join(f"{k}" for k in known.get("space", {})) or "?"
        raise ConfigError(
            f"study {study.study_name!r} in {shown_url(url)} searched another space or metric "
            f"({was}; {known.get('metric')}, repeats {known.get('repeats')}); give this search "
            "another hydra.sweeper.study_name, or none (then it is named after its space)"
        )


def make_pruner(pruner: PrunerSettings) -> Any:
    import optuna

    if pruner.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner.n_startup_trials, n_warmup_steps=pruner.n_warmup_steps
        )
    if pruner.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_resource, reduction_factor=pruner.reduction_factor
        )
    return optuna.pruners.NopPruner()


def make_sampler(search: SearchSettings, space: Space, seed: int | None) -> Any:
    import optuna

    name = search.sampler.name
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        grid = {k: list(d.choices) for k, d in space.distributions.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed)


def describe_sampler(sampler: SamplerSettings) -> str:
    return f"{sampler.name} (seed {sampler.seed})"


def describe_pruner(pruner: PrunerSettings) -> str:
    if pruner.name == "median":
        return (
            f"median (after {pruner.n_startup_trials} trials, "
            f"from epoch {max(1, pruner.n_warmup_steps)})"
        )
    if pruner.name == "hyperband":
        return f"hyperband (min {pruner.min_resource} epochs, factor {pruner.reduction_factor})"
    return "none"


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna's INFO lines and experimental-API warnings: this module says what happens."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def study_lock(url: str) -> Path | None:
    """The lock file of a SQLite study (``optuna.db.lock``): held while the database is
    created and while a sweep counts and asks trials, so two sweeps at once neither race
    to create its tables nor ask past n_trials together.  None for a server database."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return path.with_name(path.name + ".lock")


def locked(lock: Path | None) -> Any:
    return exclusive_lock(lock) if lock else contextlib.nullcontext()


def open_study(url: str, name: str, direction: str, pruner: Any) -> Any:
    """Create the study or load it (under :func:`study_lock`)."""
    import optuna
    from optuna.storages import RDBStorage

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    lock = study_lock(url)
    if lock is not None and not lock.parent.is_dir():
        raise TrackingError(
            f"{lock.parent}: no such folder for the study's database (hydra.sweeper.storage)"
        )
    try:
        with locked(lock):
            storage = RDBStorage(url, engine_kwargs=engine)
            return optuna.create_study(
                study_name=name,
                storage=storage,
                direction=direction,
                pruner=pruner,
                load_if_exists=True,
            )
    except ValueError as err:  # another direction under the same name
        raise ConfigError(
            f"study {name!r} in {shown_url(url)}: {err}; name another (hydra.sweeper.study_name)"
        ) from None
    except Exception as err:
        raise TrackingError(storage_problem(err, url)) from None


def storage_problem(err: BaseException, url: str) -> str:
    """One line: what is wrong with the study's database, and what to do."""
    chain, e = [], err
    while e is not None and len(chain) < 10:
        chain.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    text = " ".join(chain)
    where = f"the study's database {shown_url(url)}"
    if "readonly database" in text or "read-only" in text.lower():
        return f"{where} is read-only; make it writable or set hydra.sweeper.storage"
    if "disk is full" in text or "No space left" in text:
        return f"{where}: the disk is full; free some space and run the same command again"
    if "Could not parse SQLAlchemy URL" in text or "Can't load plugin" in text:
        return (f"hydra.sweeper.storage={url}: not a database URL; write sqlite:////"
                "absolute/path/optuna.db or postgresql+psycopg2://user@host/db")  # fmt: skip
    if "Failed to import DB access module" in text or "No module named" in text:
        return (f"{where}: its driver is not installed; for PostgreSQL pip install -e "
                "'.[postgres]' and write postgresql+psycopg2://")  # fmt: skip
    if "file is not a database" in text:
        return f"{where} is not a database; point hydra.sweeper.storage at another file"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{where} cannot be used: {first}"


# -- the trial's side (in the job) -------------------------------------------------------


@dataclass
class TrialTicket:
    """What a job needs to know of its trial: found from the trial's id (the job's
    :data:`TRIAL_ENV`) and the sweeper's settings (the job's ``hydra.sweeper``)."""

    storage: str
    study: str
    trial_id: int
    number: int
    metric: str
    pruner: dict[str, Any]
    repeats: int
    name: str  # the run's name: the sampled values
    parent: str | None  # the study's MLflow run

    @classmethod
    def find(cls, ids: str, sweeper: Mapping[str, Any]) -> TrialTicket:
        """``ids``: ``<study id>:<trial id>`` in the study's storage."""
        search = search_settings({k: v for k, v in sweeper.items() if k != "_target_"})
        url = storage_url(search, project_root())
        storage = _storage(url)
        study_id, trial_id = map(int, ids.split(":")[:2])
        frozen = storage.get_trial(trial_id)
        return cls(
            url, storage.get_study_name_from_id(study_id), trial_id, frozen.number,
            search.metric, _plain(search.pruner), search.repeats,
            frozen.user_attrs.get("name", f"trial {frozen.number}"),
            storage.get_study_user_attrs(study_id).get("mlflow_parent_run_id"),
        )  # fmt: skip


@dataclass
class TrialOutcome:
    """What a job tells the sweeper (its Hydra return value)."""

    state: str  # COMPLETE, PRUNED, FAIL
    value: float | None = None
    values: list[float] = field(default_factory=list)  # one per seed with repeats
    epoch: int | None = None  # pruned after this epoch
    run_id: str | None = None
    error: str | None = None


class Reporter:
    """The trial's epochs to the study; raises TrainingStopped when the pruner says so."""

    def __init__(self, ticket: TrialTicket) -> None:
        import optuna

        with _optuna_quiet():
            study = optuna.load_study(
                study_name=ticket.study,
                storage=_storage(ticket.storage),
                pruner=make_pruner(build(PrunerSettings, ticket.pruner)),
            )
            self.trial = optuna.trial.Trial(study, ticket.trial_id)
        self.ticket = ticket
        frozen = study._storage.get_trial(ticket.trial_id)
        self.reported = set(frozen.intermediate_values)  # by an interrupted run of it

    records_run = False  # the trial is this run (no repeats): it is named in the study

    def run_started(self, run_id: str) -> None:
        if self.records_run:
            self.trial.set_user_attr("mlflow_run_id", run_id)

    def resumed_from(self, state: Any) -> None:
        """The epochs an interrupted attempt trained (its checkpoint's) but did not report."""
        for metrics in state.history.epochs:
            value = getattr(metrics, self.ticket.metric)
            if value is not None and metrics.epoch not in self.reported:
                self.trial.report(float(value), metrics.epoch)
                self.reported.add(metrics.epoch)

    def __call__(self, metrics: Any) -> None:
        value = getattr(metrics, self.ticket.metric)
        if value is None or metrics.epoch in self.reported:
            return
        try:
            with _optuna_quiet():
                self.trial.report(float(value), metrics.epoch)
                self.reported.add(metrics.epoch)
                pruned = self.trial.should_prune()
        except Exception as err:
            if not _storage_error(err):
                raise
            raise TrackingError(storage_problem(err, self.ticket.storage)) from None
        if pruned:
            raise TrainingStopped(
                f"pruned after epoch {metrics.epoch} ({self.ticket.metric} {value:.4f})",
                metrics.epoch,
                {"optuna.state": "PRUNED", "pruned_epoch": str(metrics.epoch)},
            )


@functools.lru_cache(maxsize=4)
def _storage(url: str) -> Any:
    from optuna.storages import RDBStorage

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return RDBStorage(url, engine_kwargs=engine)


def run_trial(
    ticket: TrialTicket,
    params: dict[str, Any],
    job_dir: Path,
    tags: dict[str, str],
    run: Callable[..., Any],
) -> TrialOutcome:
    """One trial: ``run(params, folder, run_name, tags, parent, watch, earlier)`` trains one
    seed and returns ``(run_id, metrics)`` (``earlier``: the run an interrupted attempt of
    it left, to go on with or replace); with repeats the seeds' runs are nested under a
    run of the trial, which gets their mean (and ``<metric>_std``)."""
    reporter = Reporter(ticket)
    score = METRICS[ticket.metric][1]
    tags = {
        **tags,
        "optuna.trial_number": str(ticket.number),
        "optuna.study": ticket.study,
        "sweep_job": str(ticket.number),
        "mlflow.runColor": job_colour(ticket.number),
    }
    earlier = reporter.trial.user_attrs.get("mlflow_run_id")
    try:
        if ticket.repeats == 1:
            reporter.records_run = True
            run_id, metrics = run(params, job_dir, ticket.name, tags, ticket.parent, reporter,
                                  earlier)  # fmt: skip
            value = metrics.get(score)
            return TrialOutcome("COMPLETE", value, [value], run_id=run_id)
        return _repeated(ticket, params, job_dir, tags, reporter, run, earlier)
    except TrainingStopped as err:
        return TrialOutcome("PRUNED", epoch=err.epoch, run_id=err.run_id)


def _repeated(ticket, params, job_dir, tags, reporter, run, earlier) -> TrialOutcome:
    """The trial's run, then one nested run per seed; seeds that finished in an interrupted
    attempt are not run again."""
    from mlflow.entities import Param

    from backprop.tracking.store import Store
    from backprop.tracking.tracker import HEADLINE_METRICS, Tracker, flatten, rounded

    score = METRICS[ticket.metric][1]
    store = Store()
    base = int(params["train"]["seed"])
    seeds = [base + i for i in range(ticket.repeats)]
    if earlier is not None and not store.run_exists(earlier):
        earlier = None
    with Tracker.open(
        store,
        params["experiment_name"],
        resume_run_id=earlier,
        parent_run_id=ticket.parent,
        run_name=ticket.name,
        tags={**tags, "repeats": str(ticket.repeats)},
    ) as trial_run:
        reporter.trial.set_user_attr("mlflow_run_id", trial_run.run_id)
        client = store.client
        if earlier is None:  # its params first: a pruned trial shows them too
            shown = {k: v for k, v in params.items() if k in SECTIONS}
            values = {
                k: v for k, v in flatten(shown).items() if k not in ("train.seed", "train.resume")
            }
            values.update(repeats=ticket.repeats, seeds=",".join(map(str, seeds)))
            client.log_batch(
                trial_run.run_id, params=[Param(k, str(v)[:6000]) for k, v in values.items()]
            )
        done, left = _seed_runs(store, trial_run.run_id, params["experiment_name"])
        results: list[dict[str, float]] = []
        first_open = next((i for i, seed in enumerate(seeds) if seed not in done), None)
        for i, seed in enumerate(seeds):
            if seed in done:
                results.append(done[seed])
                continue
            # only the seed that was running goes on from a checkpoint; the next ones start
            going_on = bool(params["train"].get("resume")) and i == first_open
            seeded = {**params, "train": {**params["train"], "seed": seed, "resume": going_on}}
            try:
                _, metrics = run(seeded, job_dir / f"seed-{seed}", f"seed {seed}",
                                 {"seed": str(seed), "optuna.trial_number": str(ticket.number)},
                                 trial_run.run_id, reporter if i == 0 else None,
                                 left.get(seed))  # fmt: skip
            except TrainingStopped as err:
                err.run_id = trial_run.run_id
                raise
            results.append(metrics)
        values = [r[score] for r in results]
        means = {
            m: statistics.fmean(r[m] for r in results)
            for m in HEADLINE_METRICS
            if all(m in r for r in results)
        }
        means[f"{score}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        for key, value in means.items():
            client.log_metric(trial_run.run_id, key, rounded(value))
    return TrialOutcome("COMPLETE", statistics.fmean(values), values, run_id=trial_run.run_id)


SECTIONS = ("data", "preprocess", "model", "optim", "train")


def _seed_runs(store: Any, run_id: str, experiment: str) -> tuple[dict, dict]:
    """A resumed trial's seeds: the metrics of those whose runs finished (not run again),
    and the run each unfinished one left (to go on with, or replace)."""
    done, left = {}, {}
    for child in store.children(run_id, experiment):
        seed = child.data.tags.get("seed")
        if seed is None:
            continue
        if child.info.status == "FINISHED":
            done[int(seed)] = dict(child.data.metrics)
        else:
            left[int(seed)] = child.info.run_id
    return done, left


# -- the sweeper's side ------------------------------------------------------------------


class Search:
    """One ``--multirun`` with ``hydra/sweeper=optuna``: ask, launch, tell, summarise."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)

    def setup(self, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Any]:
        # joblib's resource trackers warn of "leaked" semaphores of workers stopped early
        trackers = ("joblib.externals.loky.backend.resource_tracker",
                    "multiprocessing.resource_tracker")  # fmt: skip
        quiet = ",".join(f"ignore::UserWarning:{m}" for m in trackers)
        given = os.environ.get("PYTHONWARNINGS")
        os.environ["PYTHONWARNINGS"] = f"{given},{quiet}" if given else quiet
        _warm_workers(self.launcher, self.config)
        try:
            search = search_settings(self.raw)
            space = parse_space(arguments, search.params, search.sampler.name == "grid")
            self._check(space, search)
        except UserError as err:
            self._refuse(err)
        with _optuna_quiet():
            return self._sweep(search, space)

    def _refuse(self, err: UserError, status: int = 2) -> None:
        """One line and the exit status; the sweep's folder goes if nothing was written."""
        from omegaconf import OmegaConf

        folder = OmegaConf.select(self.config, "hydra.sweep.dir", default=None)
        with contextlib.suppress(OSError, TypeError):
            Path(folder).rmdir()  # only if empty
        print(f"{PROG}: error: {err}", file=sys.stderr)
        sys.exit(status)

    def _check(self, space: Space, search: SearchSettings) -> None:
        """Compose the search's corners (each key at its ends, each choice) before any trial."""
        from omegaconf import OmegaConf, open_dict

        from backprop.app.compose import describe_config_error, register
        from backprop.pipeline.project import conf_dir

        register()
        conf = conf_dir()
        for overrides in space.samples():
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
                with open_dict(cfg):
                    del cfg["hydra"]
                values = OmegaConf.to_container(cfg, resolve=True)
            except Exception as err:
                message = _outside_app(describe_config_error, err, conf, overrides)
                raise ConfigError(message) from None
            fraction = values.get("preprocess", {}).get("val_fraction")
            if fraction == 0:
                raise ConfigError(
                    f"the search reports {search.metric} per epoch, but "
                    "preprocess.val_fraction is 0; give it a validation split"
                )

    def _sweep(self, search: SearchSettings, space: Space) -> list[Any]:
        from optuna.trial import TrialState

        from backprop.tracking.store import Store

        root = project_root()
        url = storage_url(search, root)
        name = study_name(search, space, self.config.experiment_name)
        try:
            study = open_study(url, name, search.direction, make_pruner(search.pruner))
            _same_search(study, space, search, url)
        except UserError as err:
            self._refuse(err)
        lock = study_lock(url)
        with locked(lock):  # interrupted trials: this sweep's now, not another's too
            trials = study.get_trials(deepcopy=False)
            stale = self._stale(trials)
            for t in stale:
                study._storage.set_trial_user_attr(t._trial_id, "sweeper", _whoami())
        done = [t for t in trials if t.state.is_finished()]
        if done or stale:
            print(
                f"study {name} in {shown_url(url)}: {len(done)} trials done"
                + (
                    f", {len(stale)} interrupted (run again from their checkpoints)"
                    if stale
                    else ""
                )
                + f"; n_trials={search.n_trials}"
            )
        else:
            print(f"study {name} in {shown_url(url)}: new, n_trials={search.n_trials}")
        if len(trials) - len(stale) >= search.n_trials:
            print(f"the study has {len(trials)} trials, n_trials={search.n_trials}: nothing to "
                  "run; raise hydra.sweeper.n_trials to search on")  # fmt: skip
        if search.sampler.name == "grid":
            size = math.prod(len(d.choices) for d in space.distributions.values())
            if search.n_trials > size:
                print(f"the grid has {size} points: n_trials={search.n_trials} stops at {size}")
                search = _replace(search, n_trials=size)
        store = Store()
        try:
            experiment_id = store.experiment_id(self.config.experiment_name)
            with locked(lock):  # two sweeps starting together: one run for the study
                parent = self._parent(store, experiment_id, study, search, space, url)
        except UserError as err:
            self._refuse(err)
        os.environ[PARENT_RUN_ENV] = parent
        os.environ[SCORE_ENV] = search.score
        # the grid's order of points and CMA-ES's state come from one seeded sampler
        study.sampler = make_sampler(search, space, search.sampler.seed)
        batch_size = search.n_jobs or _launcher_jobs(self.config)
        self._study, self._space, self._search, self._lock = study, space, search, lock
        self._stale_left = list(stale)
        self._failures = sum(t.state == TrialState.FAIL for t in trials)
        self._failed: list[str] = []  # this command's failed trials
        self._job = 0
        self._said_stop = False  # max_failures reached, and said so
        try:
            with _signals_interrupt(), _launchers_quiet():
                if batch_size > 1 and type(self.launcher).__name__ == "JoblibLauncher":
                    returns = self._stream(batch_size)
                else:
                    returns = self._batches(batch_size)
        except KeyboardInterrupt as err:  # in the launching process: the trials stop too
            name = getattr(err, "signal_name", "SIGINT")
            mark_parent_killed(store, parent)
            print(f"{PROG}: interrupted by {name}; trials still running stop at their last "
                  "checkpoint; run the same command to go on", file=sys.stderr)  # fmt: skip
            sys.exit(getattr(err, "exit_status", 130))
        except Exception as err:
            if not _storage_error(err):
                raise
            store.client.set_terminated(parent, "FAILED")
            self._refuse(TrackingError(storage_problem(err, url)), status=1)
        if self._failed:
            os.environ[FAILED_TRIALS_ENV] = ", ".join(self._failed)
        self._finish(store, study, search, parent)
        return returns

    def _next(self, n: int) -> list[Any]:
        """Up to ``n`` trials to run: interrupted ones first, then new ones asked of the
        study while it has fewer than n_trials in all (this sweep's or another's), none
        once max_failures trials have failed."""
        search, study = self._search, self._study
        if self._failures >= (search.max_failures or search.n_trials):
            if not self._said_stop:
                self._said_stop = True
                print(f"{PROG}: {self._failures} trials failed (hydra.sweeper.max_failures="
                      f"{search.max_failures or search.n_trials}): no more trials",
                      file=sys.stderr)  # fmt: skip
            return []
        batch, self._stale_left = self._stale_left[:n], self._stale_left[n:]
        with locked(self._lock):  # the study's trials in all, this sweep's or another's
            while len(batch) < n and (count := len(study.get_trials(deepcopy=False))) < (
                search.n_trials
            ):
                # seeded by the study's count of trials: the same command proposes the same
                # trials, and a resumed study or a second sweep at once proposes new ones
                seed = search.sampler.seed
                if search.sampler.name in ("tpe", "random"):  # grid, CMA-ES: one, as seeded
                    study.sampler = make_sampler(
                        search, self._space, None if seed is None else seed + count
                    )
                trial = study.ask(self._space.distributions)
                trial.set_user_attr("sweeper", _whoami())
                trial.set_user_attr("name", self._space.name(trial.params))
                batch.append(study._storage.get_trial(trial._trial_id))
        return batch

    def _launch(self, trials: list[Any]) -> list[Any]:
        """Launch ``trials`` as jobs numbered on from the last (called in one thread only)."""
        overrides = [self._job_overrides(self._study, t, self._space) for t in trials]
        for trial in trials:
            self._started(trial)
        first, self._job = self._job, self._job + len(trials)
        return self._launched(overrides, first)

    def _launched(self, overrides: list[list[str]], first: int) -> list[Any]:
        return self.launcher.launch(overrides, initial_job_idx=first)

    def _started(self, trial: Any) -> None:
        print(f"trial {trial.number} started: {trial.user_attrs.get('name', '')}", flush=True)

    def _told(self, trial: Any, result: Any) -> None:
        outcome = _outcome(result)
        if outcome.state == "FAIL":
            self._failures += 1
            self._failed.append(str(trial.number))
        self._tell(self._study, trial, outcome, self._search)

    def _batches(self, size: int) -> list[Any]:
        """Ask a batch, launch it, tell its results in order: the launcher's own way (the
        basic launcher, Ray), and the same trials for the same seed."""
        returns = []
        while batch := self._next(size):
            results = self._launch(batch)
            for trial, result in zip(batch, results):
                self._told(trial, result)
            returns.append(results)
        return returns

    def _stream(self, workers: int) -> list[Any]:
        """Keep ``workers`` trials running: a new one is asked as soon as one ends (joblib's
        pool is shared by the threads that launch one trial each), so a long trial does not
        hold the others' workers idle as a batch would.  The sampler then sees trials in the
        order they end, which varies from run to run."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

        returns = []
        running: dict[Any, Any] = {}
        with ThreadPoolExecutor(workers, thread_name_prefix="trial") as pool:
            try:
                self._keep_running(pool, workers, running, returns, wait, FIRST_COMPLETED)
            except KeyboardInterrupt:
                # the workers stop too, at a checkpoint: their trials stay RUNNING, to resume
                done, _ = wait(running, timeout=2.0)  # a Ctrl-C reached them already?
                if len(done) < len(running):
                    _stop_workers()
                wait(running, timeout=60)
                raise
        return returns

    def _keep_running(self, pool, workers, running, returns, wait, first_completed) -> None:
        """Submit trials until ``workers`` run; tell each as it ends; until none is left."""
        while True:
            for trial in self._next(workers - len(running)) if len(running) < workers else []:
                overrides = [self._job_overrides(self._study, trial, self._space)]
                self._started(trial)
                running[pool.submit(self._launched, overrides, self._job)] = trial
                self._job += 1
            if not running:
                return
            done, _ = wait(running, return_when=first_completed)
            for future in done:
                trial = running.pop(future)
                results = future.result()  # a launcher's own error, or SystemExit, goes on
                self._told(trial, results[0])
                returns.append(results)

    def _stale(self, trials: list[Any]) -> list[Any]:
        """Trials left RUNNING by a sweep of this machine whose process is gone."""
        from optuna.trial import TrialState

        host = socket.gethostname()
        stale = []
        for t in trials:
            owner = t.user_attrs.get("sweeper", "")
            if t.state != TrialState.RUNNING or ":" not in owner:
                continue
            who, pid = owner.rsplit(":", 1)
            if who == host and not process_alive(int(pid)):
                stale.append(t)
        return stale

    def _job_overrides(self, study: Any, trial: Any, space: Space) -> list[str]:
        """A trial's overrides; its id reaches the job through ``hydra.job.env_set`` (a
        reused worker process keeps its first environment)."""
        lines = space.overrides(trial.params)
        if trial.intermediate_values or "mlflow_run_id" in trial.user_attrs:
            lines.append("train.resume=true")  # interrupted: on from its checkpoint
        ids = f"{study._study_id}:{trial._trial_id}:{trial.number}"
        return [*lines, f"+hydra.job.env_set.{TRIAL_ENV}='{ids}'"]

    def _tell(self, study: Any, trial: Any, outcome: TrialOutcome, search: SearchSettings) -> None:
        from optuna.trial import TrialState

        number = trial.number
        if outcome.run_id:
            study._storage.set_trial_user_attr(trial._trial_id, "mlflow_run_id", outcome.run_id)
        if (
            outcome.state == "COMPLETE"
            and outcome.value is not None
            and not math.isnan(outcome.value)
        ):
            if len(outcome.values) > 1:
                study._storage.set_trial_user_attr(trial._trial_id, "values", outcome.values)
            _tell(study, number, outcome.value, skip_if_finished=True)
            best = study.best_trial
            print(f"best so far: trial {best.number}, {search.metric} {best.value:.4f}")
        elif outcome.state == "PRUNED":
            _tell(study, number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            _tell(study, number, state=TrialState.FAIL, skip_if_finished=True)
            if outcome.error is None:  # the job could not say so itself
                print(f"{PROG}: trial {number} failed", file=sys.stderr)

    def _parent(
        self,
        store: Any,
        experiment_id: str,
        study: Any,
        search: SearchSettings,
        space: Space,
        url: str,
    ) -> str:
        """The study's MLflow run: the one of its first sweep (RUNNING again), or a new one."""
        client = store.client
        known = study.user_attrs.get("mlflow_parent_run_id")
        if known and store.run_exists(known):
            client.update_run(known, status="RUNNING")
            return known
        tags = {
            "sweep": "parent",
            "sweeper": "optuna",
            "mlflow.runColor": PARENT_COLOUR,
            "optuna.study": study.study_name,
            "optuna.storage": shown_url(url),
            "optuna.sampler": describe_sampler(search.sampler),
            "optuna.pruner": describe_pruner(search.pruner),
            "optuna.direction": search.direction,
            "optuna.metric": search.metric,
            "optuna.search_space": json.dumps(space.written)[:5000],
            "sweep_overrides": " ".join(space.fixed)[:5000],
        }
        if search.repeats > 1:
            tags["repeats"] = str(search.repeats)
        short = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in space.written.items())
        run = client.create_run(experiment_id, run_name=f"study: {short}"[:250], tags=tags)
        study.set_user_attr("mlflow_parent_run_id", run.info.run_id)
        return run.info.run_id

    def _finish(self, store: Any, study: Any, search: SearchSettings, parent: str) -> None:
        """The study's counts, best trial and Optuna's figures into its run and the sweep's
        folder; the best trial on the terminal."""
        from omegaconf import OmegaConf
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        counts = {
            s.name.lower(): sum(t.state == s for t in trials)
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
        }
        client = store.client
        for state, n in counts.items():
            client.set_tag(parent, f"optuna.trials_{state}", str(n))
        print(
            "trials: "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            + f" (study {study.study_name})"
        )
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            print("no trial completed: no best trial")
            return
        best = study.best_trial
        run_id = best.user_attrs.get("mlflow_run_id")
        client.set_tag(parent, "optuna.best_trial", str(best.number))
        client.log_metric(parent, "best_value", best.value)
        if run_id:
            os.environ[BEST_RUN_ENV] = run_id
        params = " ".join(f"{k}={shown_value(v)}" for k, v in best.params.items())
        print(
            f"best trial: {best.number}, {search.metric} {best.value:.4f}, {params}"
            + (f" (MLflow run {run_id})" if run_id else "")
        )
        folder = Path(OmegaConf.select(self.config, "hydra.sweep.dir", default=None) or "-")
        for name, png in study_figures(study, search.metric).items():
            client.log_image(parent, _image(png), f"optuna/{name}.png")
            if folder.is_dir():
                atomic_write_bytes(folder / f"optuna_{name}.png", png)
        if folder.is_dir():
            print(f"Optuna's figures: {folder}/optuna_*.png")


def _outside_app(function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function``, which composes conf/ anew (to name the keys a typo may mean), as
    if no Hydra app ran: Hydra allows one at a time; the running one is put back after."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    running = hydra.hydra
    hydra.clear()
    try:
        return function(*args)
    finally:
        hydra.clear()
        if running is not None:
            hydra.initialize(running)


def study_figures(study: Any, metric: str) -> dict[str, bytes]:
    """Optuna's own matplotlib figures of the study, as PNG bytes (those that it can draw:
    parameter importances need two finished trials)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    figures = {}
    # Optuna's plots switch matplotlib to its ggplot style: only for these figures
    with _optuna_quiet(), matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one trial: "identical low and high"
        for name in FIGURES:
            try:
                ax = getattr(ov, f"plot_{name}")(study, target_name=metric)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few trials for this one
            fig = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
            _tidy(fig, integer_x=name == "optimization_history")
            fig.set_size_inches(max(fig.get_size_inches()[0], 8), 5)
            out = io.BytesIO()
            fig.savefig(out, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            figures[name] = out.getvalue()
    return figures


def _tidy(fig: Any, integer_x: bool) -> None:
    """Readable axes on Optuna's figures: no overlapping minor labels on a log axis, trials
    numbered in whole numbers, choices without the quotes of their strings."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":  # 0.01, 0.02, 0.05, 0.1...: readable in any span
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
                axis.set_minor_formatter(NullFormatter())
        if integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.canvas.draw()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t.get_text() for t in axis.get_ticklabels()]
            if any(len(t) > 1 and t[0] == t[-1] == "'" for t in labels):
                axis.set_ticks(axis.get_ticklocs())
                axis.set_ticklabels([t.strip("'") for t in labels])


def _image(png: bytes) -> Any:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png))


@contextlib.contextmanager
def _launchers_quiet() -> Iterator[None]:
    """The launchers' lines per job (its overrides, with the trial's internal ones, and
    joblib's pool each time): this module says which trial starts."""
    import logging

    names = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher")
    loggers = [logging.getLogger(n) for n in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _warm_workers(launcher: Any, config: Any) -> Any:
    """Start joblib's workers now, importing what a trial needs (MLflow, matplotlib, the
    stages: about 2.6 s each here), while this process checks the space and opens the
    study and its run, instead of after, when the first trials are launched."""
    import threading

    if type(launcher).__name__ != "JoblibLauncher" or _launcher_jobs(config) < 2:
        return None
    from joblib import Parallel, delayed
    from omegaconf import OmegaConf

    options = OmegaConf.to_container(config.hydra.launcher, resolve=True)
    options.pop("_target_", None)  # the launcher's own options: joblib reuses the same pool
    jobs = _launcher_jobs(config)

    def start() -> None:
        with contextlib.suppress(Exception):  # only a head start: the launcher does it anyway
            Parallel(**options)(delayed(_warm)() for _ in range(jobs))

    thread = threading.Thread(target=start, name="warm-workers", daemon=True)
    thread.start()
    return thread


def _warm() -> int:
    """In a worker: the imports of a trial's first job."""
    import matplotlib.pyplot  # noqa: F401
    import mlflow.pyfunc  # noqa: F401

    import backprop.app.job  # noqa: F401
    import backprop.pipeline.stages.evaluate  # noqa: F401
    import backprop.tracking.tracker  # noqa: F401

    return os.getpid()


def _stop_workers() -> None:
    """SIGTERM to this process's joblib workers: each ends its trial at a checkpoint (its
    run KILLED), as a Ctrl-C to the whole group would have."""
    import signal

    children = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*"):  # any thread may have started one
        with contextlib.suppress(OSError):
            children += (task / "children").read_text().split()
    with contextlib.suppress(OSError):
        for pid in map(int, children):
            with contextlib.suppress(OSError):
                if b"popen_loky" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM as Ctrl-C in the launching process (the trials' own processes handle theirs)."""
    from backprop.pipeline.interrupt import graceful

    with graceful():
        yield


def _storage_error(err: BaseException) -> bool:
    """An error of the study's database (full disk, locked, gone), not a bug here."""
    import sqlalchemy.exc
    from optuna.exceptions import StorageInternalError

    return isinstance(err, StorageInternalError | sqlalchemy.exc.OperationalError)


def _tell(study: Any, *args: Any, **kwargs: Any) -> None:
    """``study.tell``; the grid sampler asks the study to stop once every point has been
    tried, which only works inside ``optimize`` (the trial is stored all the same): here
    n_trials stops the sweep."""
    try:
        study.tell(*args, **kwargs)
    except RuntimeError as err:
        if "Study.stop" not in str(err):
            raise


def _outcome(result: Any) -> TrialOutcome:
    from hydra.core.utils import JobStatus

    value = getattr(result, "_return_value", None)
    if result.status == JobStatus.COMPLETED and isinstance(value, TrialOutcome):
        return value
    if isinstance(value, BaseException):
        return TrialOutcome("FAIL", error=f"{type(value).__name__}: {value}")
    return TrialOutcome("FAIL")


def _launcher_jobs(config: Any) -> int:
    from omegaconf import OmegaConf

    jobs = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if jobs is None:
        return 1
    return (os.cpu_count() or 1) if jobs < 0 else int(jobs)


def _whoami() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _quoted(text: str) -> str:
    """Inside Hydra's single-quoted string: backslashes and quotes escaped."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _plain(value: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(value)


def _replace(search: SearchSettings, **changes: Any) -> SearchSettings:
    import dataclasses

    return dataclasses.replace(search, **changes)
