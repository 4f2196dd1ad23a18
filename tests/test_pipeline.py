"""The pipeline end to end: `dvc repro` in a fresh copy of the repository, tracked in MLflow.

Each copy holds the files git tracks, in a new git repository, with the
project's venv first on PATH, as `make repro` runs it.  Training is shortened
to a few epochs with `backprop params`, which composes conf/ with overrides
exactly as `dvc exp run -S` does.
"""

from __future__ import annotations

import compileall
import json
import warnings
from pathlib import Path

import pytest
import yaml

from backprop.tracking.tracker import EPOCH_METRICS, HEADLINE_METRICS
from helpers import REPO, fresh_copy, sh

# Each test needs a fresh git copy of the repository and runs `dvc repro` in it.
pytestmark = pytest.mark.slow

FAST = ["train.epochs=4", "train.patience=null"]


def lock_outs(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {
        f"{stage}:{out['path']}": out["md5"]
        for stage, body in lock["stages"].items()
        for out in body.get("outs", [])
    }


def mlflow_runs(root: Path):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("backprop")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return client, runs


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = fresh_copy(tmp_path_factory.mktemp("project"))
    sh(root, "backprop", "params", *FAST)
    first = sh(root, "dvc", "repro")
    return root, first, lock_outs(root)


def test_committed_params_yaml_is_the_composition_of_conf(tmp_path):
    result = sh(REPO, "backprop", "params", "--output", str(tmp_path / "params.yaml"))
    assert result.returncode == 0
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()


def test_repro_runs_every_stage_and_writes_metrics(project):
    root, first, _ = project
    for stage in ("data", "preprocess", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout
    metrics = yaml.safe_load((root / "data/reports/metrics.json").read_text())
    assert 0.5 < metrics["test_accuracy"] <= 1 and metrics["test_loss"] > 0
    assert 0 < metrics["test_macro_f1"] <= 1
    assert metrics["epochs"] == 4 and 1 <= metrics["kept_epoch"] <= 4
    assert 0.5 < metrics["kept_val_accuracy"] <= 1 and metrics["kept_val_loss"] > 0
    per_class = (root / "data/reports/per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,precision,recall,f1,support" and per_class[8].startswith("7,")
    shown = sh(root, "dvc", "metrics", "show")
    assert "test_accuracy" in shown.stdout


def test_the_run_is_tracked_in_mlflow(project, tmp_path):
    root, _, _ = project
    client, runs = mlflow_runs(root)
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["optim.lr"] == "1.0" and params["model.hidden_sizes"] == "[256, 64]"
    assert params["train.epochs"] == "4" and params["data.path"] == "data/raw/digits.csv"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    # a few metrics, the same names in every run: per-class scores are a table artifact
    assert set(run.data.metrics) == set(EPOCH_METRICS + HEADLINE_METRICS)
    assert run.data.metrics["test_accuracy"] == round(run.data.metrics["test_accuracy"], 4)
    path = client.download_artifacts(run.info.run_id, "reports/per_class.json", str(tmp_path))
    table = json.loads(Path(path).read_text())
    assert table["columns"] == ["class", "precision", "recall", "f1", "support"]
    assert [row[0] for row in table["data"]] == [str(c) for c in range(10)]
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "reports/per_class.json", "type": "table"} in logged  # the UI's table view
    assert run.info.run_name.startswith("repro ")  # not a random name
    assert run.data.tags["git_commit"] != "unknown" and len(run.data.tags["dataset_digest"]) == 64
    assert run.inputs.dataset_inputs[0].dataset.name == "digits.csv"
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "reports"} <= top
    reports = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/metrics.json", "reports/dvc.lock", "reports/per_class.csv"} <= reports
    assert "training.png" in top  # at the top, where the UI's compare view finds it
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "reports/figures")}
    assert "reports/figures/misclassified.png" in figures


def test_the_logged_model_turns_raw_rows_into_labels(project):
    import mlflow
    import pandas as pd

    root, _, _ = project
    _, runs = mlflow_runs(root)
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    rows = pd.read_csv(root / "data/raw/digits.csv", nrows=20)
    with warnings.catch_warnings():  # MLflow's hints about type hints
        warnings.simplefilter("ignore", UserWarning)
        model = mlflow.pyfunc.load_model(f"runs:/{runs[0].info.run_id}/model")
        predicted = model.predict(rows.drop(columns=["label"]))
    assert list(predicted.columns[:2]) == ["predicted", "proba_0"]
    assert (predicted["predicted"] == rows["label"]).mean() > 0.5  # 4 epochs: far above chance
    assert predicted.filter(like="proba_").sum(axis=1).round(4).eq(1).all()
    # The same as the model folder of the pipeline, scaling included.
    from backprop.pipeline.predictor import Predictor

    local = Predictor(str(root / "data/model")).predict(rows.drop(columns=["label"]))
    assert predicted["predicted"].tolist() == local["predicted"].tolist()
    pd.testing.assert_frame_equal(predicted, local)


def test_second_repro_has_nothing_to_do(project):
    root, _, _ = project
    again = sh(root, "dvc", "repro")
    assert "Data and pipelines are up to date." in again.stdout
    assert "Running stage" not in again.stdout


def test_a_new_learning_rate_reruns_only_train_and_evaluate(project):
    root, _, _ = project
    sh(root, "backprop", "params", *FAST, "optim.lr=0.5")
    result = sh(root, "dvc", "repro")
    ran = [line for line in result.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'train':", "Running stage 'evaluate':"]
    _, runs = mlflow_runs(root)
    assert [r.data.params["optim.lr"] for r in runs] == ["1.0", "0.5"]
    sh(root, "backprop", "params", *FAST)  # back to the first settings for the other tests


def test_two_fresh_copies_give_identical_output_hashes(project, tmp_path):
    _, _, first = project
    other = fresh_copy(tmp_path)
    sh(other, "backprop", "params", *FAST)
    sh(other, "dvc", "repro")
    assert lock_outs(other) == first
    assert set(first) >= {
        "data:data/raw/digits.csv",
        "train:data/model",
        "evaluate:data/reports/metrics.json",
    }


def test_a_stale_params_yaml_is_refused(project):
    root, _, _ = project
    conf = root / "conf/optim/sgd.yaml"
    original = conf.read_text()
    conf.write_text(original.replace("lr: 1.0", "lr: 0.9"))
    try:
        result = sh(root, "dvc", "repro", check=False)
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "params.yaml is stale: " in output and "run `make params`" in output
        assert "Running stage 'train'" not in output
    finally:
        conf.write_text(original)
    # DVC removed the stage's outputs before running it; the next repro restores them.
    sh(root, "dvc", "repro")
    assert (root / "data/prepared/train.npz").is_file()


def test_a_bad_override_fails_naming_its_key(project):
    root, _, _ = project
    result = sh(root, "dvc", "exp", "run", "-S", "optim.lr=-1", check=False)
    assert result.returncode != 0
    assert "optim.lr must be a number > 0, got -1.0" in result.stdout + result.stderr
    direct = sh(root, "backprop", "params", "train.batch_size=0", check=False)
    assert direct.returncode == 2
    assert direct.stderr.strip() == (
        "backprop params: error: train.batch_size must be an integer >= 1, got 0"
    )


def test_a_failing_stage_marks_its_run_failed(project, tmp_path):
    root, _, _ = project
    bad = tmp_path / "params.yaml"
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["optim"]["lr"] = 1e30
    params["model"]["activation"] = "relu"
    bad.write_text(yaml.safe_dump(params))
    result = sh(
        root, "backprop", "train", "data/prepared", str(tmp_path / "m"), str(tmp_path / "r"),
        "--params", str(bad), check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("backprop train: error: training diverged")
    assert "Traceback" not in result.stderr
    _, runs = mlflow_runs(root)
    assert runs[-1].info.status == "FAILED"
    assert "TrainingDiverged" in runs[-1].data.tags["error"]


def test_the_registry_flag_reruns_only_evaluate_which_registers_the_model(project):
    root, _, _ = project
    sh(root, "backprop", "params", *FAST, "registered_model_name=pipeline-mlp")
    try:
        result = sh(root, "dvc", "repro")
        ran = [line for line in result.stdout.splitlines() if line.startswith("Running stage")]
        assert ran == ["Running stage 'evaluate':"]
        assert "as models:/pipeline-mlp/1" in result.stdout
        client, runs = mlflow_runs(root)
        version = client.get_model_version("pipeline-mlp", "1")
        assert version.run_id == (root / "data/.mlflow-run").read_text().strip()
    finally:
        sh(root, "backprop", "params", *FAST)


def test_editing_any_module_reruns_exactly_the_stages_that_load_it(project):
    """Each source file of the package, edited in turn: `dvc status` names the stages whose
    command loads it (their deps in dvc.yaml, which test_registry measures) and no other."""
    from dvc.repo import Repo

    root, _, _ = project
    sh(root, "dvc", "repro")  # up to date first
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]

    def loaded_by(path: str) -> set[str]:
        return {
            name
            for name, stage in stages.items()
            if any(path == d or path.startswith(d + "/") for d in stage["deps"])
        }

    sources = sorted((root / "src" / "backprop").rglob("*.py"))
    with Repo(str(root)) as repo:
        assert repo.status() == {}
        for source in sources:
            relative = source.relative_to(root).as_posix()
            original = source.read_bytes()
            source.write_bytes(original + b"# edited\n")
            try:
                reported = {name.rsplit(":", 1)[-1] for name in repo.status()}
            finally:
                source.write_bytes(original)
            assert reported == loaded_by(relative), relative
    assert any(loaded_by(s.relative_to(root).as_posix()) == set() for s in sources)


def test_bytecode_caches_do_not_count_as_code_changes(project):
    """Running the code writes __pycache__ folders inside the plug-in packages that are
    folder deps; `.dvcignore` keeps them out of the hash, so the pipeline stays up to date."""
    from dvc.repo import Repo

    root, _, _ = project
    sh(root, "dvc", "repro")
    assert compileall.compile_dir(str(root / "src"), quiet=1, force=True)
    assert list((root / "src/backprop/nn/activations").glob("__pycache__/*.pyc"))
    with Repo(str(root)) as repo:
        assert repo.status() == {}


def test_a_csv_path_with_spaces_and_parentheses_is_one_argument(project):
    root, _, _ = project
    csv = root / "data/raw/my digits (v2).csv"
    csv.write_bytes((root / "data/raw/digits.csv").read_bytes())
    try:
        sh(root, "backprop", "params", *FAST, "data=csv",
           "data.path='data/raw/my digits (v2).csv'", "data.label_column=label")  # fmt: skip
        result = sh(root, "dvc", "repro", "preprocess")
        assert "Running stage 'preprocess'" in result.stdout
        assert "backprop preprocess 'data/raw/my digits (v2).csv' data/prepared" in result.stdout
    finally:
        csv.unlink()
        sh(root, "backprop", "params", *FAST)
