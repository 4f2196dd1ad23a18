"""A sweep's parent run always ends, and a sweep that could not be summarised exits 1."""

from __future__ import annotations

import atexit

import pytest
from omegaconf import OmegaConf

from backprop.app.sweep import PARENT_RUN_ENV, SweepTracker, short_overrides, summarise
from backprop.tracking.store import Store
from helpers import free_port


def config():
    return OmegaConf.create(
        {"experiment_name": "sweeps", "hydra": {"overrides": {"task": ["optim.lr=1,0.5"]}}}
    )


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A store in ``tmp_path``; the parent run's id that on_multirun_start puts in the
    environment, and its exit handler, do not outlive the test (later tests start runs)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.setenv(PARENT_RUN_ENV, "none yet")  # restored (unset) after the test
    monkeypatch.delenv(PARENT_RUN_ENV)
    monkeypatch.setattr(atexit, "register", lambda handler: handler)  # called by hand here
    return Store(tmp_path)


def test_a_launcher_that_fails_leaves_its_parent_failed_not_running(store, monkeypatch):
    tracker = SweepTracker()
    tracker.on_multirun_start(config())
    parent = tracker.parent_run_id
    assert store.client.get_run(parent).info.status == "RUNNING"
    tracker._abandoned()  # at exit, without on_multirun_end
    assert store.client.get_run(parent).info.status == "FAILED"


def test_a_summarised_sweep_is_left_as_it_ended(store):
    tracker = SweepTracker()
    tracker.on_multirun_start(config())
    tracker.on_multirun_end(config())  # no jobs: nothing failed
    tracker._abandoned()
    assert store.client.get_run(tracker.parent_run_id).info.status == "FINISHED"


def test_a_server_gone_before_the_summary_is_one_line_and_exit_1(store, monkeypatch, capsys):
    tracker = SweepTracker()
    tracker.on_multirun_start(config())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker.store = Store(store.root)  # the server that held the parent is gone
    with pytest.raises(SystemExit) as exit:
        tracker.on_multirun_end(config())
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("backprop-experiment: error: the sweep's summary could not be logged")
    assert "does not answer" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("overrides", "keys", "name"),
    [
        (["optim.lr=0.3", "model.hidden_sizes=[16, 8]"], None, "lr=0.3 hidden_sizes=[16,8]"),
        (["train.epochs=2", "optim.lr=0.3", "model=relu"], ["optim.lr", "model"],
         "lr=0.3 model=relu"),
        (["optim.lr=1,0.3", "train.epochs=2"], ["optim.lr"], "lr=1,0.3"),
        # two keys that would read alike keep their sections
        (["optim.name=adam", "data.name=csv"], None, "optim.name=adam data.name=csv"),
        (["+optim.extra=1"], None, "extra=1"),
    ],
)  # fmt: skip
def test_run_names_say_what_differs_in_few_words(overrides, keys, name):
    assert short_overrides(overrides, keys) == name


def test_the_summary_ranks_ties_by_validation_loss_and_copies_the_best_into_the_parent(store):
    client = store.client
    experiment = store.experiment_id("sweeps")
    parent = client.create_run(experiment, tags={"sweep": "parent"}).info.run_id
    scores = {  # job: (kept_val_accuracy, kept_val_loss, test_accuracy, optim.lr)
        "0": (0.90, 0.30, 0.99, "1.0"),  # the best test accuracy: never what chooses
        "1": (0.95, 0.25, 0.91, "0.3"),
        "2": (0.95, 0.20, 0.90, "0.1"),  # tied on accuracy, lower loss: the best
    }
    for job, (acc, loss, test, lr) in scores.items():
        run = client.create_run(
            experiment, run_name=f"lr={lr}", tags={"mlflow.parentRunId": parent, "sweep_job": job}
        ).info.run_id
        client.log_param(run, "optim.lr", lr)
        for key, value in (("kept_val_accuracy", acc), ("kept_val_loss", loss),
                           ("test_accuracy", test)):  # fmt: skip
            client.log_metric(run, key, value)
        client.set_terminated(run)
    failed = client.create_run(
        experiment, run_name="lr=9", tags={"mlflow.parentRunId": parent, "sweep_job": "3"}
    ).info.run_id
    client.log_param(failed, "optim.lr", "9")
    client.set_terminated(failed, "FAILED")

    summary = summarise(store, parent, "sweeps")
    assert [r.data.tags["sweep_job"] for r in summary.ranked] == ["2", "1", "0", "3"]
    assert [r.info.run_id for r in summary.failed] == [failed]
    run = client.get_run(parent)
    assert (
        run.data.metrics["kept_val_accuracy"] == 0.95 and run.data.metrics["test_accuracy"] == 0.90
    )
    assert run.data.params["optim.lr"] == "0.1" and run.data.tags["failed_jobs"] == "1"
    assert run.info.status == "FAILED"  # a job failed
    report = summary.report(store).splitlines()
    assert report[0] == "sweep of 4 jobs, best first (by kept_val_accuracy, ties by kept_val_loss):"
    assert [line.split()[1] for line in report[2:6]] == ["2", "1", "0", "3"]
    assert report[6] == f"best: job 2 (lr=0.1), run {summary.best.info.run_id}"
    assert summary.figure[:8] == b"\x89PNG\r\n\x1a\n"
