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
