"""`backprop runs`: ranking, the table, the read-only listing, and its benchmark."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from backprop.app.cli import main
from backprop.app.runs import rank_key
from backprop.tracking import store as store_module
from backprop.tracking.store import Store
from backprop.tracking.tracker import EPOCH_METRICS, HEADLINE_METRICS

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_runs.py"


# -- rank_key ---------------------------------------------------------------------------


def ranked(runs: dict[str, dict[str, float]], sort: str = "kept_val_accuracy") -> list[str]:
    return sorted(runs, key=lambda name: rank_key(runs[name], sort))


def test_equal_validation_accuracies_go_to_the_lower_validation_loss_never_to_test_scores():
    runs = {
        "high loss, best test": {"kept_val_accuracy": 0.95, "kept_val_loss": 0.3,
                                 "test_accuracy": 0.99, "test_loss": 0.01},
        "low loss": {"kept_val_accuracy": 0.95, "kept_val_loss": 0.1, "test_accuracy": 0.90},
        "no loss yet": {"kept_val_accuracy": 0.95, "test_accuracy": 1.0},
        "best": {"kept_val_accuracy": 0.97, "kept_val_loss": 0.5},
    }  # fmt: skip
    assert ranked(runs) == ["best", "low loss", "high loss, best test", "no loss yet"]
    # equal on both validation metrics: the keys are equal, whatever the test scores say
    same = {"kept_val_accuracy": 0.95, "kept_val_loss": 0.1}
    assert rank_key({**same, "test_accuracy": 0.5}) == rank_key({**same, "test_accuracy": 0.9})


def test_a_loss_ranks_lowest_first_and_runs_without_the_metric_go_last():
    runs = {
        "nan": {"test_loss": math.nan, "kept_val_loss": 0.0},
        "missing": {"kept_val_loss": 0.0},
        "high": {"test_loss": 0.4},
        "low": {"test_loss": 0.1},
        "low, tie lower": {"test_loss": 0.1, "kept_val_loss": 0.2},
    }
    assert ranked(runs, "test_loss")[:3] == ["low, tie lower", "low", "high"]
    assert set(ranked(runs, "test_loss")[3:]) == {"nan", "missing"}
    accuracies = {"nan": {"kept_val_accuracy": math.nan}, "0.5": {"kept_val_accuracy": 0.5}}
    assert ranked(accuracies) == ["0.5", "nan"]


# -- a tracking database ----------------------------------------------------------------

T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A project folder with mlflow.db: two sweeps (the newer one's jobs tie on purpose), a
    run outside them, a running one, a deleted one, and a run of another experiment.
    Returns (folder, {name: run id})."""
    import mlflow
    from mlflow.entities import Metric, Param

    root = tmp_path_factory.mktemp("tracked")
    (root / "dvc.yaml").write_text("stages: {}\n")
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.create_experiment("backprop", (root / "mlartifacts").as_uri())
    other = client.create_experiment("other", (root / "mlartifacts").as_uri())
    ids: dict[str, str] = {}

    def run(name, start, metrics, lr="1.0", parent=None, tags=None, status="FINISHED",
            experiment_id=experiment):  # fmt: skip
        tags = dict(tags or {})
        if parent:
            tags["mlflow.parentRunId"] = ids[parent]
        created = client.create_run(experiment_id, start_time=T0 + start, run_name=name, tags=tags)
        run_id = created.info.run_id
        params = {"optim.lr": lr, "train.epochs": "3", "model.hidden_sizes": "[16]"}
        client.log_batch(run_id, metrics=[Metric(k, v, T0, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()])  # fmt: skip
        if status != "RUNNING":
            client.set_terminated(run_id, status, end_time=T0 + start + 65_000)
        ids[name] = run_id

    run("old sweep", 0, {"kept_val_accuracy": 0.9}, tags={"sweep": "parent"})
    run("old job", 1, {"kept_val_accuracy": 0.9, "kept_val_loss": 0.2}, parent="old sweep")
    run("sweep", 100_000, {"kept_val_accuracy": 0.97}, tags={"sweep": "parent"})
    jobs = [  # name, lr, kept_val_accuracy, kept_val_loss, test_accuracy, status
        ("tie, high loss", "1.0", 0.95, 0.20, 0.99, "FINISHED"),
        ("tie, low loss", "0.3", 0.95, 0.10, 0.80, "FINISHED"),
        ("best", "0.1", 0.97, 0.30, 0.90, "FINISHED"),
        ("failed", "0.03", None, None, None, "FAILED"),
        ("tie, no loss", "0.01", 0.95, None, 0.95, "FINISHED"),
        ("nan", "0.003", math.nan, 0.1, 0.5, "FINISHED"),
    ]
    for i, (name, lr, accuracy, loss, test, status) in enumerate(jobs):
        metrics = {"kept_val_accuracy": accuracy, "kept_val_loss": loss, "test_accuracy": test,
                   "test_macro_f1": test, "val_loss": 0.5 - i / 100}  # fmt: skip
        metrics = {k: v for k, v in metrics.items() if v is not None}
        run(name, 100_001 + i, metrics, lr=lr, parent="sweep", status=status)
    run("alone", 200_000, {"kept_val_accuracy": 0.96, "kept_val_loss": 0.2})
    run("running", 300_000, {"kept_val_accuracy": 0.5}, status="RUNNING")
    run("deleted", 400_000, {"kept_val_accuracy": 1.0})
    client.delete_run(ids["deleted"])
    run("elsewhere", 500_000, {"kept_val_accuracy": 1.0}, experiment_id=other)
    return root, ids


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`backprop runs ARGS` in a new process; its last line says whether MLflow was imported."""
    code = ("import sys; from backprop.app.cli import main; status = main(sys.argv[1:]); "
            "print('mlflow imported:', 'mlflow' in sys.modules); sys.exit(status)")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code, "runs", *args], cwd=root,
                          capture_output=True, text=True)  # fmt: skip


def names_in(table: list[str], ids: dict[str, str]) -> list[str]:
    by_id = {run_id: name for name, run_id in ids.items()}
    return [by_id[line.split()[-1]] for line in table[1:]]


def test_a_sweep_is_listed_best_first_from_sqlite_without_mlflow_or_a_write(tracked):
    root, ids = tracked
    db = root / "mlflow.db"
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    result = cli(root, "--sweep", "latest")
    assert result.returncode == 0, result.stderr
    *table, imported = result.stdout.splitlines()
    assert imported == "mlflow imported: False"
    assert table[0].split() == ["optim.lr", "kept_val_accuracy", "kept_val_loss",
                                "test_accuracy", "test_macro_f1", "status", "duration", "run",
                                "run_id"]  # fmt: skip
    order = names_in(table, ids)
    assert order[:4] == ["best", "tie, low loss", "tie, high loss", "tie, no loss"]
    assert set(order[4:]) == {"failed", "nan"}  # no score: last
    best = table[1].split()
    assert best[:6] == ["0.1", "0.9700", "0.3000", "0.9000", "0.9000", "FINISHED"]
    assert best[6] == "0:01:05"
    failed = next(line for line in table if ids["failed"] in line).split()
    assert failed[1:5] == ["-", "-", "-", "-"] and failed[5] == "FAILED"
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("mlflow.db")) == [
        "mlflow.db"
    ]  # no journal, no lock file


def test_the_whole_experiment_leaves_out_parents_deleted_runs_and_other_experiments(tracked):
    root, ids = tracked
    result = cli(root)
    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()[:-1]
    order = names_in(table, ids)
    assert set(order) == {"old job", "tie, high loss", "tie, low loss", "best", "failed",
                          "tie, no loss", "nan", "alone", "running"}  # fmt: skip
    assert order[:3] == ["best", "alone", "tie, low loss"]
    running = next(line for line in table if ids["running"] in line).split()
    assert running[-4:-2] == ["RUNNING", "-"]  # no end yet: no duration
    assert "optim.lr" in table[0] and "train.epochs" not in table[0]  # the same in all runs


def test_sorting_by_another_metric_shows_it_and_a_loss_ranks_lowest_first(tracked, capsys,
                                                                          monkeypatch):  # fmt: skip
    root, ids = tracked
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["runs", "--sweep", ids["sweep"], "--sort", "val_loss", "--limit", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[1:6] == ["kept_val_accuracy", "kept_val_loss", "test_accuracy",
                                     "test_macro_f1", "val_loss"]  # fmt: skip
    # val_loss 0.5 - i/100 for the i-th job: the last jobs have the lowest
    assert names_in(table, ids) == ["nan", "tie, no loss", "failed"]


def test_the_read_only_listing_agrees_with_mlflow_search_runs(tracked, monkeypatch):
    root, _ = tracked
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = Store(root)

    def summary(listing):
        return listing.experiment_id, listing.sweep, sorted(
            (r.info.run_id, r.info.run_name, r.info.status, r.info.start_time, r.info.end_time,
             r.data.params, {k: str(v) for k, v in r.data.metrics.items()})  # str: NaN == NaN
            for r in listing.runs
        )  # fmt: skip

    for experiment, sweep in [("backprop", None), ("backprop", "latest"), ("other", None),
                              ("nobody", None), ("other", "latest")]:  # fmt: skip
        fast = store.list_runs(experiment, sweep)
        assert all(type(r).__name__ == "ListedRun" for r in fast.runs)
        assert summary(fast) == summary(store.search_runs(experiment, sweep)), (experiment, sweep)
    assert len(store.list_runs("backprop", "latest").runs) == 6


def test_a_sqlite_layout_the_queries_do_not_know_goes_through_mlflow(tracked, monkeypatch,
                                                                     capsys):  # fmt: skip
    root, ids = tracked
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    asked = []
    real = Store.search_runs

    def through_mlflow(self, *args):
        asked.append(args)
        return real(self, *args)

    def unknown_layout(*args):
        raise store_module._UnknownSchema  # as a missing table or column makes it

    monkeypatch.setattr(Store, "search_runs", through_mlflow)
    monkeypatch.setattr(store_module, "_listed_from_sqlite", unknown_layout)
    assert main(["runs", "--sweep", "latest"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert asked == [("backprop", "latest")]
    assert names_in(table, ids)[:4] == ["best", "tie, low loss", "tie, high loss", "tie, no loss"]


# -- mistakes ---------------------------------------------------------------------------


def test_an_unknown_sort_metric_is_refused_in_one_line_before_anything_is_read(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{not yaml")  # reading it would fail otherwise

    def refused(*args, **kwargs):
        raise AssertionError("the store was asked")

    monkeypatch.setattr(Store, "list_runs", refused)
    monkeypatch.setattr(Store, "exists", refused)
    assert main(["runs", "--sort", "nonsense"]) == 2
    err = capsys.readouterr().err
    known = HEADLINE_METRICS + EPOCH_METRICS
    assert err == (
        "backprop runs: error: --sort nonsense: not a metric of backprop runs; choose one of "
        f"{', '.join(known)}\n"
    )
    assert err.split("choose one of ")[1].startswith("kept_val_accuracy, ")
    assert len(known) == 10


def test_a_sweep_without_jobs_and_an_experiment_without_sweeps_are_one_line(tracked):
    root, ids = tracked
    for args, message in [
        (["--sweep", "0123abcd"], "no runs of experiment 'backprop' belong to sweep '0123abcd'"),
        (["--sweep", "x'; --"], "--sweep x'; --: not a run id"),
        (["--experiment", "other", "--sweep", "latest"], "experiment 'other' has no sweep yet"),
        (["--experiment", "nobody"], "no MLflow experiment named 'nobody' in sqlite:///"),
    ]:
        result = cli(root, *args)
        assert result.returncode == 2, args
        assert result.stderr.startswith(f"backprop runs: error: {message}"), result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_a_database_locked_by_a_writer_is_one_line_not_damage(tracked, tmp_path, monkeypatch,
                                                              capsys):  # fmt: skip
    import shutil
    import sqlite3

    root, _ = tracked
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.2)
    writer = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        assert main(["runs"]) == 2
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    err = capsys.readouterr().err
    assert err == (f"backprop runs: error: {tmp_path / 'mlflow.db'}: the MLflow tracking "
                   "database is locked by another process (waited 0.2 s); try again when it "
                   "is done\n")  # fmt: skip
    assert main(["runs"]) == 0  # once the writer is done


# -- the benchmark keeps working ----------------------------------------------------------


@pytest.mark.slow
def test_bench_runs_smoke_reports_every_figure():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["runs"] == 20 and report["rows_shown"] == report["sweep_rows_shown"] == 20
    for key in ("build_seconds", "runs_seconds", "sweep_latest_seconds", "import_seconds",
                "import_mlflow_seconds", "import_backprop_cli_seconds",
                "command_seconds"):  # fmt: skip
        assert report[key] > 0, key
    assert report["runs_seconds"] == sorted(report["runs_samples"])[0]  # one repeat: its median
    assert report["slowest_imports"] and report["slowest_calls"]
    assert any(i["module"] == "backprop.app.cli" for i in report["slowest_imports"])


def test_another_programs_sqlite_file_or_an_empty_one_is_never_given_mlflow_tables(
    tmp_path, monkeypatch, capsys
):
    import sqlite3

    monkeypatch.chdir(tmp_path)
    theirs, empty = tmp_path / "theirs.db", tmp_path / "empty.db"
    with sqlite3.connect(theirs) as db:
        db.execute("CREATE TABLE mydata (x)")
    db.close()
    empty.write_bytes(b"")
    before = theirs.read_bytes()
    for command in (["runs"], ["predict", "models:/x@champion", str(tmp_path / "in.csv")],
                    ["register", "0123abcd", "x"]):  # fmt: skip
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{theirs}")
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert "an SQLite database that is not an MLflow tracking store (its tables: mydata)" in err
        assert theirs.read_bytes() == before, command  # MLflow did not add its tables
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{empty}")
    assert main(["runs"]) == 2
    assert "no MLflow experiment named" in capsys.readouterr().err
    assert empty.read_bytes() == b""  # read only: no tables made in it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")
    assert main(["runs"]) == 2
    assert "is not a tracking store MLflow can use" in capsys.readouterr().err


def test_jobs_that_failed_before_logging_params_do_not_make_every_param_look_swept():
    from types import SimpleNamespace

    from backprop.app.runs import swept_params

    def run(params):
        return SimpleNamespace(data=SimpleNamespace(params=params))

    runs = [run({"optim.lr": "1", "train.epochs": "3"}),
            run({"optim.lr": "0.5", "train.epochs": "3"}), run({})]  # fmt: skip
    assert swept_params(runs) == ["optim.lr"]
