"""The tracking database as the user may have left it: damaged, a folder, read-only."""

from __future__ import annotations

import sqlite3

import pytest

from backprop.app.cli import main
from backprop.tracking import store as store_module


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


def a_database(path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(2000)])
    db.close()
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "folder"])
def test_a_damaged_database_is_named_in_one_line_and_left_as_it_is(project, capsys, damage):
    db = project / "mlflow.db"
    if damage == "folder":
        db.mkdir()
    elif damage == "garbage":
        db.write_bytes(b"\x00\x13 not a database " * 200)
    else:
        db.write_bytes(a_database(project / "whole.db")[:5000])
    before = db.read_bytes() if db.is_file() else None
    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"backprop runs: error: {db}: the MLflow tracking database ")
    assert "move it aside" in err and len(err.strip().splitlines()) == 1
    assert (db.read_bytes() if db.is_file() else None) == before
    assert sorted(p.name for p in project.iterdir() if p.name.startswith("mlflow.db")) == [
        "mlflow.db"
    ]


def test_listing_runs_takes_no_lock_and_writes_nothing(project, capsys, monkeypatch):
    """A read-only store (a mounted share, a colleague's copy) can be listed."""
    from backprop.tracking.store import Store
    from backprop.tracking.tracker import Tracker

    with Tracker.open(Store(project), "backprop", run_name="one"):
        pass
    capsys.readouterr()

    def refused(path):
        raise AssertionError(f"a read-only command took the lock {path}")

    monkeypatch.setattr(store_module, "exclusive_lock", refused)
    before = {p.name: p.stat().st_mtime_ns for p in project.iterdir()}
    assert main(["runs"]) == 0
    assert "one" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in project.iterdir()} == before
