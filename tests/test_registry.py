"""dvc.yaml against the registry: one declaration of the pipeline, and a file that agrees with it.

The registry (``backprop.pipeline.registry``) is the declaration every front
door follows; ``dvc.yaml`` stays a file people read, and these tests fail when
the two disagree: command, params, outputs, and the source files each stage's
command actually loads (measured by running it and listing ``sys.modules`` at its exit).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backprop.pipeline.registry import STAGES, Stage, stage_key
from backprop.pipeline.settings import Settings
from helpers import REPO, venv_env

SRC = REPO / "src"


def dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def split_deps(deps: list[str]) -> tuple[list[str], list[str]]:
    """(the code the stage depends on, everything else)."""
    code = [d for d in deps if d.startswith("src/")]
    return code, [d for d in deps if not d.startswith("src/")]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_dvc_yaml_declares_each_stage_as_the_registry_does(stage: Stage):
    declared = dvc_stages()[stage.name]
    assert declared["cmd"] == stage.cmd()
    assert declared.get("params", []) == list(stage.params)
    _, data = split_deps(declared["deps"])
    assert data == [p.path for p in stage.inputs] + list(stage.watch)
    tracked = {"outs": [], "metrics": [], "plots": []}
    for port in stage.outputs:
        if not port.files:
            tracked["outs"].append(port.path)
        for name, kind in port.files.items():
            path = f"{port.path}/{name}"
            if kind == "cached plots":  # DVC's default: cached
                tracked["plots"].append(path)
            else:
                tracked[kind].append({path: {"cache": False}})
    for kind, entries in tracked.items():
        assert declared.get(kind, []) == entries, kind


def test_dvc_yaml_has_no_stage_the_registry_lacks():
    assert list(dvc_stages()) == [s.name for s in STAGES]


# What the `backprop` console script runs, plus a note of every module loaded by the end.
# (PYTHONPROFILEIMPORTTIME misses modules loaded through importlib.import_module.)
COMMAND = """
import atexit, os, sys
def note():
    with open(os.environ["LOADED_MODULES"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(note)
from backprop.app.cli import main
sys.argv[0] = "backprop"
sys.exit(main())
"""


def loaded_files(root: Path, stage: Stage) -> set[str]:
    """The package's source files (relative to the repository) that the stage's command loads,
    run as DVC runs it, on a tiny configuration in ``root``."""
    ports = [p.path.replace("${data.path}", "data/raw/digits.csv") for p in stage.ports]
    note = root / f"{stage.name}.modules"
    env = venv_env(LOADED_MODULES=str(note), MLFLOW_TRACKING_URI=f"sqlite:///{root}/t.db")
    command = [sys.executable, "-c", COMMAND, stage.command, *ports]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    files = set()
    for module in note.read_text().split("\n"):
        if module == "backprop" or module.startswith("backprop."):
            path = SRC / Path(*module.split("."))
            path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
            files.add(path.relative_to(REPO).as_posix())
    return files


def covered(files: set[str], deps: list[str]) -> tuple[set[str], list[str]]:
    """(files no dep covers, deps that are not loaded: a file not among ``files``, or a folder
    with a module not among them)."""
    missing = {f for f in files if not any(f == d or f.startswith(d + "/") for d in deps)}
    stale = []
    for dep in deps:
        path = REPO / dep
        inside = (
            {p.relative_to(REPO).as_posix() for p in path.rglob("*.py")} if path.is_dir() else {dep}
        )
        if not inside <= files:
            stale.append(dep)
    return missing, stale


@pytest.mark.slow
def test_each_stage_depends_on_exactly_the_code_its_command_loads(tmp_path):
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"model": {"hidden_sizes": [8]}, "train": {"epochs": 2, "patience": None}})
    )
    problems = []
    for stage in STAGES:
        files = loaded_files(tmp_path, stage)
        code, _ = split_deps(dvc_stages()[stage.name]["deps"])
        missing, stale = covered(files, code)
        if missing or stale:
            problems.append(
                f"stage {stage.name}: not in its deps {sorted(missing)}, listed but not loaded "
                f"{stale}; it loads {sorted(files)}"
            )
    assert not problems, "\n".join(problems)


def test_a_new_key_in_a_section_changes_the_keys_of_its_stage_and_those_after(monkeypatch):
    """Keys are made of whole sections: a setting added to a section counts at once."""
    base = Settings.defaults()
    keys = {s.name: stage_key(s.name, base, "0" * 64) for s in STAGES}
    other = Settings.from_params({"optim": {"name": "momentum"}}, "test")
    assert stage_key("preprocess", other, "0" * 64) == keys["preprocess"]
    assert stage_key("train", other, "0" * 64) != keys["train"]
    resumed = Settings.from_params({"train": {"resume": True}}, "test")  # a run option
    assert stage_key("train", resumed, "0" * 64) == keys["train"]
    split = Settings.from_params({"preprocess": {"seed": 3}}, "test")
    assert stage_key("preprocess", split, "0" * 64) != keys["preprocess"]
    assert stage_key("train", split, "0" * 64) != keys["train"]
    assert stage_key("train", base, "1" * 64) != keys["train"]  # other data


def test_each_conf_file_lists_every_key_of_its_settings():
    """A key left out of conf/ would be settable only with `+key=`, and its value would come
    from code instead of the file people read."""
    from backprop.pipeline.settings import SECTIONS
    from backprop.schema import keys_of

    for path in sorted((REPO / "conf").glob("*/*.yaml")):
        group = path.parent.name
        if group not in SECTIONS:
            continue
        values = yaml.safe_load(path.read_text())
        section = SECTIONS[group](values)
        assert sorted(values) == sorted(keys_of(type(section))), path
