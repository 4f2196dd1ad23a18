"""A corpus of bad overrides: one line naming the key, exit 2, and no run left RUNNING.

Each goes through both front doors: ``backprop params`` (DVC's own composition,
what ``dvc exp run -S`` does) and the Hydra app ``backprop-experiment``, in a
single run and in a sweep where only one value is bad.  The refusals run in this
process (each front door's ``main``, on a copy of ``conf/``): a subprocess would
add half a second each and nothing else.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import warnings

import pytest

from backprop.app.cli import main as cli_main
from backprop.app.experiment import main as experiment_main
from helpers import REPO, fresh_copy, mlflow_client, sh

CORPUS = [
    ("model.hidden_sizes=[0,64]", "model.hidden_sizes"),
    ("model.hidden_sizes=[-3]", "model.hidden_sizes"),
    ("model.hidden_sizes=[]", "model.hidden_sizes"),
    ("optim.lr=0", "optim.lr"),
    ("optim.lr=-0.5", "optim.lr"),
    ("optim.lr=oops", "optim.lr"),
    ("train.epochs=0", "train.epochs"),
    ("train.epochs=-4", "train.epochs"),
    ("train.batch_size=0", "train.batch_size"),
    ("model.activation=swish", "model.activation"),
    ("optim.name=lbfgs", "optim.name"),
    ("optim.name=rmsprop", "optim.name=rmsprop would keep the other settings of optim/sgd.yaml"),
    ("optim=adam optim.name=momentum", "choose the file instead: optim=momentum"),
    ("preprocess.val_fraction=1.5", "preprocess.val_fraction"),
    ("preprocess.val_fraction=-0.1", "preprocess.val_fraction"),
    ("preprocess.test_fraction=0", "preprocess.test_fraction"),
    ("preprocess.test_fraction=1", "preprocess.test_fraction"),
    ("preprocess.val_fraction=0.5 preprocess.test_fraction=0.5", "preprocess.val_fraction"),
    ("optim.foo=1", "optim.foo"),
    ("+optim.foo=1", "optim.foo"),
    ("+colour=blue", "colour"),
    ("model=nope", "model/nope"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return fresh_copy(tmp_path_factory.mktemp("project"))


def overrides(case: str) -> list[str]:
    return case.split(" ")


def no_run_is_running(root) -> None:
    if not (root / "mlflow.db").exists():
        return
    client = mlflow_client(root)
    for experiment in client.search_experiments():
        running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
        assert not running


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def conf_copy(tmp_path, monkeypatch):
    """A project of conf/ alone, as the working directory."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # plain_warnings
    return tmp_path


def in_process(capsys, main, argv: list[str], monkeypatch) -> Result:
    monkeypatch.setattr(sys, "argv", argv)
    try:
        code = main(argv[1:]) if main is cli_main else main()
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def one_line_naming(result, key: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("case, key", CORPUS)
def test_params_composition_refuses_in_one_line(conf_copy, capsys, monkeypatch, case, key):
    argv = ["backprop", "params", *overrides(case), "--output", str(conf_copy / "p.yaml")]
    result = in_process(capsys, cli_main, argv, monkeypatch)
    one_line_naming(result, key)
    assert result.stderr.startswith("backprop params: error: ")
    assert not (conf_copy / "p.yaml").exists()


@pytest.mark.parametrize("case, key", CORPUS)
def test_the_hydra_app_refuses_before_any_run(conf_copy, capsys, monkeypatch, case, key):
    argv = ["backprop-experiment", "train.epochs=1", *overrides(case)]
    result = in_process(capsys, experiment_main, argv, monkeypatch)
    one_line_naming(result, key)
    assert result.stderr.startswith("backprop-experiment: error: ")
    assert not (conf_copy / "mlflow.db").exists() and not (conf_copy / "outputs").exists()


@pytest.mark.parametrize(
    "case, message",
    [
        ("model=[1,2]", "model is a config group: choose one of gelu, leaky_relu"),
        ("optim=3", "optim is a config group: choose one of adam, momentum"),
        ("optim.lr=0.1,0.2", "optim.lr=0.1,0.2 sweeps several values: add --multirun"),
        ("model=glob(s*)", "model=glob(s*) sweeps several values: add --multirun"),
    ],
)
def test_what_hydra_reports_in_many_lines_is_one_line(conf_copy, capsys, monkeypatch, case,
                                                      message):  # fmt: skip
    result = in_process(capsys, experiment_main, ["backprop-experiment", case], monkeypatch)
    one_line_naming(result, message)
    assert not (conf_copy / "mlflow.db").exists()


def test_one_bad_value_in_a_sweep_stops_it_before_any_job(conf_copy, capsys, monkeypatch):
    argv = ["backprop-experiment", "--multirun", "train.epochs=1", "optim.lr=0.5,-1",
            "model.activation=relu,swish"]  # fmt: skip
    result = in_process(capsys, experiment_main, argv, monkeypatch)
    one_line_naming(result, "optim.lr")
    assert "job" not in result.stdout
    assert not (conf_copy / "mlflow.db").exists() and not (conf_copy / "outputs").exists()


BAD_PAIR = ["preprocess.val_fraction=0.1,0.5", "preprocess.test_fraction=0.1,0.5"]


def test_values_valid_alone_but_not_together_stop_a_sweep_before_any_job(
    conf_copy, capsys, monkeypatch
):
    argv = ["backprop-experiment", "--multirun", "train.epochs=1", *BAD_PAIR]
    result = in_process(capsys, experiment_main, argv, monkeypatch)
    one_line_naming(result, "val_fraction + test_fraction < 1")
    assert not (conf_copy / "mlflow.db").exists() and not (conf_copy / "outputs").exists()


def test_a_sweep_too_large_to_compose_first_records_its_bad_job_as_a_failed_run(
    conf_copy, capsys, monkeypatch
):
    """Past the pre-flight limit each value is tried once; the bad combination is then
    found by its job, which is a FAILED run with the error while the others finish."""
    from backprop.app import experiment

    monkeypatch.setattr(experiment, "PREFLIGHT_COMBINATIONS", 1)
    argv = ["backprop-experiment", "--multirun", "train.epochs=1", "model.hidden_sizes=[8]",
            *BAD_PAIR]  # fmt: skip
    result = in_process(capsys, experiment_main, argv, monkeypatch)
    assert result.returncode == 1, result.stderr
    assert "job 3 failed: preprocess.val_fraction must be small enough" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "1 job(s) failed: 3 (val_fraction=0.5 test_fraction=0.5)" in result.stderr
    client = mlflow_client(conf_copy)
    experiment_id = client.get_experiment_by_name("backprop").experiment_id
    runs = client.search_runs([experiment_id])
    jobs = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert sorted(r.info.status for r in jobs.values()) == ["FAILED", *["FINISHED"] * 3]
    failed = next(r for r in jobs.values() if r.info.status == "FAILED")
    assert failed.info.run_name == "val_fraction=0.5 test_fraction=0.5"
    assert failed.data.tags["sweep_job"] == "3"
    assert failed.data.tags["error"].startswith("ConfigError: preprocess.val_fraction must")
    no_run_is_running(conf_copy)


@pytest.mark.slow
def test_a_batch_larger_than_the_training_set_is_clipped_with_a_warning(project):
    result = sh(project, "backprop-experiment", "train.epochs=1", "train.batch_size=100000")
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "backprop: warning: batch_size 100000 is larger than the 1259 training rows; using 1259"
    ]
    no_run_is_running(project)


@pytest.mark.slow
def test_printing_the_config_checks_it_too_and_a_glob_sweep_is_left_to_hydra(project):
    result = sh(project, "backprop-experiment", "--cfg", "job", "optim.lr=oops", check=False)
    one_line_naming(result, "optim.lr")
    shown = sh(project, "backprop-experiment", "--cfg", "job", "optim.lr=0.25")
    assert "lr: 0.25" in shown.stdout
    swept = sh(project, "backprop-experiment", "--multirun", "train.epochs=1",
               "model=glob(s*)")  # fmt: skip
    done = [line for line in swept.stdout.splitlines() if line.startswith("job ")]
    assert len(done) == 2 and "sweep of 2 jobs" in swept.stdout  # seed, squared_error


def test_zero_parallel_jobs_is_refused_before_the_parent_run(conf_copy, capsys, monkeypatch):
    argv = ["backprop-experiment", "--multirun", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=0", "optim.lr=1,0.5"]  # fmt: skip
    result = in_process(capsys, experiment_main, argv, monkeypatch)
    one_line_naming(result, "hydra.launcher.n_jobs must be a number of parallel jobs >= 1")
    assert not (conf_copy / "mlflow.db").exists()


@pytest.mark.parametrize(
    "appended, message",
    [
        ("\tmomentum: 0.9\n", "conf/optim/sgd.yaml, line 9, column 1: a tab, which YAML does"),
        ("lr: 0.5\n", "conf/optim/sgd.yaml, line 9, column 1: found duplicate key lr"),
    ],
)
def test_a_conf_file_that_is_not_yaml_is_named_with_its_line(
    conf_copy, capsys, monkeypatch, appended, message
):
    sgd = conf_copy / "conf/optim/sgd.yaml"
    assert len(sgd.read_text().splitlines()) == 8
    sgd.write_text(sgd.read_text() + appended)
    for main, argv in [(cli_main, ["backprop", "params", "--output", "p.yaml"]),
                       (experiment_main, ["backprop-experiment", "train.epochs=1"])]:  # fmt: skip
        result = in_process(capsys, main, argv, monkeypatch)
        one_line_naming(result, message)


def test_a_tab_in_config_yaml_is_named_when_an_override_picks_a_plugin(
    conf_copy, capsys, monkeypatch
):
    """``optim.name=...`` makes the front doors read the defaults of conf/config.yaml first."""
    config = conf_copy / "conf/config.yaml"
    lines = config.read_text().splitlines(keepends=True)
    at = lines.index("  - optim: sgd\n")
    lines[at] = "\t- optim: sgd\n"
    config.write_text("".join(lines))
    message = f"conf/config.yaml, line {at + 1}, column 1: a tab, which YAML does not allow"
    doors = [(cli_main, "backprop", "params"), (experiment_main, "backprop-experiment")]
    for main, *command in doors:
        result = in_process(capsys, main, [*command, "optim.name=rmsprop"], monkeypatch)
        one_line_naming(result, message)


# A misspelt key: the closest keys of the composed config, through every front door.
OPTIM_KEYS = "(the keys of optim are name, lr, weight_decay, schedule, gamma, step_size, min_lr)"
LRR = f"unknown key optim.lrr; did you mean optim.lr? {OPTIM_KEYS}"
TYPOS = [
    ("optim.lrr=0.1", LRR),
    ("+optim.lrr=0.1", LRR),  # appended: refused by the settings, not by Hydra
    ("lr=0.1", "unknown key lr; did you mean optim.lr? (the top-level keys are "),
    ("+lr=0.1", "unknown key lr; did you mean optim.lr? (the top-level keys are "),
    ("train.epoch=3", "unknown key train.epoch; did you mean train.epochs? (the keys of train"),
    ("modle.hidden_sizes=[32]", "unknown key modle.hidden_sizes; did you mean model.hidden_sizes?"),
    ("optim=adam optim.bet1=0.8", "unknown key optim.bet1; did you mean optim.beta1 or optim.beta"),
    ("optim.lrr=0.1 train.epoch=3", LRR),  # the first, with the keys of the config all the same
]
NOTHING_CLOSE = ("optim.zzz=1", "unknown key optim.zzz; the keys of optim are name, lr, weight")


@pytest.mark.parametrize("case, message", [*TYPOS, NOTHING_CLOSE])
def test_a_misspelt_key_is_named_with_the_closest_keys(conf_copy, capsys, monkeypatch, case,
                                                       message):  # fmt: skip
    doors = [
        (cli_main, ["backprop", "params", "--output", "p.yaml"], "backprop params"),
        (experiment_main, ["backprop-experiment", "train.epochs=1"], "backprop-experiment"),
        (experiment_main, ["backprop-experiment", "--multirun", "optim.lr=0.5,0.1"],
         "backprop-experiment"),
    ]  # fmt: skip
    for main, argv, prog in doors:
        result = in_process(capsys, main, [*argv, *overrides(case)], monkeypatch)
        one_line_naming(result, message)
        assert result.stderr.startswith(f"{prog}: error: {message}")
        assert ("did you mean" in result.stderr) == (case != NOTHING_CLOSE[0])
    assert not (conf_copy / "p.yaml").exists() and not (conf_copy / "mlflow.db").exists()


@pytest.mark.parametrize(
    "params, message",
    [
        ("optim: {lrr: 0.1}", LRR),
        ("lr: 0.1", "unknown key lr; did you mean optim.lr? (the top-level keys are "),
        ("train: {epoch: 3}", "unknown key train.epoch; did you mean train.epochs?"),
        ("modle: {hidden_sizes: [32]}", "unknown key modle.hidden_sizes; did you mean model."),
        ("optim: {name: adam, bet1: 0.8}", "unknown key optim.bet1; did you mean optim.beta1 or"),
        ("optim: {epochs: 3}", "unknown key optim.epochs; did you mean train.epochs? (the keys of"),
        ("optim: {zzz: 1}", "unknown key optim.zzz; the keys of optim are name, lr, weight_decay"),
    ],
)
def test_a_misspelt_key_in_a_params_file_is_named_with_the_closest_keys(
    tmp_path, capsys, monkeypatch, params, message
):
    (tmp_path / "bad.yaml").write_text(params + "\n")
    monkeypatch.chdir(tmp_path)
    argv = ["backprop", "preprocess", "x.csv", "out", "--params", "bad.yaml"]
    result = in_process(capsys, cli_main, argv, monkeypatch)
    one_line_naming(result, message)
    assert result.stderr.startswith(f"backprop preprocess: error: bad.yaml: {message}")


def test_the_dvc_hook_checks_only_dvcs_composition_of_this_conf(tmp_path):
    """The plugin refuses in DVC's compose_and_dump, with our line, what DVC would refuse
    in many; another project's conf/ composed there, and anything valid, it leaves alone."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import ConfigCompositionException

    def compose(conf, overrides):
        output = tmp_path / "params.yaml"
        compose_and_dump(output, str(conf), None, "config", str(REPO / "src"), overrides)
        return output.read_text()

    with pytest.raises(InvalidArgumentError) as refused:
        compose(REPO / "conf", ["optim.lrr=0.1"])
    assert str(refused.value) == LRR
    assert "lr: 0.25\n" in compose(REPO / "conf", ["optim.lr=0.25", "model=relu"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text("lr: 1\n")
    with pytest.raises(ConfigCompositionException):
        compose(other, ["lrr=0.1"])
    assert compose(other, ["lr=2"]) == "lr: 2\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [["-S", "optim.lrr=0.1"], ["-S", "+optim.lrr=0.1"], ["--queue", "-S", "optim.lrr=0.1"]],
)
def test_dvc_exp_run_names_a_misspelt_key_first(project, args):
    params = (project / "params.yaml").read_text()
    result = sh(project, "dvc", "exp", "run", *args, check=False)
    assert result.returncode != 0
    assert result.stdout.strip() == ""  # nothing before our line
    first = result.stderr.strip().splitlines()[0]
    assert first == f"ERROR: {LRR}", result.stderr
    assert (project / "params.yaml").read_text() == params
    assert "No experiment tasks in the queue" in sh(project, "dvc", "queue", "status").stdout


@pytest.mark.slow
def test_dvc_exp_run_composes_valid_overrides_as_before(project):
    """Queued, so composed and stashed but not run: the params DVC composed."""
    import json

    sweeps = [["optim.lr=0.1", "model=relu", "model.hidden_sizes=[32]"],
              ["data=csv", "data.path=data/raw/digits.csv", "data.label_column=label"]]  # fmt: skip
    try:
        for overrides in sweeps:
            sets = [arg for o in overrides for arg in ("-S", o)]
            result = sh(project, "dvc", "exp", "run", "--queue", *sets)
            assert "Queued experiment" in result.stdout, result.stdout + result.stderr
        shown = json.loads(sh(project, "dvc", "exp", "show", "--json").stdout)
        queued = [rev["data"]["params"]["params.yaml"]["data"]
                  for baseline in shown for exp in baseline.get("experiments") or []
                  for rev in exp["revs"]]  # fmt: skip
        assert len(queued) == 2
        relu = next(p for p in queued if p["model"]["name"] == "relu")
        assert relu["optim"]["lr"] == 0.1 and relu["model"]["hidden_sizes"] == [32]
        csv = next(p for p in queued if p["data"]["name"] == "csv")
        assert csv["data"]["label_column"] == "label" and csv["model"]["name"] == "seed"
    finally:
        sh(project, "dvc", "queue", "remove", "--all")
