"""Ctrl-C and a scheduler's SIGTERM end training the same, orderly way.

:func:`graceful` turns SIGTERM into :class:`Interrupted` (a KeyboardInterrupt,
as Ctrl-C raises), so ``finally`` blocks run and the MLflow run is marked
KILLED; :func:`deferred` holds both signals back while a checkpoint is being
written, so the checkpoint in progress is finished, and known, before the signal lands.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training was stopped by a signal; ``signal_name`` says which."""

    def __init__(self, signal_name: str = "SIGINT") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name

    @property
    def exit_status(self) -> int:
        return 128 + getattr(signal, self.signal_name, signal.SIGINT)


def _raise(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then arrive.

    The handlers are swapped for one that only notes the signal, rather than the signals
    blocked: Python runs a handler some bytecodes after the signal came, so one that came
    just before the block would still raise inside it, between writing a checkpoint and
    recording which epoch it holds.  At the end the noted signal is raised again, for the
    handlers of before.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])
