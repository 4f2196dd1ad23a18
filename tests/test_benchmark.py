"""The benchmarks keep working: smoke runs, their figures checked for consistency.

No time is asserted (machines here are shared); only that every figure is there,
positive, that comparisons were interleaved over the rounds asked for, and that
each ratio is the median of the per-round ratios reported beside it, inside
their spread.
"""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_epoch.py"
sys.path.insert(0, str(BENCH.parent))
from interleave import interleave  # noqa: E402


def smoke_report(script: str, *args: str) -> dict:
    """The JSON figures of ``benchmarks/<script> --smoke --json [args]``, which must succeed."""
    result = subprocess.run(
        [sys.executable, str(BENCH.parent / script), "--smoke", "--json", *args],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_interleaved(compared: dict, ratio: float, spread: dict, rounds: int) -> None:
    """One time of each per round, alternating which ran first, and the median ratio."""
    a, b = compared["names"]
    assert compared["rounds"] == rounds
    assert len(compared["seconds"][a]) == len(compared["seconds"][b]) == rounds
    assert all(t > 0 for name in (a, b) for t in compared["seconds"][name])
    assert compared["first"] == [a, b] * (rounds // 2) + [a] * (rounds % 2)
    ratios = [x / y for x, y in zip(compared["seconds"][a], compared["seconds"][b])]
    assert compared["ratios"] == pytest.approx(ratios)
    assert ratio > 0
    assert ratio == pytest.approx(statistics.median(ratios))
    assert spread["min"] == pytest.approx(min(ratios))
    assert spread["max"] == pytest.approx(max(ratios))
    assert spread["min"] <= spread["q1"] <= ratio <= spread["q3"] <= spread["max"]


def test_interleave_alternates_and_reports_the_median_ratio():
    calls = []
    times = {"a": iter([2.0, 9.0, 3.0, 4.0, 1.0]), "b": iter([1.0, 1.0, 1.0, 2.0, 1.0])}

    def run(name):
        def measured():
            calls.append(name)
            return next(times[name])

        return measured

    result = interleave({"a": run("a"), "b": run("b")}, rounds=4, warmup=1)
    assert calls == ["b", "a", "a", "b", "b", "a", "a", "b", "b", "a"]  # a warm-up round first
    assert result.rounds == 4
    assert result.ratios == [9.0, 3.0, 2.0, 1.0]  # the warm-up round (2/1) left out
    assert result.ratio == 2.5
    assert result.median("a") == 3.5 and result.median("b") == 1.0
    assert result.spread["min"] == 1.0 and result.spread["max"] == 9.0
    assert "median 2.50 over 4 interleaved rounds" in result.describe()
    assert_interleaved(result.as_dict(), result.ratio, result.spread, 4)


def test_interleave_times_a_callable_that_returns_nothing():
    result = interleave({"x": lambda: None, "y": lambda: 0.5}, rounds=1)
    assert 0 < result.times["x"][0] < 0.5
    assert result.times["y"] == [0.5]


def test_bench_epoch_smoke_reports_every_figure(torch):
    report = smoke_report("bench_epoch.py")
    assert report["epochs"] == 4 and report["rounds"] == 3
    for key in (
        "seconds_per_epoch",
        "torch_seconds_per_epoch",
        "ratio_vs_torch",
        "gflops",
        "peak_gflops",
        "roofline_fraction",
        "peak_rss_mb",
    ):
        assert report[key] is not None and report[key] > 0, key
    compared = report["interleaved"]
    assert compared["names"] == ["backprop", "torch"]
    assert_interleaved(compared, report["ratio_vs_torch"], report["ratio_vs_torch_spread"], 3)
    assert report["seconds_per_epoch"] == statistics.median(compared["seconds"]["backprop"])
    assert report["torch_seconds_per_epoch"] == statistics.median(compared["seconds"]["torch"])
    assert report["roofline_fraction"] == pytest.approx(
        report["roofline_seconds"] / report["seconds_per_epoch"]
    )
    flops = 2 * (784 * 256 + 256 * 64 + 64 * 10) * 2 + 2 * (256 * 64 + 64 * 10)
    assert flops == pytest.approx(905e3, rel=0.01)
    assert report["gflops"] == pytest.approx(
        flops * report["samples"] / report["seconds_per_epoch"] / 1e9
    )


def test_bench_preprocess_smoke_reports_every_figure(tmp_path):
    csv = tmp_path / "synthetic.csv"
    report = smoke_report("bench_preprocess.py", "--csv", str(csv))
    assert report["rows"] == 2000
    assert csv.read_text().count("\n") == 2001
    for key in ("seconds", "pandas_read_seconds", "ratio_vs_pandas_read", "peak_rss_mb"):
        assert report[key] > 0, key
    assert report["ratio_vs_pandas_read"] == pytest.approx(
        report["seconds"] / report["pandas_read_seconds"]
    )


def test_bench_predict_smoke_reports_every_figure():
    report = smoke_report("bench_predict.py")
    assert report["rows"] == 2000
    for key in ("seconds", "pandas_read_seconds", "peak_rss_mb", "pandas_peak_rss_mb"):
        assert report[key] > 0, key
    assert report["rows_per_second"] == pytest.approx(2000 / report["seconds"])
    assert report["ratio_vs_pandas_read"] == pytest.approx(
        report["seconds"] / report["pandas_read_seconds"]
    )


@pytest.mark.slow
def test_bench_sweep_smoke_interleaves_the_launchers():
    report = smoke_report("bench_sweep.py")
    assert report["jobs"] == 2 and report["rounds"] == 2
    compared = report["interleaved"]
    assert compared["names"] == ["sequential", "parallel"]
    assert_interleaved(compared, report["speedup"], report["speedup_spread"], 2)
    assert report["sequential_seconds"] == statistics.median(compared["seconds"]["sequential"])
    for key in ("parallel_seconds", "seconds_per_job_after_first", "training_alone_seconds"):
        assert report[key] > 0, key
