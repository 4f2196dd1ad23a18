"""The project around the working directory: its root, its outputs, its git state.

The root is the folder holding ``dvc.yaml``, also from DVC's queued-experiment
copies in ``<root>/.dvc/tmp/exps/``, so that every run of one project tracks
into one ``mlflow.db`` and shares one cache, wherever DVC ran it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

OUTPUTS = "outputs"  # git-ignored: the Hydra app's runs and sweeps, caches, checkpoints
# The MLflow run of the DVC pipeline's execution: the train stage opens it, evaluate completes it.
RUN_FILE = Path("data/.mlflow-run")


def project_root(start: Path | None = None) -> Path:
    """The folder holding dvc.yaml (or conf/config.yaml), outside any ``.dvc/tmp/exps`` copy."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):  # a queued experiment runs in <root>/.dvc/tmp/exps/...
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() or (folder / "conf" / "config.yaml").is_file():
            return folder
    return here


def conf_dir(start: Path | None = None) -> Path:
    """The project's Hydra configuration folder."""
    return project_root(start) / "conf"


def cache_dir(root: Path | None = None) -> Path:
    """Where the Hydra app keeps stage outputs that jobs share (the data, prepared splits)."""
    return (root or project_root()) / OUTPUTS / "cache"


def new_folder(parent: Path, name: str) -> Path:
    """``parent/name`` created by this process alone: ``name-2``, ``name-3``... if taken.

    Two runs started in the same second must not share a folder: one would evaluate
    the other's model.  ``mkdir`` without ``exist_ok`` is atomic, so no two processes
    can both succeed on one name.
    """
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        folder = parent / (name if n == 1 else f"{name}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{parent / name}: 9,999 folders of that name already exist")


def git_state(root: Path) -> dict[str, str]:
    """The commit checked out and whether tracked files have changes ("unknown" without git)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": commit or "unknown",
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
    }
