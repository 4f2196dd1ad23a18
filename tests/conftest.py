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
