"""Compare two things on a noisy machine: interleaved rounds, the median ratio and its spread.

On these shared 2-core machines the same measurement swings up to 2x from one
minute to the next, so timing A, then B, can flip the verdict.  Here A and B
run one after the other in every round, for several rounds in one run, the
order swapped each round (A B, B A, A B...) so that neither always goes first;
each round gives one ratio A/B, measured within seconds.  The report is the
median of each one's times and the median of the per-round ratios, with their
spread (min-max and the interquartile range): a spread that straddles 1 means
no verdict.

A callable returns the seconds it measured itself (e.g. an epoch timed inside
a worker process) or None, and then its wall time is taken here.

    from interleave import interleave
    result = interleave({"numpy": run_a, "torch": run_b}, rounds=5)
    print(result.describe())   # and result.as_dict() for --json
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Interleaved:
    """The times of two things, one of each per round, in the order run."""

    names: tuple[str, str]
    times: dict[str, list[float]]  # name -> seconds, round by round
    order: list[tuple[str, str]]  # which ran first, round by round

    @property
    def rounds(self) -> int:
        return len(self.ratios)

    @property
    def ratios(self) -> list[float]:
        """A / B of each round."""
        a, b = self.names
        return [x / y for x, y in zip(self.times[a], self.times[b])]

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    @property
    def ratio(self) -> float:
        """The median of the per-round ratios A / B (not the ratio of the medians)."""
        return statistics.median(self.ratios)

    @property
    def spread(self) -> dict[str, float]:
        """min, max and quartiles of the per-round ratios."""
        ratios = sorted(self.ratios)
        if len(ratios) > 1:
            q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        else:
            q1 = q3 = ratios[0]
        return {"min": ratios[0], "q1": q1, "q3": q3, "max": ratios[-1]}

    def as_dict(self) -> dict:
        a, b = self.names
        return {
            "rounds": self.rounds,
            "names": list(self.names),
            f"{a}_median_seconds": self.median(a),
            f"{b}_median_seconds": self.median(b),
            "ratio_median": self.ratio,
            "ratio_spread": self.spread,
            "ratios": self.ratios,
            "seconds": {name: self.times[name] for name in self.names},
            "first": [first for first, _ in self.order],
        }

    def describe(self, unit: str = "s") -> str:
        """Lines for a table: each median, then the median ratio with its spread."""
        a, b = self.names
        s = self.spread
        width = max(len(a), len(b))
        return "\n".join(
            [
                f"  {a:<{width}}  median {self.median(a):8.3f} {unit}  "
                f"(min {min(self.times[a]):.3f}, max {max(self.times[a]):.3f})",
                f"  {b:<{width}}  median {self.median(b):8.3f} {unit}  "
                f"(min {min(self.times[b]):.3f}, max {max(self.times[b]):.3f})",
                f"  ratio {a} / {b}: median {self.ratio:.2f} over {self.rounds} interleaved "
                f"rounds (IQR {s['q1']:.2f}-{s['q3']:.2f}, min-max {s['min']:.2f}-{s['max']:.2f})",
            ]
        )


def interleave(
    runs: dict[str, Callable[[], float | None]],
    rounds: int,
    warmup: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Interleaved:
    """Run the two callables of ``runs`` alternately for ``rounds`` rounds.

    ``warmup`` rounds first run both without recording them.  Recorded round i (from 0)
    runs A then B when i is even, B then A when odd.  ``progress`` (e.g. ``print`` to stderr) hears
    one line per round.
    """
    if len(runs) != 2:
        raise ValueError(f"interleave compares two things, got {len(runs)}")
    if rounds < 1:
        raise ValueError("at least one round")
    names = tuple(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    order = []
    for i in range(warmup + rounds):
        first, second = names if (i - warmup) % 2 == 0 else names[::-1]
        got = {name: _timed(runs[name]) for name in (first, second)}
        if i < warmup:
            continue
        order.append((first, second))
        for name in names:
            times[name].append(got[name])
        if progress:
            a, b = names
            progress(
                f"round {i - warmup + 1}/{rounds}: {a} {got[a]:.3f} s, {b} {got[b]:.3f} s, "
                f"ratio {got[a] / got[b]:.2f}"
            )
    return Interleaved(names, times, order)  # type: ignore[arg-type]


def _timed(fn: Callable[[], float | None]) -> float:
    start = time.perf_counter()
    measured = fn()
    seconds = time.perf_counter() - start if measured is None else float(measured)
    if not seconds > 0:
        raise ValueError(f"a measurement of {seconds} s")
    return seconds
