"""Using what was trained: predict, register, serve, reproduce."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from helpers import cached_digits, fresh_copy, mlflow_client, mlflow_service, sh

# A fresh copy with a trained run, `mlflow models serve`, the registry.
pytestmark = pytest.mark.slow

FAST = ["train.epochs=3", "train.patience=null"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A fresh project with one tracked run of the Hydra app: (root, run id, model folder)."""
    root = fresh_copy(tmp_path_factory.mktemp("project"))
    out = sh(root, "backprop-experiment", *FAST).stdout
    run_id = re.search(r"MLflow run (\w+)", out).group(1)
    job_dir = out.strip().rsplit("outputs in ", 1)[1].rstrip(")")
    return root, run_id, root / job_dir / "model"


def digits(root):
    return pd.read_csv(cached_digits(root))


def predict(root, *args, check=True):
    return sh(root, "backprop", "predict", *map(str, args), check=check)


def test_predict_writes_labels_and_probabilities_and_reports_accuracy(trained, tmp_path):
    from backprop.pipeline.predictor import Predictor

    root, _, model = trained
    data = digits(root)
    result = predict(root, model, cached_digits(root), "-o", tmp_path / "p.csv")
    out = pd.read_csv(tmp_path / "p.csv")
    # `predicted`, not `label`: the input's true labels have that name
    assert list(out.columns) == ["predicted"] + [f"proba_{c}" for c in range(10)]
    expected = Predictor(str(model)).predict(data.drop(columns=["label"]))
    assert list(expected.columns) == list(out.columns)  # the pyfunc model's columns too
    assert (out["predicted"] == expected["predicted"]).all()
    # the network computes in float32; the CSV holds each probability to that precision
    assert np.array_equal(
        out.iloc[:, 1:].to_numpy(np.float32), expected.iloc[:, 1:].to_numpy(np.float32)
    )
    right = int((out["predicted"] == data["label"]).sum())
    assert f"accuracy {right / len(data):.4f} ({right} of {len(data)} right)" in result.stdout


def test_columns_are_matched_by_name_and_the_label_is_optional(trained, tmp_path):
    root, _, model = trained
    data = digits(root)
    predict(root, model, cached_digits(root), "-o", tmp_path / "a.csv")
    shuffled = data[list(reversed(data.columns))].drop(columns=["label"])
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    result = predict(root, model, tmp_path / "shuffled.csv", "-o", tmp_path / "b.csv",
                     "--chunk-rows", "100")  # fmt: skip
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert "accuracy" not in result.stdout  # no labels, no accuracy
    # Without -o the CSV goes to standard output and the summary to standard error.
    streamed = predict(root, model, tmp_path / "shuffled.csv")
    assert streamed.stdout == (tmp_path / "a.csv").read_text()
    assert "predicted 1797 rows" in streamed.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.drop(columns=["pixel5", "pixel9"]), "missing pixel5, pixel9"),
        (lambda d: d.assign(extra=1), "unexpected extra"),
        (lambda d: d.rename(columns={"pixel0": "px0"}), "missing pixel0; unexpected px0"),
    ],
)
def test_wrong_columns_get_one_line_naming_them(trained, tmp_path, change, message):
    root, _, model = trained
    change(digits(root).head(20)).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "out.csv").write_text("previous\n")
    result = predict(root, model, tmp_path / "in.csv", "-o", tmp_path / "out.csv", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "out.csv").read_text() == "previous\n"  # untouched


def test_a_bad_cell_past_the_first_chunk_is_named_and_nothing_is_written(trained, tmp_path):
    root, _, model = trained
    data = digits(root).astype({"pixel10": object})
    data.loc[1500, "pixel10"] = "dark"
    data.to_csv(tmp_path / "in.csv", index=False)
    result = predict(root, model, tmp_path / "in.csv", "-o", tmp_path / "out.csv",
                     "--chunk-rows", "500", check=False)  # fmt: skip
    assert result.returncode == 2
    assert "column 'pixel10', row 1501 (line 1502): 'dark' is not a number" in result.stderr
    assert not (tmp_path / "out.csv").exists()
    assert not list(tmp_path.glob(".out.csv.*"))  # no temporary file left behind


def test_a_model_uri_predicts_like_its_folder_and_registry_names_work(trained, tmp_path):
    root, run_id, model = trained
    csv = cached_digits(root)
    predict(root, model, csv, "-o", tmp_path / "folder.csv")
    predict(root, f"runs:/{run_id}/model", csv, "-o", tmp_path / "run.csv")
    registered = sh(root, "backprop", "register", run_id, "digits-mlp").stdout
    assert registered == (f"registered the model of run {run_id} as models:/digits-mlp/1 "
                          "(models:/digits-mlp@champion)\n")  # fmt: skip
    predict(root, "models:/digits-mlp/1", csv, "-o", tmp_path / "registry.csv")
    predict(root, "models:/digits-mlp@champion", csv, "-o", tmp_path / "alias.csv")
    expected = (tmp_path / "folder.csv").read_bytes()
    assert (tmp_path / "run.csv").read_bytes() == expected
    assert (tmp_path / "registry.csv").read_bytes() == expected
    assert (tmp_path / "alias.csv").read_bytes() == expected
    # another alias: a new version under it, champion stays where it was
    again = sh(root, "backprop", "register", run_id, "digits-mlp", "--alias", "staging").stdout
    assert "as models:/digits-mlp/2 (models:/digits-mlp@staging)" in again
    aliases = mlflow_client(root).get_registered_model("digits-mlp").aliases
    assert {alias: str(version) for alias, version in aliases.items()} == {
        "champion": "1", "staging": "2"
    }  # fmt: skip
    for uri, message in [
        ("models:/nobody/1", "no registered model named 'nobody' in the tracking store"),
        ("models:/nobody@champion", "`backprop register RUN_ID nobody` registers"),
        ("models:/digits-mlp@prod", "registered model 'digits-mlp' has no alias 'prod' (its "
         "aliases: champion for version 1, staging for version 2); `backprop register RUN_ID "
         "digits-mlp --alias prod`"),
    ]:  # fmt: skip
        missing = sh(root, "backprop", "predict", uri, str(csv), check=False)
        assert missing.returncode == 2 and not missing.stdout
        assert missing.stderr.startswith(f"backprop predict: error: {uri}: "), missing.stderr
        assert message in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_register_refuses_an_alias_mlflow_keeps_before_registering_anything(trained):
    root, run_id, _ = trained
    for alias in ("v2", "latest", "two words"):
        result = sh(root, "backprop", "register", run_id, "refused", "--alias", alias,
                    check=False)  # fmt: skip
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith(
            f"backprop register: error: argument --alias: alias {alias!r}"
        )
    assert not mlflow_client(root).search_registered_models("name = 'refused'")


def test_register_refuses_an_unknown_run_in_one_line(trained):
    root, _, _ = trained
    result = sh(root, "backprop", "register", "0123456789abcdef", "x", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "run 0123456789abcdef" in result.stderr and "backprop runs" in result.stderr


def test_a_config_flag_registers_the_model_of_a_run(trained):
    root, _, _ = trained
    out = sh(root, "backprop-experiment", *FAST, "registered_model_name=flagged").stdout
    assert "registered the model as models:/flagged/1" in out
    client = mlflow_client(root)
    version = client.get_model_version("flagged", "1")
    assert version.run_id == re.search(r"MLflow run (\w+)", out).group(1)
    # Store.register_model points the alias champion at what it registers
    assert str(client.get_model_version_by_alias("flagged", "champion").version) == "1"


def _post(url, frame):
    body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()
    request = urllib.request.Request(
        url + "/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_served_model_answers_like_predict_and_refuses_bad_requests(trained, tmp_path):
    root, run_id, model = trained
    rows = digits(root).sample(25, random_state=0).drop(columns=["label"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    predict(root, model, tmp_path / "rows.csv", "-o", tmp_path / "expected.csv")
    expected = pd.read_csv(tmp_path / "expected.csv")
    sh(root, "backprop", "register", run_id, "served")  # served by its registry alias
    args = ["models", "serve", "-m", "models:/served@champion", "--env-manager", "local"]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with mlflow_service(args, "/ping", tmp_path / "serve.log", cwd=root,
                        MLFLOW_TRACKING_URI=uri) as url:  # fmt: skip
        status, answer = _post(url, rows)
        assert status == 200
        served = pd.DataFrame(answer["predictions"])
        assert list(served.columns) == list(expected.columns)
        assert served.columns[0] == "predicted"
        assert (served["predicted"] == expected["predicted"]).all()
        assert np.array_equal(
            served.iloc[:, 1:].to_numpy(np.float32), expected.iloc[:, 1:].to_numpy(np.float32)
        )

        status, answer = _post(url, rows.drop(columns=["pixel7"]))
        assert 400 <= status < 500 and "pixel7" in answer["message"]
        text = rows.astype(object)
        text.iloc[3, 12] = "dark"
        status, answer = _post(url, text)
        assert 400 <= status < 500 and "pixel12" in answer["message"]
        assert "dark" in answer["message"]


def test_reproduce_gives_the_same_weights_and_metrics_in_a_new_tagged_run(trained):
    root, run_id, _ = trained
    result = sh(root, "backprop", "reproduce", run_id)
    assert "weights SHA-256: identical" in result.stdout
    assert "test metrics: identical" in result.stdout and "bit-identical" in result.stdout
    new_id = re.search(r"as run (\w+)", result.stdout).group(1)
    client = mlflow_client(root)
    new, old = client.get_run(new_id), client.get_run(run_id)
    assert new.data.tags["reproduces"] == run_id
    assert new.data.tags["reproduced_identically"] == "true"
    assert new.data.tags["weights_sha256"] == old.data.tags["weights_sha256"]
    assert new.data.metrics["test_accuracy"] == old.data.metrics["test_accuracy"]


def test_reproduce_refuses_when_the_data_changed(trained, tmp_path):
    root, _, _ = trained
    csv = tmp_path / "mine.csv"
    digits(root).head(600).to_csv(csv, index=False)
    out = sh(root, "backprop-experiment", *FAST, "data=csv", f"data.path={csv}").stdout
    run_id = re.search(r"MLflow run (\w+)", out).group(1)
    data = pd.read_csv(csv)
    data.loc[0, "pixel20"] = 16 - data.loc[0, "pixel20"]
    data.to_csv(csv, index=False)
    result = sh(root, "backprop", "reproduce", run_id, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "mine.csv" in result.stderr and "is not that of the data" in result.stderr
    client = mlflow_client(root)
    assert not client.search_runs(
        [client.get_run(run_id).info.experiment_id], f"tags.reproduces = '{run_id}'"
    )  # no run started


def test_a_sweep_registers_its_best_job_only(trained):
    root, _, _ = trained
    sh(root, "backprop-experiment", "--multirun", *FAST, "optim.lr=1.0,0.05",
       "registered_model_name=swept")  # fmt: skip
    client = mlflow_client(root)
    versions = client.search_model_versions("name = 'swept'")
    assert len(versions) == 1
    parent = client.search_runs(
        [client.get_experiment_by_name("backprop").experiment_id], "tags.sweep = 'parent'"
    )[0]
    assert versions[0].run_id == parent.data.params["best_run_id"]
    assert client.get_model_version_by_alias("swept", "champion").version == versions[0].version
    # the parent has no model of its own: the refusal names the job to register instead
    best = parent.data.params["best_run_id"]
    refused = sh(root, "backprop", "register", parent.info.run_id, "other", check=False)
    assert refused.returncode == 2
    assert refused.stderr == (
        f"backprop register: error: run {parent.info.run_id} is a sweep's parent, which has no "
        f"model of its own; its best job is run {best}: `backprop register {best} other`\n"
    )
