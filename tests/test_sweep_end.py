"""A sweep's parent run always ends, and a sweep that could not be summarised exits 1."""

from __future__ import annotations

import atexit

import pytest
from omegaconf import OmegaConf

from backprop.app.sweep import PARENT_RUN_ENV, SweepTracker
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
