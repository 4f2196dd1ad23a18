import errno
import os

import pytest


@pytest.fixture
def torch():
    """PyTorch, for reference tests only. CI installs it, so there a missing torch fails."""
    try:
        import torch
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("torch is not installed, but CI must run the reference tests")
        pytest.skip("torch is not installed (pip install torch==2.13.0)")
    return torch


@pytest.fixture
def chromium():
    """The path of Debian's chromium, for browser tests. CI installs it (.ci/run)."""
    import shutil

    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, but CI must run the browser tests")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture
def ray_launcher():
    """hydra-ray-launcher, from the `ray` extra. CI installs it."""
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("hydra-ray-launcher is not installed, but CI must run the Ray test")
        pytest.skip("hydra-ray-launcher is not installed (pip install -e '.[ray]')")


POSTGRES_BIN = "/usr/lib/postgresql/15/bin"


@pytest.fixture
def postgres_tools():
    """PostgreSQL's server programs and the psycopg2 driver (the `postgres` extra)."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("psycopg2 is not installed, but CI must run the tracking-server test")
        pytest.skip("psycopg2 is not installed (pip install -e '.[postgres]')")
    if not os.path.exists(f"{POSTGRES_BIN}/initdb"):
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not in {POSTGRES_BIN}, but CI must run this test")
        pytest.skip(f"PostgreSQL is not in {POSTGRES_BIN}")
    return POSTGRES_BIN


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri(monkeypatch):
    """``mlflow.set_tracking_uri``, which some tests call, writes the URI into the process's
    environment, where the next test's ``backprop`` would take it for the user's choice."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def full_disk_for(monkeypatch):
    """``install(test)``: the files whose temporary's path passes ``test`` take ``after``
    writes, then fail with ENOSPC (as the disk fills up)."""

    class NoSpace:
        def __init__(self, file) -> None:
            self.file = file

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.file.close()

        def __getattr__(self, name: str):
            return getattr(self.file, name)

    def install(test, after: int = 0) -> None:
        real, opened = os.fdopen, []

        def fdopen(fd, *args, **kwargs):
            file = real(fd, *args, **kwargs)
            if not test(os.readlink(f"/proc/self/fd/{fd}")):
                return file
            opened.append(fd)
            return file if len(opened) <= after else NoSpace(file)

        monkeypatch.setattr(os, "fdopen", fdopen)

    return install
