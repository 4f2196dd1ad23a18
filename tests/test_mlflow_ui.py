"""The MLflow UI, in a real browser: a sweep's runs and their comparison are visible.

Starts `mlflow ui` on 127.0.0.1 over the tracking DB of a small sweep, drives
Debian's chromium with Playwright, and stops every process it started.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import fresh_copy, mlflow_client, mlflow_service, sh

# The MLflow UI server, driven in chromium.
pytestmark = pytest.mark.slow

BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory):
    root = fresh_copy(tmp_path_factory.mktemp("ui"))
    sh(root, "backprop-experiment", "--multirun", "train.epochs=2", "train.patience=null",
       "model.hidden_sizes=[16]", "optim.lr=1.0,0.3")  # fmt: skip
    return root


@pytest.fixture
def mlflow_ui(sweep_db, tmp_path):
    backend = f"sqlite:///{sweep_db / 'mlflow.db'}"
    with mlflow_service(["ui", "--backend-store-uri", backend], "/", tmp_path / "ui.log") as url:
        yield url


def test_runs_page_and_compare_view_show_the_sweep(sweep_db, mlflow_ui, chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    client = mlflow_client(sweep_db)
    experiment = client.get_experiment_by_name("backprop")
    jobs = client.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId != ''")
    jobs = [j for j in jobs if j.data.tags.get("mlflow.parentRunId")]
    assert len(jobs) == 2
    names = [j.info.run_name for j in jobs]
    ids = [j.info.run_id for j in jobs]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs",
                      wait_until="domcontentloaded")  # fmt: skip
            # The jobs sit folded under their sweep's parent row: unfold it.
            parent = page.locator("[col-id='attributes.`Run Name`']").filter(has_text="sweep:")
            parent.first.wait_for(timeout=90_000)
            parent.first.locator("button").first.click()
            page.get_by_text(names[0]).first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
            runs_text = page.inner_text("body")
            for name in names:
                assert name in runs_text

            runs = ",".join(f'"{i}"' for i in ids)
            compare = browser.new_page(viewport={"width": 1600, "height": 1400})
            compare.goto(f"{mlflow_ui}/#/compare-runs?runs=[{runs}]"
                         f'&experiments=["{experiment.experiment_id}"]',
                         wait_until="domcontentloaded")  # fmt: skip
            compare.get_by_text("optim.lr").first.wait_for(timeout=90_000)
            compare.get_by_text("kept_val_accuracy").first.wait_for(timeout=60_000)
            compare.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
            text = compare.inner_text("body")
        finally:
            browser.close()
    for expected in ("optim.lr", "kept_val_accuracy", "test_accuracy", "1.0", "0.3", *names):
        assert expected in text, expected
    assert (tmp_path / "runs.png").stat().st_size > 10_000
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    for shot in ("runs.png", "compare.png"):  # kept for people to look at
        target = Path(os.environ.get("BACKPROP_SCREENSHOTS", tmp_path)) / shot
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((tmp_path / shot).read_bytes())
