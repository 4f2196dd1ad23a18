"""The Hydra app: the same results as dvc repro, sweeps nested in MLflow, failures contained."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from backprop.tracking.tracker import rounded
from helpers import fresh_copy, kill_processes_in, mlflow_client, sh, venv_env

# Fresh git copies, Hydra sweeps in subprocesses, DVC's queue.
pytestmark = pytest.mark.slow

FAST = ["train.epochs=4", "train.patience=null"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = fresh_copy(tmp_path_factory.mktemp("project"))
    return root


def runs_of(root, parent_id):
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("backprop")
    return client, client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )


def latest_parent(root):
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("backprop")
    return client.search_runs(
        [experiment.experiment_id], "tags.sweep = 'parent'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )[0]  # fmt: skip


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_single_run_equals_dvc_repro_and_leaves_dvc_status_alone(project):
    sh(project, "backprop", "params", *FAST)
    sh(project, "dvc", "repro")
    result = sh(project, "backprop-experiment", *FAST)
    job_dir = result.stdout.strip().rsplit("outputs in ", 1)[1].rstrip(")")
    assert job_dir.startswith(str(project / "outputs" / "runs"))
    assert sha256(project / "data/model/weights.npz") == sha256(
        project / job_dir / "model/weights.npz"
    )
    dvc_metrics = json.loads((project / "data/reports/metrics.json").read_text())
    app_metrics = json.loads((project / job_dir / "reports/metrics.json").read_text())
    assert app_metrics == dvc_metrics
    status = sh(project, "dvc", "status")
    assert "Data and pipelines are up to date." in status.stdout
    assert "outputs/" in (project / ".gitignore").read_text()


def test_a_grid_sweep_nests_its_jobs_and_prepares_the_data_once(project):
    result = sh(
        project, "backprop-experiment", "--multirun", "train.epochs=3", "train.patience=null",
        "optim.lr=1.0,0.3", "model.hidden_sizes=[32],[16]",
    )  # fmt: skip
    prepared = [p for p in (project / "outputs/cache/preprocess").iterdir() if p.is_dir()]
    assert len(prepared) == 1  # four jobs, one split: prepared once, then reused
    parent = latest_parent(project)
    client, jobs = runs_of(project, parent.info.run_id)
    assert len(jobs) == 4 and all(j.info.status == "FINISHED" for j in jobs)
    assert {(j.data.params["optim.lr"], j.data.params["model.hidden_sizes"]) for j in jobs} == {
        ("1.0", "[32]"), ("1.0", "[16]"), ("0.3", "[32]"), ("0.3", "[16]"),
    }  # fmt: skip
    assert parent.info.status == "FINISHED"
    assert parent.data.params["swept_params"] == "model.hidden_sizes, optim.lr"
    best = min(jobs, key=lambda j: (-j.data.metrics["kept_val_accuracy"],
                                    j.data.metrics["kept_val_loss"]))  # fmt: skip
    assert parent.data.params["best_run_id"] == best.info.run_id
    # the parent's row is the best job's: its metrics and params under the same names
    for key in ("kept_val_accuracy", "kept_val_loss", "test_accuracy", "test_macro_f1"):
        assert parent.data.metrics[key] == best.data.metrics[key], key
    assert parent.data.params["optim.lr"] == best.data.params["optim.lr"]
    assert parent.data.tags["jobs"] == "4" and parent.data.tags["failed_jobs"] == "0"
    assert parent.info.run_name == "sweep: lr=1.0,0.3 hidden_sizes=[32],[16]"
    # each job named after what differs: the swept values only
    names = {j.info.run_name for j in jobs}
    assert names == {f"lr={lr} hidden_sizes=[{h}]" for lr in ("1.0", "0.3") for h in (32, 16)}
    assert "sweep_summary.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    table = sh(project, "backprop", "runs", "--sweep", "latest").stdout.splitlines()
    assert len(table) == 5 and "optim.lr" in table[0] and best.info.run_id in table[1]
    # the terminal: the jobs best first, the best job's overrides and run, the UI
    out = result.stdout.splitlines()
    start = out.index("sweep of 4 jobs, best first (by kept_val_accuracy, ties by kept_val_loss):")
    assert out[start + 1].split()[:2] == ["rank", "job"] and best.info.run_id in out[start + 2]
    best_line = next(line for line in out if line.startswith("best: job "))
    assert best_line.endswith(f"run {best.info.run_id}")
    again = out[out.index(best_line) + 1]
    lr, sizes = best.data.params["optim.lr"], best.data.params["model.hidden_sizes"]
    assert again == (f"run it again: backprop-experiment train.epochs=3 train.patience=null "
                     f"optim.lr={lr} 'model.hidden_sizes={sizes}'")  # fmt: skip
    assert "mlflow ui --backend-store-uri" in result.stdout
    assert "/#/compare-runs?runs=[" in result.stdout and best.info.run_id in result.stdout
    # each job its own colour in the UI's charts, the parent grey
    assert len({j.data.tags["mlflow.runColor"] for j in jobs}) == 4
    assert parent.data.tags["mlflow.runColor"] == "#7f7f7f"
    figure = Path(next(line for line in out if line.startswith("figure: ")).split(": ", 1)[1])
    assert figure.name == "sweep_summary.png" and "outputs/sweeps/" in figure.as_posix()
    assert (project / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_job_is_marked_failed_and_the_others_finish(project):
    result = sh(
        project, "backprop-experiment", "--multirun", "train.epochs=2", "model.activation=relu",
        "optim.lr=0.3,1e30,0.1", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "job 1 failed: training diverged" in result.stderr
    assert "1 job(s) failed: 1 (lr=1e+30)" in result.stderr
    parent = latest_parent(project)
    _, jobs = runs_of(project, parent.info.run_id)
    status = {j.data.params["optim.lr"]: j.info.status for j in jobs}
    assert status == {"0.3": "FINISHED", "1e+30": "FAILED", "0.1": "FINISHED"}
    failed = next(j for j in jobs if j.info.status == "FAILED")
    assert failed.data.tags["error"].startswith("TrainingDiverged: training diverged")
    assert parent.info.status == "FAILED"


def test_parallel_jobs_lose_no_run_and_no_metric(tmp_path):
    root = fresh_copy(tmp_path)
    assert not (root / "mlflow.db").exists()  # a fresh database, created by the launcher
    rates = ",".join(str(x / 10) for x in range(3, 11))
    sh(
        root, "backprop-experiment", "--multirun", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2", "train.epochs=3", "train.patience=null",
        "model.hidden_sizes=[16]", f"optim.lr={rates}",
    )  # fmt: skip
    parent = latest_parent(root)
    client, jobs = runs_of(root, parent.info.run_id)
    assert len(jobs) == 8 and all(j.info.status == "FINISHED" for j in jobs)
    for job in jobs:
        for metric in ("train_loss", "val_loss", "val_accuracy"):
            steps = [m.step for m in client.get_metric_history(job.info.run_id, metric)]
            assert sorted(steps) == [1, 2, 3], (job.info.run_name, metric, steps)
    assert parent.data.tags["jobs"] == "8" and parent.info.status == "FINISHED"


def test_a_bad_override_is_one_line(project):
    result = sh(project, "backprop-experiment", "optim.lr=-1", check=False)
    assert result.returncode != 0
    assert "optim.lr must be a number > 0, got -1.0" in result.stderr


def test_dvc_queue_runs_land_in_the_projects_tracking_db(tmp_path):
    root = fresh_copy(tmp_path)
    sh(root, "backprop", "params", "train.epochs=3", "train.patience=null")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "fast")
    sh(root, "dvc", "exp", "run", "-S", "optim.lr=0.5,0.1", "--queue")
    # DVC's workers may linger after the queue is empty, holding any pipe they were given:
    # start them with no pipes, poll the queue, then stop them.
    starter = subprocess.Popen(
        ["dvc", "queue", "start", "-j", "2"], cwd=root, env=venv_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        status = ""
        while time.monotonic() < deadline:
            status = sh(root, "dvc", "queue", "status").stdout
            if status.count("Success") + status.count("Failed") >= 2:
                break
            time.sleep(2)
        assert status.count("Success") == 2, status
    finally:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        with contextlib.suppress(subprocess.TimeoutExpired):
            stop = ["dvc", "queue", "stop", "--kill"]
            subprocess.run(stop, cwd=root, env=venv_env(), timeout=60, **quiet)
        kill_processes_in(root)
        starter.wait(timeout=30)
    shown = sh(root, "dvc", "exp", "show", "--md").stdout
    assert shown.count("Success") == 2
    client = mlflow_client(root)  # the project root's DB, not the queue's copies
    experiment = client.get_experiment_by_name("backprop")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["optim.lr"] for r in runs) == ["0.1", "0.5"]
    assert all(r.info.status == "FINISHED" and "test_accuracy" in r.data.metrics for r in runs)
    assert not list((root / ".dvc" / "tmp" / "exps").rglob("mlflow.db"))


def test_a_missing_csv_is_one_line_and_a_failed_run(project):
    result = sh(project, "backprop-experiment", "data=csv", "data.path=nope.csv", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "backprop-experiment: error: nope.csv: file not found; check data.path"
    )
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("backprop")
    newest = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert newest.info.status == "FAILED" and "nope.csv" in newest.data.tags["error"]


def _outputs_folder(stdout: str):
    return [Path(line.split("outputs in ", 1)[1].rstrip(")")) for line in stdout.splitlines()
            if "outputs in " in line]  # fmt: skip


def test_runs_and_sweeps_started_together_each_own_their_folder_and_model(project):
    """Started in the same second, two runs (and two sweeps) get folders of their own, and
    each MLflow run describes the weights in its own folder."""
    small = ["train.patience=null", "model.hidden_sizes=[16]"]
    commands = [
        ["backprop-experiment", "optim.lr=0.7", "train.epochs=2", *small],
        ["backprop-experiment", "optim.lr=0.2", "train.epochs=3", *small],
        ["backprop-experiment", "--multirun", "optim.lr=0.5,0.3", "train.epochs=2", *small],
        ["backprop-experiment", "--multirun", "optim.lr=0.4,0.1", "train.epochs=2", *small],
    ]
    env = venv_env()
    processes = [subprocess.Popen(c, cwd=project, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in commands]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], [err for _, err in outs]
    folders = [f for stdout, _ in outs for f in _outputs_folder(stdout)]
    assert len(folders) == 6 and len(set(folders)) == 6
    assert len({f.parent for f in folders[2:]}) == 2  # two sweep folders, one per sweep
    client = mlflow_client(project)
    for stdout, _ in outs:
        for line in stdout.splitlines():
            if "MLflow run " not in line:
                continue
            run_id = line.split("MLflow run ", 1)[1].split(",", 1)[0]
            folder = _outputs_folder(line)[0]
            run = client.get_run(run_id)
            assert run.data.tags["weights_sha256"] == sha256(folder / "model/weights.npz")
            metrics = json.loads((folder / "reports/metrics.json").read_text())
            assert run.data.metrics["test_accuracy"] == rounded(metrics["test_accuracy"])


def test_workers_of_a_sweep_whose_launcher_is_killed_end_and_their_runs_are_killed(tmp_path):
    root = fresh_copy(tmp_path)
    process = subprocess.Popen(
        ["backprop-experiment", "--multirun", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         "train.epochs=100000", "train.patience=null", "optim.lr=1,0.5"],
        cwd=root, env=venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # Both jobs training: a checkpoint each (the database is created and migrated by
        # then; a client opened earlier would race the launcher's migration).
        deadline = time.monotonic() + 300
        while len(list((root / "outputs/checkpoints").glob("*.npz"))) < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    finally:
        process.kill()  # as SIGKILL would: no handler runs in the launcher
        process.wait()
    assert len(children) >= 2  # the pool's workers and its resource trackers
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{c}") for c in children):
        time.sleep(0.5)
    alive = [c for c in children if os.path.exists(f"/proc/{c}")]
    assert alive == [], "workers outlived their launcher"
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("backprop")
    jobs = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''")
    assert sorted(j.info.status for j in jobs) == ["KILLED", "KILLED"]
    assert all(j.data.tags["error"] == "interrupted (SIGTERM)" for j in jobs)


def test_a_sweep_piped_to_head_still_finishes_and_records_its_summary(project):
    """`| head -3` closes the pipe after three lines: the jobs go on, the parent is summarised."""
    result = subprocess.run(
        "backprop-experiment --multirun train.epochs=1 train.patience=null "
        "'model.hidden_sizes=[16]' optim.lr=1.0,0.5 | head -3; exit ${PIPESTATUS[0]}",
        shell=True, executable="/bin/bash", cwd=project, env=venv_env(), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr
    assert len(result.stdout.splitlines()) == 3
    parent = latest_parent(project)
    assert parent.info.status == "FINISHED" and parent.data.tags["jobs"] == "2"
    assert "best_run_id" in parent.data.params
