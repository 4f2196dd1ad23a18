"""Beyond one machine's SQLite: a sweep on Ray, and tracking into an MLflow server on PostgreSQL.

Both run for real here: a local Ray instance, and a PostgreSQL server that the
test initialises and starts on 127.0.0.1 (as the `postgres` user, which it
must be), behind `mlflow server`.  Every process started is stopped.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pytest

from helpers import cached_digits, free_port, fresh_copy, mlflow_service, sh

# A Ray instance and an MLflow server on PostgreSQL.
pytestmark = pytest.mark.slow

SWEEP = ["train.epochs=2", "train.patience=null", "model.hidden_sizes=[16]"]


def sweep_jobs(client, experiment_name: str = "backprop"):
    experiment = client.get_experiment_by_name(experiment_name)
    parent = client.search_runs(
        [experiment.experiment_id], "tags.sweep = 'parent'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )[0]  # fmt: skip
    jobs = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return parent, jobs


def test_a_sweep_on_a_local_ray_instance(ray_launcher, tmp_path):
    import mlflow

    root = fresh_copy(tmp_path)
    result = sh(
        root, "backprop-experiment", "--multirun", "hydra/launcher=ray_local", *SWEEP,
        "optim.lr=1.0,0.3",
    )  # fmt: skip
    assert "Started a local Ray instance" in result.stderr + result.stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    parent, jobs = sweep_jobs(client)
    assert parent.info.status == "FINISHED" and len(jobs) == 2
    assert sorted(j.data.params["optim.lr"] for j in jobs) == ["0.3", "1.0"]
    assert all(j.info.status == "FINISHED" and "test_accuracy" in j.data.metrics for j in jobs)


def test_a_search_on_a_local_ray_instance(ray_launcher, tmp_path):
    import mlflow
    import optuna

    root = fresh_copy(tmp_path)
    sh(
        root, "backprop-experiment", "--multirun", "hydra/launcher=ray_local",
        "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", *SWEEP,
        "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=1",
        "optim.lr=tag(log, interval(0.001, 1.0))",
    )  # fmt: skip
    url = f"sqlite:///{root / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(url)
    study = optuna.load_study(study_name=name, storage=url)
    assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    # each trial's epochs reached the study from its Ray worker
    assert all(t.intermediate_values for t in study.trials)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["optuna.trial_number"] == str(trial.number)


@contextlib.contextmanager
def postgres_server(bin_dir: str) -> str:
    """A throw-away PostgreSQL on 127.0.0.1; yields its URI for a database `mlflow` (there is
    a database `optuna` beside it)."""
    folder = Path(tempfile.mkdtemp(prefix="backprop-pg-", dir="/tmp"))
    data = folder / "data"
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    try:
        shutil.chown(folder, "postgres")
        subprocess.run([*as_postgres, f"{bin_dir}/initdb", "-D", str(data), "-A", "trust"],
                       check=True, capture_output=True)  # fmt: skip
        options = f"-k {data} -c listen_addresses=127.0.0.1 -p {port}"
        start = [f"{bin_dir}/pg_ctl", "-D", str(data), "-o", options, "-l", str(data / "log")]
        subprocess.run([*as_postgres, *start, "-w", "start"], check=True, capture_output=True)
        try:
            for name in ("mlflow", "optuna"):  # each its own tables (both have alembic's)
                subprocess.run([*as_postgres, f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p",
                                str(port), name], check=True, capture_output=True)  # fmt: skip
            # SQLAlchemy 2.1 takes postgresql:// as psycopg 3; the extra installs psycopg2.
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
        finally:
            subprocess.run([*as_postgres, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "fast",
                            "-w", "stop"], capture_output=True)  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def mlflow_server(backend: str, artifacts: Path, log: Path):
    args = ["server", "--backend-store-uri", backend, "--artifacts-destination", str(artifacts)]
    return mlflow_service(args, "/health", log)


def test_a_sweep_tracked_over_http_into_mlflow_server_on_postgresql(postgres_tools, tmp_path):
    import mlflow

    root = fresh_copy(tmp_path / "project")
    with (
        postgres_server(postgres_tools) as database,
        mlflow_server(database, tmp_path / "artifacts", tmp_path / "server.log") as uri,
    ):
        swept = sh(root, "backprop-experiment", "--multirun", *SWEEP, "optim.lr=1.0,0.5,0.3,0.1",
                   MLFLOW_TRACKING_URI=uri)  # fmt: skip
        # MLflow's own "View run ... at" lines stay out: each job's line names its run
        assert "View run" not in swept.stdout and swept.stdout.count("MLflow run ") == 4
        client = mlflow.MlflowClient(tracking_uri=uri)
        parent, jobs = sweep_jobs(client)
        assert parent.info.status == "FINISHED" and parent.data.tags["jobs"] == "4"
        assert len(jobs) == 4
        for job in jobs:
            assert job.info.status == "FINISHED"
            for metric in ("train_loss", "val_loss", "val_accuracy"):
                history = client.get_metric_history(job.info.run_id, metric)
                assert sorted(m.step for m in history) == [1, 2]
        models = client.search_logged_models([parent.info.experiment_id])
        assert sorted(m.source_run_id for m in models) == sorted(j.info.run_id for j in jobs)
        # The pyfunc model comes back through the server's artifact proxy.
        mlflow.set_tracking_uri(uri)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = mlflow.pyfunc.load_model(f"runs:/{jobs[0].info.run_id}/model")
        rows = pd.read_csv(cached_digits(root), nrows=5).drop(columns=["label"])
        assert list(model.predict(rows).columns[:2]) == ["predicted", "proba_0"]
        # A search whose study lives in PostgreSQL too, as trials on several machines share it
        study_url = database.replace("/mlflow", "/optuna")
        search = ["--multirun", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3",
                  f"hydra.sweeper.storage={study_url}", "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", "hydra.sweeper.pruner.name=none", *SWEEP,
                  "optim.lr=tag(log, interval(0.01, 1.0))"]  # fmt: skip
        searched = sh(root, "backprop-experiment", *search, MLFLOW_TRACKING_URI=uri)
        assert "postgres@127.0.0.1" in searched.stdout  # the study's database, named
        again = sh(root, "backprop-experiment", *search, MLFLOW_TRACKING_URI=uri)
        assert "3 trials done; n_trials=3" in again.stdout
        import optuna

        (name,) = optuna.get_all_study_names(study_url)
        study = optuna.load_study(study_name=name, storage=study_url)
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
        parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
        assert parent.data.tags["optuna.trials_complete"] == "3"
        trials = client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        assert sorted(r.info.run_id for r in trials) == sorted(
            t.user_attrs["mlflow_run_id"] for t in study.trials
        )
    assert not (root / "mlflow.db").exists()  # nothing went to the local SQLite file
    assert not (root / "optuna.db").exists()
