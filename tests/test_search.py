"""hydra/sweeper=optuna: Bayesian search with pruning, resumable, in MLflow and in its study.

Each test runs ``backprop-experiment --multirun hydra/sweeper=optuna ...`` in a fresh
copy of the repository on the embedded digits, with few epochs, and reads back both the
Optuna study (``optuna.db`` at the project root) and the MLflow runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from helpers import fresh_copy, mlflow_client, sh, venv_env

pytestmark = pytest.mark.slow

SEARCH = [
    "--multirun", "hydra/sweeper=optuna", "train.epochs=6", "train.patience=null",
    "hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=1",
    "optim.lr=tag(log, interval(0.001, 1.0))", "model.hidden_sizes=choice([32],[64,32])",
]  # fmt: skip


def study_of(root, name=None):
    import optuna

    url = f"sqlite:///{root / 'optuna.db'}"
    names = optuna.get_all_study_names(url)
    return optuna.load_study(study_name=name or names[0], storage=url)


def parent_of(client, study):
    return client.get_run(study.user_attrs["mlflow_parent_run_id"])


def children(client, parent_id):
    experiment = client.get_experiment_by_name("backprop")
    return client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One search of 6 trials, pruning on; then the same command with n_trials=8."""
    root = fresh_copy(tmp_path_factory.mktemp("search"))
    first = sh(root, "backprop-experiment", *SEARCH, "hydra.sweeper.n_trials=6")
    return root, first


def test_a_search_prunes_and_records_its_trials_and_study_in_mlflow(searched):
    root, result = searched
    from optuna.trial import TrialState

    study = study_of(root)
    trials = study.get_trials()
    assert len(trials) == 6
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    client = mlflow_client(root)
    parent = parent_of(client, study)
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["sweep"] == "parent" and tags["optuna.study"] == study.study_name
    assert tags["optuna.sampler"] == "tpe (seed 0)"
    assert tags["optuna.pruner"].startswith("median (after 2 trials")
    assert "tag(log, interval(0.001, 1.0))" in tags["optuna.search_space"]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert tags["optuna.trials_pruned"] == str(len(pruned))
    assert tags["optuna.trials_complete"] == str(6 - len(pruned))
    # the best params in MLflow are the study's best trial's
    best = study.best_trial
    assert tags["optuna.best_trial"] == str(best.number)
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert float(parent.data.params["optim.lr"]) == pytest.approx(best.params["optim.lr"])
    assert parent.data.params["model.hidden_sizes"] == str(
        [int(x) for x in best.params["model.hidden_sizes"].strip("[]").split(",")]
    )
    assert parent.data.params["best_run_id"] == best.user_attrs["mlflow_run_id"]
    runs = children(client, parent.info.run_id)
    assert len(runs) == 6
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in runs}
    assert sorted(by_number) == [t.number for t in trials]
    for trial in trials:
        run = by_number[trial.number]
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        # every epoch the trial trained is in the study and in MLflow
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy"))
        assert steps == sorted(trial.intermediate_values)
        if trial.state == TrialState.PRUNED:
            epoch = max(trial.intermediate_values)
            assert run.info.status == "KILLED"
            assert run.data.tags["optuna.state"] == "PRUNED"
            assert run.data.tags["pruned_epoch"] == str(epoch)
            assert (
                f"trial {trial.number} ({trial.user_attrs['name']}): pruned after epoch "
                f"{epoch}" in result.stdout
            )
        else:
            assert run.info.status == "FINISHED" and len(steps) == 6
            assert run.data.metrics["kept_val_accuracy"] == pytest.approx(trial.value, abs=1e-4)
    # a pruned trial keeps its checkpoint (a finished one's is removed with its model written)
    assert len(list((root / "outputs/checkpoints").glob("*.npz"))) == len(pruned)
    # Optuna's figures in the parent run and in the sweep's folder
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/slice.png"} <= artifacts
    assert f"best trial: {best.number}, val_accuracy {best.value:.4f}" in result.stdout
    # backprop runs shows the pruned trials for what they are
    table = sh(root, "backprop", "runs", "--sweep", "latest").stdout
    assert table.count("PRUNED@") == len(pruned) and table.count("FINISHED") == 6 - len(pruned)


def test_the_same_command_continues_the_study_without_rerunning_finished_trials(searched):
    root, _ = searched
    before = {t.number: t.user_attrs["mlflow_run_id"] for t in study_of(root).get_trials()}
    again = sh(root, "backprop-experiment", *SEARCH, "hydra.sweeper.n_trials=8")
    assert "6 trials done; n_trials=8" in again.stdout
    study = study_of(root)
    trials = study.get_trials()
    assert len(trials) == 8
    after = {t.number: t.user_attrs["mlflow_run_id"] for t in trials}
    assert {k: after[k] for k in before} == before  # the first six untouched
    assert again.stdout.count("MLflow run ") == 2 + 1  # two trials, and the best line
    client = mlflow_client(root)
    parent = parent_of(client, study)  # one run for the study, not one per command
    assert len(children(client, parent.info.run_id)) == 8
    assert parent.data.tags["jobs"] == "8"
    # the resumed sampler proposes new points, not the first command's again
    first_six = {t.params["optim.lr"] for t in trials[:6]}
    assert not {t.params["optim.lr"] for t in trials[6:]} & first_six
    # another space under this study's name: one line, nothing run
    other = sh(root, "backprop-experiment", *SEARCH[:-1], "model.hidden_sizes=choice([16],[8])",
               "hydra.sweeper.n_trials=9", f"hydra.sweeper.study_name={study.study_name}",
               check=False)  # fmt: skip
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "searched another space or metric" in other.stderr
    assert len(study_of(root).get_trials()) == 8
    # the same space spelled with other spaces is the same study
    spaced = [a.replace("tag(log, interval(0.001, 1.0))", "tag(log,interval(0.001,1.0))")
              for a in SEARCH]  # fmt: skip
    assert spaced != SEARCH
    # and the study is full: the same command runs nothing
    done = sh(root, "backprop-experiment", *spaced, "hydra.sweeper.n_trials=8")
    assert "8 trials done; n_trials=8" in done.stdout
    assert "nothing to run; raise hydra.sweeper.n_trials to search on" in done.stdout
    assert "started" not in done.stdout
    assert len(study_of(root).get_trials()) == 8


def test_the_same_command_proposes_the_same_trials(searched, tmp_path):
    root, _ = searched
    first = study_of(root).get_trials()[:4]
    sh(
        root,
        "backprop-experiment",
        *SEARCH,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.study_name=again",
    )
    second = study_of(root, "again").get_trials()
    assert [t.params for t in second] == [t.params for t in first]
    assert [t.state for t in second] == [t.state for t in first]


def test_parallel_trials_share_a_fresh_study_and_lose_nothing(tmp_path):
    root = fresh_copy(tmp_path)
    assert not (root / "optuna.db").exists()
    command = ["backprop-experiment", *SEARCH, "hydra.sweeper.n_trials=6",
               "hydra.sweeper.pruner.name=none", "hydra/launcher=joblib",
               "hydra.launcher.n_jobs=2"]  # fmt: skip
    # two sweeps of the same search at once, on a database neither has created yet
    processes = [
        subprocess.Popen(
            command,
            cwd=root,
            env=venv_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    study = study_of(root)
    trials = study.get_trials()
    assert len(trials) == 6  # n_trials in all, not 6 each
    assert len({t.params["optim.lr"] for t in trials}) == 6  # neither repeats the other's
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert all(sorted(t.intermediate_values) == list(range(1, 7)) for t in trials)
    client = mlflow_client(root)
    runs = children(client, study.user_attrs["mlflow_parent_run_id"])
    assert sorted(r.info.run_id for r in runs) == sorted(
        t.user_attrs["mlflow_run_id"] for t in trials
    )
    for run in runs:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert sorted(steps) == list(range(1, 7))


def test_an_interrupted_search_resumes_its_trial_from_the_checkpoint(tmp_path):
    root = fresh_copy(tmp_path)
    command = ["backprop-experiment", *SEARCH, "hydra.sweeper.n_trials=2",
               "hydra.sweeper.pruner.name=none", "train.epochs=400"]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=root,
        env=venv_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not list((root / "outputs/checkpoints").glob("*.npz")):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)  # a few epochs in
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0
    assert "resume with the same command: the search goes on with this trial" in err
    interrupted = study_of(root).get_trials()[0]
    assert interrupted.state.name == "RUNNING"
    reached = max(interrupted.intermediate_values)
    assert 0 < reached < 400
    run_id = interrupted.user_attrs["mlflow_run_id"]
    client = mlflow_client(root)
    assert client.get_run(run_id).info.status == "KILLED"

    again = sh(root, *command)
    assert "1 interrupted (run again from their checkpoints)" in again.stdout
    trials = study_of(root).get_trials()
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    resumed = trials[0]
    assert resumed.user_attrs["mlflow_run_id"] == run_id  # the same run went on
    assert sorted(resumed.intermediate_values) == list(range(1, 401))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    # the checkpoint is written before the epoch is reported: it may hold one epoch more
    assert 0 < int(run.data.tags["resumed_after_epoch"]) <= reached + 1
    steps = [m.step for m in client.get_metric_history(run_id, "train_loss")]
    assert sorted(steps) == list(range(1, 401))


def test_repeats_train_each_config_over_seeds_and_report_the_mean(tmp_path):
    root = fresh_copy(tmp_path)
    result = sh(root, "backprop-experiment", *SEARCH, "hydra.sweeper.n_trials=2",
                "hydra.sweeper.repeats=3", "hydra.sweeper.pruner.name=none")  # fmt: skip
    assert "over 3 seeds" in result.stdout
    study = study_of(root)
    client = mlflow_client(root)
    trial_runs = children(client, study.user_attrs["mlflow_parent_run_id"])
    assert len(trial_runs) == 2
    for trial in study.get_trials():
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        seeds = children(client, run.info.run_id)
        assert sorted(s.data.tags["seed"] for s in seeds) == ["0", "1", "2"]
        assert sorted(s.data.params["train.seed"] for s in seeds) == ["0", "1", "2"]
        values = [s.data.metrics["kept_val_accuracy"] for s in seeds]
        assert trial.value == pytest.approx(sum(values) / 3, abs=1e-4)
        assert run.data.metrics["kept_val_accuracy"] == pytest.approx(trial.value, abs=1e-4)
        assert "kept_val_accuracy_std" in run.data.metrics
        assert sorted(trial.user_attrs["values"]) == pytest.approx(sorted(values), abs=1e-4)
    # pruned with repeats: the trial is PRUNED (not failed), its run shows its params
    pruning = sh(root, "backprop-experiment", *SEARCH, "hydra.sweeper.n_trials=6",
                 "hydra.sweeper.repeats=2", "hydra.sweeper.study_name=pruning")  # fmt: skip
    study = study_of(root, "pruning")
    pruned = [t for t in study.get_trials() if t.state.name == "PRUNED"]
    assert pruned and all(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials())
    assert "failed" not in pruning.stderr
    for trial in pruned:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["optuna.state"] == "PRUNED" and run.info.status == "KILLED"
        assert run.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"]
        assert run.data.params["optim.lr"] == repr(trial.params["optim.lr"])
    header = next(line for line in pruning.stdout.splitlines() if line.startswith("rank "))
    assert header.split()[2:4] == ["model.hidden_sizes", "optim.lr"]  # only what was searched


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    return fresh_copy(tmp_path_factory.mktemp("bare"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=tag(log, interval(0.001, 1))", "unknown key optim.lrr; did you mean optim.lr?"),
        ("optim.lr=interval(1.0, 0.1)", "optim.lr=interval(1.0, 0.1): empty interval"),
        ("optim.lr=tag(log, interval(0, 1))", "a log scale needs low > 0"),
        ("hydra.sweeper.sampler.name=tpee", "hydra.sweeper.sampler.name"),
        ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials"),
        ("model.hidden_sizes=choice([0],[16])", "model.hidden_sizes"),
        ("hydra.sweeper.n_trails=5", "unknown key hydra.sweeper.n_trails; did you mean "
         "hydra.sweeper.n_trials?"),
        ("train.batch_size=range(16,16)", "train.batch_size=range(16,16): no values"),
        ("train.batch_size=range(16,64,0)", "a range needs a step other than 0"),
        ("hydra.sweeper.storage=nonsense", "not a database URL"),
    ],
)  # fmt: skip
def test_a_bad_search_space_is_one_line_before_any_trial(bare, override, message):
    root = bare
    result = sh(root, "backprop-experiment", "--multirun", "hydra/sweeper=optuna",
                "optim.lr=interval(0.01, 1.0)", override, check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].startswith("backprop-experiment: error: ")
    assert not (root / "mlflow.db").exists()  # no run opened
    assert not (root / "optuna.db").exists()  # no study either
    assert not list((root / "outputs").glob("sweeps/*/*"))  # nor an empty sweep folder


def test_the_grid_sampler_needs_values_to_try(bare):
    root = bare
    result = sh(root, "backprop-experiment", *SEARCH, "hydra.sweeper.sampler.name=grid",
                check=False)  # fmt: skip
    assert result.returncode == 2
    assert "the grid sampler needs values to try" in result.stderr


def test_the_study_opens_in_optuna_dashboard_on_localhost(searched):
    import json
    import urllib.request

    from helpers import free_port, wait_for

    root, _ = searched
    study = study_of(root)
    port = free_port()
    dashboard = subprocess.Popen(
        ["optuna-dashboard", "--host", "127.0.0.1", "--port", str(port),
         f"sqlite:///{root / 'optuna.db'}"],
        cwd=root, env=venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/api/studies", 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as response:
            summaries = json.load(response)["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == study.study_name]
        assert summary["directions"] == ["maximize"]
        attrs = {a["key"]: a["value"] for a in summary["user_attrs"]}
        assert attrs["mlflow_parent_run_id"] == study.user_attrs["mlflow_parent_run_id"]
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


@pytest.mark.parametrize(
    ("sampler", "pruner", "space"),
    [
        ("random", "hyperband", "optim.lr=tag(log, interval(0.01, 1.0))"),
        ("cmaes", "median", "optim.lr=tag(log, interval(0.01, 1.0))"),
        ("grid", "none", "optim.lr=choice(0.1,1.0)"),
    ],
)
def test_each_sampler_and_pruner_runs_a_search(bare, sampler, pruner, space):
    root = bare
    name = f"{sampler}-{pruner}"
    result = sh(
        root,
        "backprop-experiment",
        "--multirun",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.sampler.name={sampler}",
        f"hydra.sweeper.pruner.name={pruner}",
        f"hydra.sweeper.study_name={name}",
        "train.epochs=3",
        "train.patience=null",
        "model.hidden_sizes=[16]",
        space,
    )
    study = study_of(root, name)
    expected = 2 if sampler == "grid" else 3  # the grid has two points
    assert len(study.trials) == expected and all(t.state.is_finished() for t in study.trials)
    if sampler == "grid":
        assert "the grid has 2 points" in result.stdout
        assert sorted(t.params["optim.lr"] for t in study.trials) == [0.1, 1.0]
    parent = parent_of(mlflow_client(root), study)
    assert parent.data.tags["optuna.sampler"] == f"{sampler} (seed 0)"
    assert parent.data.tags["optuna.pruner"].split(" ")[0] == pruner


def test_a_parallel_search_whose_launcher_is_interrupted_goes_on_without_duplicates(tmp_path):
    root = fresh_copy(tmp_path)
    command = ["backprop-experiment", *SEARCH, "hydra.sweeper.n_trials=3",
               "hydra.sweeper.pruner.name=none", "train.epochs=400", "hydra/launcher=joblib",
               "hydra.launcher.n_jobs=2"]  # fmt: skip
    process = subprocess.Popen(command, cwd=root, env=venv_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(list((root / "outputs/checkpoints").glob("*.npz"))) < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # the launcher only, not its workers
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "backprop-experiment: interrupted by SIGINT; trials still running stop at their last "
        "checkpoint; run the same command to go on"
    )
    assert "Traceback" not in err
    time.sleep(5)  # the workers notice their launcher is gone and stop at a checkpoint
    again = sh(root, *command)
    assert "2 interrupted (run again from their checkpoints)" in again.stdout
    study = study_of(root)
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    client = mlflow_client(root)
    runs = children(client, study.user_attrs["mlflow_parent_run_id"])
    assert sorted(r.info.run_id for r in runs) == sorted(
        t.user_attrs["mlflow_run_id"] for t in trials
    )  # one run a trial: the interrupted ones went on in theirs
    assert all(r.info.status == "FINISHED" for r in runs)
    for trial in trials[:2]:
        assert "resumed_after_epoch" in client.get_run(trial.user_attrs["mlflow_run_id"]).data.tags
