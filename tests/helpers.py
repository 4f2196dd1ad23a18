"""Shared by the end-to-end tests: a fresh copy of the repository and a shell in it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def venv_env(**env: str) -> dict[str, str]:
    """The environment with the project's venv first on PATH, as `make repro` has it."""
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_DISABLE_TELEMETRY": "true",  # mlflow ui/server/serve: no calls home
        **env,
    }
    if "MLFLOW_TRACKING_URI" not in env:
        environment.pop("MLFLOW_TRACKING_URI", None)
    return environment


def sh(cwd: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run a command with the project's venv first on PATH, as `make repro` does."""
    environment = venv_env(**env)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    """Poll ``url`` until it answers 200, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


@contextlib.contextmanager
def mlflow_service(
    args: list[str], ready_path: str, log: Path, cwd: Path | None = None, **env: str
) -> Iterator[str]:
    """``mlflow <args> --host 127.0.0.1 --port P`` until the block ends; yields its URL.

    It runs with the venv first on PATH (``mlflow models serve`` starts ``uvicorn``) and
    starts a tree of worker processes: the whole process group is stopped.
    """
    port = free_port()
    command = [str(BIN / "mlflow"), *args, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=cwd, env=venv_env(**env),
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(url + ready_path, 120)
        except AssertionError as err:
            raise AssertionError(f"{err}; its log ends:\n{log.read_text()[-3000:]}") from None
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def kill_processes_in(folder: Path) -> None:
    """SIGKILL every process whose working directory is inside ``folder`` (left-over workers)."""
    folder = folder.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


def cached_digits(root: Path) -> Path:
    """The digits CSV the Hydra app's data stage wrote into the project's cache."""
    return next((root / "outputs" / "cache" / "data").glob("*/digits.csv"))
