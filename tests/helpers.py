"""Shared by the end-to-end tests: a fresh copy of the repository and a shell in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cwd: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run a command with the project's venv first on PATH, as `make repro` does."""
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    if "MLFLOW_TRACKING_URI" not in env:
        environment.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(args, cwd=cwd, env=environment, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def fresh_copy(dest: Path) -> Path:
    """The files git tracks, copied into ``dest`` and committed to a new repository."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(dest, *git, "init", "-q")
    sh(dest, *git, "add", "-A")
    sh(dest, *git, "commit", "-qm", "copy")
    return dest


def mlflow_client(root: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
