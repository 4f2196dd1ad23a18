"""Output folders of the Hydra app and of reproductions: one per run, never shared."""

from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backprop.app import experiment
from backprop.app.experiment import own_output_folder
from backprop.errors import OutputError
from backprop.pipeline.project import new_folder


def test_folders_claimed_at_once_are_all_different(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_folder(tmp_path, "20-16-18"), range(40)))
    assert len(set(folders)) == 40 and all(f.is_dir() for f in folders)
    assert sorted(f.name for f in folders)[:3] == ["20-16-18", "20-16-18-10", "20-16-18-11"]


def test_each_run_of_the_hydra_app_is_given_a_folder_it_created(tmp_path):
    first = own_output_folder(["optim.lr=0.1"], tmp_path)
    second = own_output_folder(["optim.lr=0.2"], tmp_path)
    sweep = own_output_folder(["--multirun", "optim.lr=0.1,0.2"], tmp_path)
    assert first[0] == "optim.lr=0.1" and first[1].startswith("hydra.run.dir='")
    assert sweep[-1].startswith("hydra.sweep.dir='") and "/outputs/sweeps/" in sweep[-1]
    made = [arg.split("=", 1)[1].strip("'") for arg in (first[-1], second[-1], sweep[-1])]
    assert len(set(made)) == 3
    assert all(Path(m).is_dir() and Path(m).is_relative_to(tmp_path) for m in made)


def test_a_folder_chosen_by_the_user_or_printing_the_config_creates_none(tmp_path):
    argv = ["hydra.run.dir=mine", "optim.lr=0.1"]
    assert own_output_folder(argv, tmp_path) == argv
    assert own_output_folder(["--cfg", "job"], tmp_path) == ["--cfg", "job"]
    assert own_output_folder(["--help"], tmp_path) == ["--help"]
    assert not (tmp_path / "outputs").exists()


def test_a_project_that_cannot_take_a_run_folder_is_one_line(tmp_path, monkeypatch):
    def read_only(parent, name):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(parent))

    monkeypatch.setattr(experiment, "new_folder", read_only)
    with pytest.raises(OutputError, match="the file system is read-only"):
        own_output_folder(["optim.lr=0.1"], tmp_path)
