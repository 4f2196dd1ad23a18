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
