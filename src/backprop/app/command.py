"""What a ``backprop`` subcommand is, for the modules that provide one."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    """A subcommand: its description, its arguments, and what it does (its exit status)."""

    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse reports the message, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


class ReaderGone:
    """Standard output that, once its reader has gone (``| head -3``), drops what follows
    instead of raising BrokenPipeError into whatever printed: a sweep piped to ``head`` still
    finishes its jobs and records its summary."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def plain_warnings() -> None:
    """Our own warnings as one line, ``backprop: warning: ...``, not Python's file and code."""
    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if f"{os.sep}backprop{os.sep}" in str(filename):
            return f"backprop: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
