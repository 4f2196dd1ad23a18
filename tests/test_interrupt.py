"""Signals during a checkpoint: the checkpoint is finished and recorded before they land."""

from __future__ import annotations

import os
import signal

import pytest

from backprop.pipeline.interrupt import Interrupted, deferred, graceful


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_block_lands_after_it(signum):
    done = []
    with pytest.raises(Interrupted) as err, graceful(), deferred():
        os.kill(os.getpid(), signum)
        for _ in range(1000):  # bytecodes enough for a handler to run, had it been one
            done.append(len(done))
        done.append("recorded")
    assert done[-1] == "recorded"
    assert err.value.signal_name == signal.Signals(signum).name


def test_handlers_are_put_back_and_nothing_is_raised_without_a_signal():
    before = signal.getsignal(signal.SIGTERM)
    with graceful():
        inside = signal.getsignal(signal.SIGTERM)
        with deferred():
            pass
        assert signal.getsignal(signal.SIGTERM) is inside
    assert signal.getsignal(signal.SIGTERM) is before
