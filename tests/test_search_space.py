"""The search's settings and space, read without running a trial (fast)."""

from __future__ import annotations

import shutil

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from backprop.app.search import parse_space, search_settings, study_name
from backprop.errors import ConfigError
from backprop.pipeline.settings import conf_digest
from helpers import REPO


def test_the_grammar_of_hydra_sweeps_maps_onto_optuna_distributions():
    space = parse_space(
        ["optim.lr=tag(log, interval(0.001, 1.0))", "train.batch_size=choice(16,32,64)",
         "model.hidden_sizes=choice([256,64],[128])", "train.epochs=tag(int, interval(5, 50))",
         "preprocess.seed=range(0, 3)", "optim.momentum=0.5,0.9", "train.patience=null"],
        {}, grid=False,
    )  # fmt: skip
    d = space.distributions
    assert d["optim.lr"] == FloatDistribution(0.001, 1.0, log=True)
    assert d["train.batch_size"] == CategoricalDistribution([16, 32, 64])
    assert d["model.hidden_sizes"] == CategoricalDistribution(["[256,64]", "[128]"])
    assert d["train.epochs"] == IntDistribution(5, 50)
    assert d["preprocess.seed"] == CategoricalDistribution([0, 1, 2])
    assert d["optim.momentum"] == CategoricalDistribution([0.5, 0.9])
    assert space.fixed == ["train.patience=null"]
    # a trial's overrides read back as Hydra reads them, the list as a list
    trial = {"optim.lr": 0.0123, "train.batch_size": 32, "model.hidden_sizes": "[256,64]",
             "train.epochs": 7, "preprocess.seed": 1, "optim.momentum": 0.9}  # fmt: skip
    assert space.overrides(trial) == [
        "train.patience=null", "optim.lr=0.0123", "train.batch_size=32",
        "model.hidden_sizes=[256,64]", "train.epochs=7", "preprocess.seed=1",
        "optim.momentum=0.9",
    ]  # fmt: skip
    assert space.name(trial).startswith("lr=0.0123 batch_size=32 hidden_sizes=[256,64]")


def test_the_command_line_wins_over_the_params_block():
    space = parse_space(["optim.lr=interval(0.1, 0.5)"],
                        {"optim.lr": "interval(0.01, 1.0)", "train.batch_size": "choice(8,16)"},
                        grid=False)  # fmt: skip
    assert space.distributions["optim.lr"] == FloatDistribution(0.1, 0.5)
    assert space.distributions["train.batch_size"] == CategoricalDistribution([8, 16])
    fixed = parse_space(["train.batch_size=16", "optim.lr=interval(0.1, 0.5)"],
                        {"train.batch_size": "choice(8,16)"}, grid=False)  # fmt: skip
    assert "train.batch_size" not in fixed.distributions
    assert fixed.fixed == ["train.batch_size=16"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["optim.lr=interval(1.0, 0.1)"], "empty interval"),
        (["optim.lr=interval(0.5, 0.5)"], "empty interval"),
        (["optim.lr=tag(log, interval(0, 1))"], "a log scale needs low > 0"),
        (["train.epochs=tag(int, interval(1.5, 9))"], "needs whole-number ends"),
        (["optim.lr=tag(cube, interval(1, 2))"], "unknown tag 'cube'"),
        (["train.seed=range(5, 1)"], "empty range"),
        (["train.seed=choice(1,1)"], "a choice is listed twice"),
        (["model=glob(*)"], "glob() is not a search space"),
        (["optim.lr=0.1"], "nothing to search"),
        (["hydra.launcher.n_jobs=1,2"], "a hydra.* key cannot be searched"),
        (["optim.lr=interval(0.1, 1"], "optim.lr=interval(0.1, 1"),
    ],
)
def test_what_optuna_cannot_search_is_one_line(arguments, message):
    with pytest.raises(ConfigError) as caught:
        parse_space(arguments, {}, grid=False)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_grid_takes_choices_only():
    parse_space(["train.batch_size=choice(16,32)", "train.seed=range(0,2)"], {}, grid=True)
    with pytest.raises(ConfigError, match="the grid sampler needs values to try"):
        parse_space(["optim.lr=interval(0.1, 1)"], {}, grid=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sampler": {"name": "tpee"}}, "hydra.sweeper.sampler.name must be one of tpe, random"),
        ({"pruner": {"name": "meridian"}}, "hydra.sweeper.pruner.name must be one of median"),
        ({"n_trials": 0}, "hydra.sweeper.n_trials must be an integer >= 1, got 0"),
        ({"metric": "accuracy"}, "hydra.sweeper.metric must be one of val_accuracy, val_loss"),
        ({"repeats": -1}, "hydra.sweeper.repeats must be an integer >= 1"),
        ({"n_trail": 5}, "n_trail"),
        ({"params": [1, 2]}, "hydra.sweeper.params must map keys to search spaces"),
    ],
)
def test_the_sweepers_settings_are_checked_naming_the_key(values, message):
    with pytest.raises(ConfigError) as caught:
        search_settings(values)
    assert message in str(caught.value)


def test_a_study_is_named_after_what_it_searches_not_how_long():
    space = parse_space(["optim.lr=interval(0.1, 1)", "train.epochs=5"], {}, grid=False)
    a = study_name(search_settings({"n_trials": 5}), space, "backprop")
    b = study_name(search_settings({"n_trials": 50, "n_jobs": 2}), space, "backprop")
    assert a == b and a.startswith("backprop-")
    other = parse_space(["optim.lr=interval(0.1, 1)", "train.epochs=6"], {}, grid=False)
    assert study_name(search_settings({}), other, "backprop") != a
    assert study_name(search_settings({"metric": "val_loss"}), space, "backprop") != a
    assert study_name(search_settings({"study_name": "mine"}), space, "backprop") == "mine"
    # spelling aside: spaces in the grammar do not make another study
    spaced = parse_space(["optim.lr=interval( 0.1 ,1 )", "train.epochs=5"], {}, grid=False)
    assert study_name(search_settings({}), spaced, "backprop") == a


def test_the_sweepers_conf_files_do_not_make_params_yaml_stale(tmp_path):
    conf = shutil.copytree(REPO / "conf", tmp_path / "conf")
    before = conf_digest(conf)
    sweeper = conf / "hydra/sweeper/optuna.yaml"
    sweeper.write_text(sweeper.read_text().replace("n_trials: 20", "n_trials: 30"))
    assert conf_digest(conf) == before
    sgd = conf / "optim/sgd.yaml"
    sgd.write_text(sgd.read_text() + "\n# a comment\n")
    assert conf_digest(conf) != before
