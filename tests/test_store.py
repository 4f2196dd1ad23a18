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


def test_a_writer_killed_mid_transaction_leaves_a_store_that_still_lists(project, capsys):
    """A process SIGKILLed inside a write leaves a hot journal that a read-only connection
    cannot roll back (SQLITE_READONLY_ROLLBACK): the store is still read, its runs intact."""
    import subprocess
    import sys

    from backprop.tracking.store import Store
    from backprop.tracking.tracker import Tracker

    with Tracker.open(Store(project), "backprop", run_name="kept"):
        pass
    capsys.readouterr()
    writer = (
        "import os, sqlite3\n"
        "db = sqlite3.connect('mlflow.db', isolation_level=None)\n"
        "db.execute('PRAGMA cache_size=1')\n"
        "db.execute('BEGIN')\n"
        "db.execute('CREATE TABLE junk (x)')\n"
        "db.executemany('INSERT INTO junk VALUES (?)', [(i,) for i in range(50000)])\n"
        "db.execute(\"UPDATE runs SET name = 'half-written'\")\n"
        "os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", writer], cwd=project)
    assert killed.returncode == -9
    assert (project / "mlflow.db-journal").stat().st_size > 0  # the hot journal
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "half-written" not in out  # rolled back, as SQLite does
    with sqlite3.connect(f"file:{project / 'mlflow.db'}?mode=ro", uri=True) as db:
        assert "junk" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}


@pytest.fixture
def answering_server():
    """A server on 127.0.0.1 whose /health says OK and whose API answers ``mode``."""
    import http.server
    import threading

    servers = []

    def start(mode: str) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                if self.path.startswith("/health"):
                    status, body = 200, b"OK"
                elif mode == "500":
                    status, body = 500, b"Internal Server Error: database is down"
                else:
                    status, body = 200, b"<html>a proxy's page</html>"
                self.send_response(status)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "mode, reason",
    [("500", "HTTP 5xx: its database may be down"), ("html", "not JSON but '<html>a proxy")],
)
def test_a_server_that_answers_but_not_as_mlflow_is_one_line(
    project, capsys, monkeypatch, answering_server, mode, reason
):
    url = answering_server(mode)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from backprop.tracking.store import Store
    from backprop.tracking.tracker import Tracker

    assert main(["runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"backprop runs: error: the MLflow tracking server {url} answers, but")
    assert reason in err and len(err.strip().splitlines()) == 1
    with pytest.raises(Exception, match="answers, but not as MLflow does") as raised:
        Tracker.open(Store(project), "backprop")  # what every run opens with
    assert type(raised.value).__name__ == "TrackingError"


def _disk_full(*args, **kwargs):
    import sqlalchemy.exc

    raise sqlalchemy.exc.OperationalError(
        "INSERT INTO runs ...", {}, sqlite3.OperationalError("database or disk is full")
    )


def test_a_full_disk_under_the_database_is_one_line_before_the_run(project, monkeypatch):
    from backprop.errors import TrackingError
    from backprop.tracking.store import Store
    from backprop.tracking.tracker import Tracker

    store = Store(project)
    store.experiment_id("backprop")
    before = (project / "mlflow.db").read_bytes()
    monkeypatch.setattr(store.client, "create_run", _disk_full)
    with pytest.raises(TrackingError, match=r"the MLflow tracking database sqlite:///.*mlflow.db "
                                            r"cannot be written \(the disk is full\)"):  # fmt: skip
        Tracker.open(store, "backprop")
    assert (project / "mlflow.db").read_bytes() == before


def test_a_disk_that_fills_up_mid_run_loses_logging_not_the_run(project, monkeypatch, capsys):
    from backprop.tracking.store import Store
    from backprop.tracking.tracker import Tracker

    store = Store(project)
    with Tracker.open(store, "backprop") as tracker:
        monkeypatch.setattr(store.client, "log_batch", _disk_full)
        monkeypatch.setattr(store.client, "set_terminated", _disk_full)
        assert tracker._guarded("the model", store.client.log_batch, tracker.run_id) is None
        assert tracker.offline == "the disk is full"
    err = capsys.readouterr().err
    assert err.startswith(f"backprop: warning: the MLflow tracking store {store.shown} could not "
                          "be written (the disk is full); not logged to run")  # fmt: skip
    assert "the model" in err and len(err.strip().splitlines()) == 1
