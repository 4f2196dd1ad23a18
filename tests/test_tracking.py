from pathlib import Path

import pytest

from backprop.pipeline.project import project_root
from backprop.tracking.store import tracking_uri
from backprop.tracking.tracker import flatten


def test_project_root_is_found_from_subfolders_and_from_queued_experiment_copies(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "data" / "reports").mkdir(parents=True)
    assert project_root(tmp_path / "data" / "reports") == tmp_path.resolve()
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    copy.mkdir(parents=True)
    (copy / "dvc.yaml").write_text("stages: {}\n")
    assert project_root(copy) == tmp_path.resolve()


def test_tracking_uri_prefers_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(Path("/srv/project")) == "sqlite:////srv/project/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(Path("/srv/project")) == "http://127.0.0.1:5000"


def test_params_are_flattened_to_dotted_keys():
    flat = flatten({"optim": {"lr": 0.1, "name": "sgd"}, "model": {"hidden_sizes": [256, 64]},
                    "train": {"patience": None}, "experiment_name": "x"})  # fmt: skip
    assert flat == {
        "optim.lr": "0.1",
        "optim.name": "sgd",
        "model.hidden_sizes": "[256, 64]",
        "train.patience": "null",
        "experiment_name": "x",
    }


def test_epoch_metrics_are_sent_in_batches_and_all_arrive(tmp_path):
    from backprop.nn.training import EpochMetrics
    from backprop.tracking.store import Store
    from backprop.tracking.tracker import Tracker

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    store = Store(tmp_path)
    client = store.client

    def epoch(n: int) -> EpochMetrics:
        return EpochMetrics(epoch=n, train_loss=1 / n, val_loss=2 / n, val_accuracy=0.5,
                            learning_rate=0.1, seconds=0.01)  # fmt: skip

    with Tracker.open(store, "epochs", epoch_interval=3600) as batched:
        for n in range(1, 6):
            batched(epoch(n))
        assert client.get_metric_history(batched.run_id, "train_loss") == []  # held back
        batched.flush()
        history = client.get_metric_history(batched.run_id, "val_loss")
        assert [(m.step, m.value) for m in history] == [(n, 2 / n) for n in range(1, 6)]
    with Tracker.open(store, "epochs", epoch_interval=0) as at_once:
        at_once(epoch(6))  # an interval of 0 sends every epoch as it comes
        assert len(client.get_metric_history(at_once.run_id, "learning_rate")) == 1
    assert client.get_run(at_once.run_id).info.status == "FINISHED"
    assert store.uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_a_run_that_raises_is_failed_with_its_error_and_one_interrupted_is_killed(tmp_path):
    from backprop.errors import DataError
    from backprop.tracking.store import Store
    from backprop.tracking.tracker import Tracker

    store = Store(tmp_path)
    with pytest.raises(DataError), Tracker.open(store, "ends") as failing:
        raise DataError("x.csv: broken")
    with pytest.raises(KeyboardInterrupt), Tracker.open(store, "ends") as stopped:
        raise KeyboardInterrupt
    runs = {r: store.client.get_run(r) for r in (failing.run_id, stopped.run_id)}
    assert runs[failing.run_id].info.status == "FAILED"
    assert runs[failing.run_id].data.tags["error"] == "DataError: x.csv: broken"
    assert runs[stopped.run_id].info.status == "KILLED"


def test_runs_without_a_database_says_so_and_creates_none(tmp_path):
    from helpers import sh

    result = sh(tmp_path, "backprop", "runs", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no runs yet" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("alias", ["v1", "Latest", "a b", ""])
def test_register_model_refuses_an_alias_mlflow_keeps_before_touching_the_store(tmp_path, alias):
    from backprop.errors import TrackingError
    from backprop.tracking.store import Store

    with pytest.raises(TrackingError, match=f"alias {alias!r}"):
        Store(tmp_path).register_model("0123456789abcdef", "digits", alias=alias)
    assert not (tmp_path / "mlflow.db").exists()  # refused before the run was looked up
