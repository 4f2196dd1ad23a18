"""Faults: interrupted training resumes bit-identically, and nothing is ever half-written."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import free_port, fresh_copy, mlflow_client, mlflow_service, sh, venv_env

# Signals and SIGKILLs to real processes, tracking servers that go away.
pytestmark = pytest.mark.slow

LONG = ["train.epochs=150", "train.patience=null"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh project whose pipeline has run once (prepared data, model, reports)."""
    root = fresh_copy(tmp_path_factory.mktemp("project"))
    sh(root, "backprop", "params", "train.epochs=5", "train.patience=null")
    sh(root, "dvc", "repro")
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start(root: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=root, env=venv_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_for_checkpoint(root: Path, epoch: int, process: subprocess.Popen) -> Path:
    """The checkpoint file, once it holds at least ``epoch`` epochs."""
    from backprop.errors import ModelFileError
    from backprop.pipeline.checkpoints import load_checkpoint

    begun = time.time() - 1  # only this process's checkpoints: killed runs leave theirs
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for path in (root / "outputs/checkpoints").glob("*.npz"):
            if path.stat().st_mtime < begun:
                continue
            try:
                if load_checkpoint(path)[0].epoch >= epoch:
                    return path
            except ModelFileError:
                pass  # being replaced: not possible by rename, but be patient
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def job_dir(stdout: str) -> Path:
    return Path(stdout.strip().rsplit("outputs in ", 1)[1].rstrip(")"))


def test_sigterm_then_resume_gives_the_weights_of_an_uninterrupted_run(project):
    whole = sh(project, "backprop-experiment", *LONG)
    expected = sha256(job_dir(whole.stdout) / "model/weights.npz")

    process = start(project, "backprop-experiment", *LONG)
    wait_for_checkpoint(project, 5, process)
    time.sleep(random.uniform(0, 0.05))  # somewhere in an epoch
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    saved = int(re.search(r"epoch (\d+) is saved in", err).group(1))
    assert saved >= 5 and "resume with `backprop-experiment" in err and "train.resume=true" in err
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("backprop")
    killed = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"]
    )[0]
    assert killed.info.status == "KILLED"

    resumed = sh(project, "backprop-experiment", *LONG, "train.resume=true")
    assert sha256(job_dir(resumed.stdout) / "model/weights.npz") == expected
    run = client.get_run(killed.info.run_id)  # the same run, gone on
    assert f"MLflow run {run.info.run_id}" in resumed.stdout
    assert run.info.status == "FINISHED" and "error" not in run.data.tags
    assert int(run.data.tags["resumed_after_epoch"]) == saved
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(1, 151))  # every epoch once
    assert not list((project / "outputs/checkpoints").glob("*.npz"))  # done: removed


def test_ctrl_c_in_the_dvc_stage_then_resume_through_dvc(project, tmp_path):
    sh(project, "backprop", "params", *LONG)
    stage = ["backprop", "train", "data/prepared"]
    sh(project, *stage, str(tmp_path / "whole"), str(tmp_path / "whole-reports"))
    expected = sha256(tmp_path / "whole/weights.npz")

    process = start(project, *stage, "data/model", "data/reports")
    wait_for_checkpoint(project, 3, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    assert "resume with `dvc exp run -S train.resume=true`" in err and "Traceback" not in err

    sh(project, "backprop", "params", *LONG, "train.resume=true")
    sh(project, "dvc", "repro")
    assert sha256(project / "data/model/weights.npz") == expected
    sh(project, "backprop", "params", "train.epochs=5", "train.patience=null")
    sh(project, "dvc", "repro")


def test_a_damaged_checkpoint_is_named_in_one_line(project):
    process = start(project, "backprop-experiment", *LONG)
    path = wait_for_checkpoint(project, 2, process)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    result = sh(project, "backprop-experiment", *LONG, "train.resume=true", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # one bit of the weights
    path.write_bytes(bytes(flipped))
    result = sh(project, "backprop-experiment", *LONG, "train.resume=true", check=False)
    assert result.returncode == 2 and str(path) in result.stderr
    path.unlink()


def outputs_are_whole(root: Path) -> None:
    """Every output file reads back complete: npz arrays, JSON, CSV, PNG."""
    from PIL import Image

    folders = [root / "data/prepared", root / "data/model", root / "data/reports",
               root / "outputs/checkpoints"]  # fmt: skip
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_dir() or path.name.startswith("."):
                continue
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    for name in archive.files:
                        archive[name]  # noqa: B018  reads and CRC-checks the member
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".csv":
                frame = pd.read_csv(path)
                assert len(frame) > 0, path
            elif path.suffix == ".png":
                with Image.open(path) as image:
                    image.load()


def test_sigkill_at_random_moments_never_leaves_a_partial_file(project):
    sh(project, "backprop", "params", "train.epochs=40", "train.patience=null")
    commands = [
        ["backprop", "preprocess", "data/raw/digits.csv", "data/prepared"],
        ["backprop", "train", "data/prepared", "data/model", "data/reports"],
    ]
    durations = []
    for command in commands:  # how long each takes, to kill anywhere within it
        begun = time.monotonic()
        sh(project, *command)
        durations.append(time.monotonic() - begun)
    rng = random.Random(0)
    for i in range(24):
        command, duration = commands[i % 2], durations[i % 2]
        process = start(project, *command)
        time.sleep(rng.uniform(0.2, duration))
        process.kill()
        process.communicate()
        outputs_are_whole(project)
    sh(project, "dvc", "repro")
    status = sh(project, "dvc", "status")
    assert "Data and pipelines are up to date." in status.stdout
    outputs_are_whole(project)
    untracked = [line for line in sh(project, "git", "status", "--porcelain").stdout.splitlines()
                 if line.startswith("??")]  # fmt: skip
    assert not untracked  # what killed writers left is ignored, and DVC's outputs are
    sh(project, *commands[0])  # a write in data/ removes what killed writers left there
    leftovers = [p for p in (project / "data").rglob(".*") if p.name.endswith((".tmp", ".old"))]
    assert not leftovers, leftovers
    sh(project, "backprop", "params", "train.epochs=5", "train.patience=null")
    sh(project, "dvc", "repro")


def test_a_tracking_server_that_is_down_fails_fast_in_one_line(project):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for command in (
        ["backprop-experiment", "train.epochs=1"],
        ["backprop-experiment", "--multirun", "train.epochs=1", "optim.lr=1,0.5"],
        ["backprop", "train", "data/prepared", "data/model", "data/reports"],
    ):
        begun = time.monotonic()
        result = sh(project, *command, check=False, MLFLOW_TRACKING_URI=uri,
                    BACKPROP_TRACKING_TIMEOUT="3")  # fmt: skip
        assert time.monotonic() - begun < 30
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert f"tracking server {uri} does not answer" in result.stderr
        assert "BACKPROP_TRACKING_TIMEOUT" in result.stderr


def server_dies_under(
    project: Path, tmp_path: Path, args: list[str], runs: str = "", **env: str
) -> tuple[subprocess.Popen, str]:
    """``args`` run against an MLflow server that stops once a run matching ``runs`` exists.

    The process waits, stopped (SIGSTOP), until the server is confirmed gone: however busy
    the machine, it cannot finish its work first.  Returns it, going on, and the URL.
    """
    import mlflow

    server = ["server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
              "--artifacts-destination", str(tmp_path / "artifacts")]  # fmt: skip
    service = mlflow_service(server, "/health", tmp_path / "server.log")
    url = service.__enter__()
    try:
        process = start(project, *args, MLFLOW_TRACKING_URI=url, **env)
        client = mlflow.MlflowClient(tracking_uri=url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            experiment = client.get_experiment_by_name("backprop")
            if experiment and client.search_runs([experiment.experiment_id], runs):
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGSTOP)
    finally:
        service.__exit__(None, None, None)
        os.kill(process.pid, signal.SIGCONT)
    return process, url


def test_a_tracking_server_that_goes_away_mid_run_loses_logging_not_the_model(project, tmp_path):
    process, _ = server_dies_under(
        project, tmp_path, ["backprop-experiment", "train.epochs=300", "train.patience=null"]
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    model = job_dir(out) / "model"
    assert (model / "weights.npz").is_file() and (job_dir(out) / "reports/metrics.json").is_file()
    warning = [line for line in err.splitlines() if "stopped answering" in line]
    assert len(warning) == 1 and "per-epoch metrics of epochs" in warning[0]
    assert "the model and the training reports" in warning[0]
    assert "Traceback" not in err and "Retrying" not in err


def test_sigterm_in_a_sweep_leaves_no_run_running(project):
    process = start(project, "backprop-experiment", "--multirun", *LONG, "optim.lr=1.0,0.5")
    wait_for_checkpoint(project, 2, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "the same command plus train.resume=true" in err
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("backprop")
    parent = client.search_runs([experiment.experiment_id], "tags.sweep = 'parent'",
                                order_by=["attributes.start_time DESC"])[0]  # fmt: skip
    assert parent.info.status == "KILLED"
    jobs = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [job.info.status for job in jobs] == ["KILLED"]  # the first job, stopped

    # The same sweep again with train.resume=true is one sweep: the stopped job goes on in
    # its run, which moves under the new parent, and the summary counts every job.
    sh(project, "backprop-experiment", "--multirun", *LONG, "optim.lr=1.0,0.5",
       "train.resume=true")  # fmt: skip
    resumed = client.search_runs([experiment.experiment_id], "tags.sweep = 'parent'",
                                 order_by=["attributes.start_time DESC"])[0]  # fmt: skip
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{resumed.info.run_id}'"
    )
    assert jobs[0].info.run_id in {c.info.run_id for c in children}
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED"]
    assert resumed.info.status == "FINISHED" and resumed.data.tags["jobs"] == "2"
    assert not list((project / "outputs/checkpoints").glob("*.npz"))  # both finished


def test_a_sweep_whose_tracking_server_dies_exits_1_in_one_line_per_job(project, tmp_path):
    args = ["backprop-experiment", "--multirun", "train.epochs=100", "train.patience=null",
            "optim.lr=1,0.5,0.3"]  # fmt: skip
    process, url = server_dies_under(  # once the first job's run, nested, exists
        project, tmp_path, args, "tags.mlflow.parentRunId != ''", BACKPROP_TRACKING_TIMEOUT="3"
    )
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    assert "Traceback" not in err and "MlflowException" not in err
    for job in (1, 2):  # each job after the server went: the same one line
        assert f"job {job} failed: the MLflow tracking server {url} does not answer" in err
    assert "the sweep's summary could not be logged" in err
    assert "job 0: " in out  # the job it went under finished, its model written
