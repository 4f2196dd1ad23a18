from pathlib import Path

from backprop.tracking import flatten, project_root, tracking_uri


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


def test_epoch_metrics_are_sent_in_batches_and_all_arrive(tmp_path, monkeypatch):
    import mlflow

    from backprop.tracking import EpochLog, connect
    from backprop.training import EpochMetrics

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    experiment_id = connect("epochs")
    client = mlflow.MlflowClient(tracking_uri=uri)

    def epoch(n: int) -> EpochMetrics:
        return EpochMetrics(epoch=n, train_loss=1 / n, val_loss=2 / n, val_accuracy=0.5,
                            learning_rate=0.1, seconds=0.01)  # fmt: skip

    with mlflow.start_run(experiment_id=experiment_id) as run:
        batched = EpochLog(interval=3600)
        for n in range(1, 6):
            batched.add(epoch(n))
        assert client.get_metric_history(run.info.run_id, "train_loss") == []  # held back
        batched.flush()
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [(m.step, m.value) for m in history] == [(n, 2 / n) for n in range(1, 6)]

        at_once = EpochLog(interval=0)
        at_once.add(epoch(6))  # an interval of 0 sends every epoch as it comes
        assert len(client.get_metric_history(run.info.run_id, "learning_rate")) == 6


def test_runs_without_a_database_says_so_and_creates_none(tmp_path):
    from helpers import sh

    result = sh(tmp_path, "backprop", "runs", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no runs yet" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()
