"""The MLflow UI, in a real browser: a sweep's runs, their comparison and a metric overlaid.

Starts `mlflow ui` on 127.0.0.1 over the tracking DB of a small sweep, drives
Debian's chromium with Playwright through the clicks README's "Compare runs" gives
(runs page, expand the sweep, select its jobs, Compare, diff only, `val_loss`), and
stops every process it started.  The screenshots are those README shows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from helpers import fresh_copy, mlflow_client, mlflow_service, sh

# The MLflow UI server, driven in chromium.
pytestmark = pytest.mark.slow

BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
RATES = ("1.0", "0.3", "0.1")  # the sweep's jobs, in launch order
HEADLINE = ("kept_val_accuracy", "test_accuracy")
SHOTS = ("runs.png", "compare.png", "val_loss.png")
WIDTH = 1500
WAIT = 60_000  # ms for any one element: the UI loads in seconds, a busy machine is slower
# MLflow 3.17 opens its Assistant panel over a third of the page on a browser's first
# visit; these are the keys it remembers that in.  Should they change, the panel is
# closed by its button instead (close_assistant).
NO_ASSISTANT = """
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
"""
# The rows of the tables on the compare page, as text: {first cell: [the others]}.
TABLE_ROWS = """t => Object.fromEntries([...t.querySelectorAll('tr')].map(
    tr => [...tr.children].map(c => c.innerText.trim())).map(r => [r[0], r.slice(1)]))"""
# Its metrics are two virtualised grids side by side, names and values: their cells
# with where they are, to be paired by height.
GRID_CELLS = """s => [...s.querySelectorAll('[role=grid]')].map(g =>
    [...g.querySelectorAll('[role=rowgroup] > *')].map(c => {
        const r = c.getBoundingClientRect();
        return {text: c.innerText.trim(), x: r.left, y: r.top};
    }))"""


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory):
    root = fresh_copy(tmp_path_factory.mktemp("ui"))
    sh(root, "backprop-experiment", "--multirun", "train.epochs=3", "train.patience=null",
       "model.hidden_sizes=[16]", f"optim.lr={','.join(RATES)}")  # fmt: skip
    return root


@pytest.fixture
def mlflow_ui(sweep_db, tmp_path):
    backend = f"sqlite:///{sweep_db / 'mlflow.db'}"
    with mlflow_service(["ui", "--backend-store-uri", backend], "/", tmp_path / "ui.log") as url:
        yield url


def test_runs_page_compare_view_and_val_loss_chart_show_the_sweep(
    sweep_db, mlflow_ui, chromium, tmp_path
):
    from playwright.sync_api import sync_playwright

    client = mlflow_client(sweep_db)
    experiment = client.get_experiment_by_name("backprop")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    jobs.sort(key=lambda r: int(r.data.tags["sweep_job"]))
    names = [j.info.run_name for j in jobs]
    assert names == [f"lr={rate}" for rate in RATES]  # what differs, in launch order
    assert parent.info.run_name == f"sweep: lr={','.join(RATES)}"
    history = client.get_metric_history
    val_loss = {j.info.run_name: [(m.step, m.value) for m in history(j.info.run_id, "val_loss")]
                for j in jobs}  # fmt: skip
    assert all(len(history) == 3 for history in val_loss.values()), val_loss

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport={"width": WIDTH, "height": 1000})
            context.add_init_script(NO_ASSISTANT)
            page = context.new_page()
            runs_page(page, mlflow_ui, experiment.experiment_id, parent, jobs, tmp_path)
            compare_page(page, jobs, tmp_path)
            val_loss_page(page, val_loss, tmp_path)
        finally:
            browser.close()

    for png in SHOTS:  # kept for people to look at
        assert (tmp_path / png).stat().st_size > 10_000, png
        target = Path(os.environ.get("BACKPROP_SCREENSHOTS", tmp_path)) / png
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((tmp_path / png).read_bytes())


def runs_page(page, url, experiment_id, parent, jobs, tmp_path):
    """The experiment's runs: the sweep's row, unfolded, its jobs named by what differs."""
    from playwright.sync_api import expect

    page.goto(f"{url}/#/experiments/{experiment_id}/runs", wait_until="domcontentloaded")
    grid = page.locator(".ag-root")
    run_name = "[col-id='attributes.`Run Name`']"
    parent_cell = grid.locator(f".ag-row[row-id='{parent.info.run_id}'] {run_name}")
    expect(parent_cell.get_by_role("link")).to_have_text(parent.info.run_name, timeout=2 * WAIT)
    close_assistant(page)
    # The jobs sit folded under their sweep's row: unfold it.
    for job in jobs:
        expect(grid.get_by_text(job.info.run_name, exact=True)).to_have_count(0, timeout=WAIT)
    parent_cell.get_by_role("button").first.click()
    for job in jobs:
        cell = grid.locator(f".ag-row[row-id='{job.info.run_id}'] {run_name}")
        expect(cell.get_by_role("link")).to_have_text(job.info.run_name, timeout=WAIT)

    # Columns: the swept param and the headline metrics in, the dataset's column out.
    page.get_by_role("button", name="Columns").click()
    search = page.get_by_placeholder("Search columns")
    menu = search.locator("xpath=ancestor::*[.//*[@title='optim.lr']][1]")
    for column in ("Dataset", "optim.lr", *HEADLINE):
        menu.get_by_title(column, exact=True).click(timeout=WAIT)
    page.keyboard.press("Escape")
    expect(search).to_be_hidden(timeout=WAIT)
    page.evaluate("document.activeElement.blur()")  # no focus ring in the screenshot
    expect(grid.locator("[col-id='attributes.`Dataset`']")).to_have_count(0, timeout=WAIT)
    for run in (parent, *jobs):
        row = grid.locator(f".ag-row[row-id='{run.info.run_id}']")
        expect(row.locator("[col-id='params.`optim.lr`']")).to_have_text(
            run.data.params["optim.lr"], timeout=WAIT
        )
        for metric in HEADLINE:
            cell = row.locator(f"[col-id='metrics.`{metric}`']")
            expect(cell).not_to_be_empty(timeout=WAIT)
            shown = float(cell.inner_text())
            assert shown == pytest.approx(run.data.metrics[metric], abs=5e-4), (run, metric)
    # The sweep's own row is its best job's.
    best = max(jobs, key=lambda j: j.data.metrics["kept_val_accuracy"])
    assert parent.data.params["optim.lr"] == best.data.params["optim.lr"]

    rows = [grid.locator(f".ag-row[row-id='{j.info.run_id}']").first for j in jobs]
    bottom = max(box["y"] + box["height"] for box in (r.bounding_box() for r in rows))
    shot(page, tmp_path / "runs.png", bottom + 24)


def compare_page(page, jobs, tmp_path):
    """Select the jobs, Compare: the swept param and the headline metrics side by side."""
    from playwright.sync_api import expect

    for job in jobs:
        page.locator(f".ag-row[row-id='{job.info.run_id}'] input.ag-checkbox-input").check()
    page.set_viewport_size({"width": WIDTH, "height": 1500})  # the tables unscrolled
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text(f"Comparing {len(jobs)} Runs")).to_be_visible(timeout=2 * WAIT)
    close_assistant(page)
    page.get_by_role("button", name="Visualizations").click()  # fold the plots away

    details = page.locator("table").filter(has=page.get_by_text("Run Name:", exact=True))
    expect(details).to_be_visible(timeout=WAIT)
    columns = details.first.evaluate(TABLE_ROWS)["Run Name:"]  # the runs' order
    assert sorted(columns) == sorted(j.info.run_name for j in jobs), columns
    by_name = {j.info.run_name: j for j in jobs}
    ordered = [by_name[name] for name in columns]

    params_switch = page.get_by_role("switch", name="Parameters - Show diff only")
    params = params_switch.locator("xpath=ancestor::*[.//table][1]").locator("table")
    expect(params.get_by_text("train.epochs", exact=True)).to_be_visible(timeout=WAIT)
    rows = params.evaluate(TABLE_ROWS)
    assert rows["optim.lr"] == [j.data.params["optim.lr"] for j in ordered], rows["optim.lr"]
    assert rows["train.epochs"] == ["3"] * 3

    metrics_switch = page.get_by_role("switch", name="Metrics - Show diff only")
    metrics = metrics_switch.locator("xpath=ancestor::*[.//*[@role='grid']][1]")
    expect(metrics.get_by_role("link", name="kept_epoch", exact=True)).to_be_visible(timeout=WAIT)

    # Diff only: what all three share goes, the swept param and the scores stay.
    for switch in (params_switch, metrics_switch,
                   page.get_by_role("switch", name="Tags - Show diff only")):  # fmt: skip
        switch.click()
        expect(switch).to_have_attribute("aria-checked", "true", timeout=WAIT)
    expect(params.get_by_text("train.epochs", exact=True)).to_have_count(0, timeout=WAIT)
    expect(params.get_by_text("optim.lr", exact=True)).to_be_visible(timeout=WAIT)
    expect(metrics.get_by_role("link", name="kept_epoch", exact=True)).to_have_count(
        0, timeout=WAIT
    )
    assert list(params.evaluate(TABLE_ROWS)) == ["optim.lr"]

    shown = metric_values(metrics)
    for metric in HEADLINE:
        assert metric in shown, (metric, shown)
        values = [float(v) for v in shown[metric]]  # as the UI rounds them: 0.922
        expected = [j.data.metrics[metric] for j in ordered]
        assert values == pytest.approx(expected, abs=5e-4), (metric, shown[metric], expected)

    # Every job has training.png at the top of its artifacts: the page offers it to compare
    # side by side (it said "No common artifacts" while the curves sat under reports/).
    expect(page.get_by_text("training.png", exact=True).first).to_be_visible(timeout=WAIT)
    page.get_by_role("button", name="Artifacts", exact=True).click()  # fold: a page-tall pane
    expect(page.get_by_text("training.png", exact=True).first).to_be_hidden(timeout=WAIT)

    bottom = page.get_by_role("switch", name="Tags - Show diff only")
    tags = bottom.locator("xpath=ancestor::*[.//table][1]").locator("table").bounding_box()
    shot(page, tmp_path / "compare.png", tags["y"] + tags["height"] + 16)


def val_loss_page(page, val_loss, tmp_path):
    """`val_loss` in the compare page's metrics: one curve per job, named by its run."""
    from playwright.sync_api import expect

    metrics = page.get_by_role("switch", name="Metrics - Show diff only").locator(
        "xpath=ancestor::*[.//*[@role='grid']][1]"
    )
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    link = metrics.get_by_role("link", name="val_loss", exact=True)
    expect(link).to_be_visible(timeout=WAIT)
    # Where the link leads, followed by address: a click on the virtualised grid can land
    # while it re-renders (seen on a loaded machine), and then nothing happens.
    href = link.get_attribute("href")
    assert href and "#/metric?" in href, href
    page.goto(page.url.split("#", 1)[0].rstrip("/") + "/" + href.lstrip("/"))
    page.wait_for_url(re.compile(r"#/metric\?"), timeout=WAIT)
    plot = page.locator(".js-plotly-plot")
    expect(plot).to_have_count(1, timeout=2 * WAIT)
    close_assistant(page)
    for name in val_loss:  # the legend under the chart
        expect(page.get_by_text(f"{name} (val_loss)", exact=True)).to_be_visible(timeout=WAIT)
    # The curves Plotly draws: each job's, with its three epochs.
    page.wait_for_function(
        """n => new Set((document.querySelector('.js-plotly-plot').data || [])
                        .filter(t => (t.y || []).length).map(t => t.name)).size >= n""",
        arg=len(val_loss),
        timeout=WAIT,
    )
    traces = plot.evaluate("g => g.data.map(t => ({name: t.name, x: t.x, y: t.y}))")
    assert {t["name"] for t in traces} == set(val_loss), traces
    for trace in traces:
        steps, values = zip(*val_loss[trace["name"]], strict=True)
        assert list(trace["x"]) == list(steps), trace
        assert list(trace["y"]) == pytest.approx(values), trace

    table = page.get_by_role("link", name=list(val_loss)[-1], exact=True).last
    expect(table).to_be_visible(timeout=WAIT)
    box = table.bounding_box()
    shot(page, tmp_path / "val_loss.png", box["y"] + box["height"] + 24)


def metric_values(section) -> dict[str, list[str]]:
    """{metric: [value per run, as shown]} from the compare page's metrics grids."""
    names, values = section.evaluate(GRID_CELLS)
    shown = {}
    for name in names:
        row = [v for v in values if abs(v["y"] - name["y"]) < 2]
        shown[name["text"]] = [v["text"] for v in sorted(row, key=lambda v: v["x"])]
    return shown


def close_assistant(page) -> None:
    """Close MLflow's Assistant panel if it opened anyway (see NO_ASSISTANT)."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count() and close.first.is_visible():
        close.first.click()


def shot(page, path: Path, bottom: float) -> None:
    """The page's top ``bottom`` pixels, full width: what the steps are about, legible."""
    height = min(max(int(bottom), 300), page.viewport_size["height"])
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
