"""The epoch benchmark keeps working: a smoke run, its figures checked for consistency.

No time is asserted (machines here are shared); only that every figure is there,
positive, and that the ratios are the ratios of the figures printed beside them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_epoch.py"


def test_bench_epoch_smoke_reports_every_figure(torch):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
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
    assert report["ratio_vs_torch"] == pytest.approx(
        report["seconds_per_epoch"] / report["torch_seconds_per_epoch"]
    )
    assert report["roofline_fraction"] == pytest.approx(
        report["roofline_seconds"] / report["seconds_per_epoch"]
    )
    flops = 2 * (784 * 256 + 256 * 64 + 64 * 10) * 2 + 2 * (256 * 64 + 64 * 10)
    assert flops == pytest.approx(905e3, rel=0.01)
    assert report["gflops"] == pytest.approx(
        flops * report["samples"] / report["seconds_per_epoch"] / 1e9
    )


def test_bench_preprocess_smoke_reports_every_figure(tmp_path):
    bench = BENCH.parent / "bench_preprocess.py"
    csv = tmp_path / "synthetic.csv"
    result = subprocess.run(
        [sys.executable, str(bench), "--smoke", "--json", "--csv", str(csv)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 2000
    assert csv.read_text().count("\n") == 2001
    for key in ("seconds", "pandas_read_seconds", "ratio_vs_pandas_read", "peak_rss_mb"):
        assert report[key] > 0, key
    assert report["ratio_vs_pandas_read"] == pytest.approx(
        report["seconds"] / report["pandas_read_seconds"]
    )


def test_bench_predict_smoke_reports_every_figure():
    bench = BENCH.parent / "bench_predict.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--smoke", "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 2000
    for key in ("seconds", "pandas_read_seconds", "peak_rss_mb", "pandas_peak_rss_mb"):
        assert report[key] > 0, key
    assert report["rows_per_second"] == pytest.approx(2000 / report["seconds"])
    assert report["ratio_vs_pandas_read"] == pytest.approx(
        report["seconds"] / report["pandas_read_seconds"]
    )
