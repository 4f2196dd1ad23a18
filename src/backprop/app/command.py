"""What a ``backprop`` subcommand is, for the modules that provide one."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass


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


def plain_warnings() -> None:
    """Our own warnings as one line, ``backprop: warning: ...``, not Python's file and code."""
    original = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if f"{os.sep}backprop{os.sep}" in str(filename):
            return f"backprop: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = one_line
