"""MIGRATE_NOTIFY_URL: a webhook POST after `run`, best effort, URL never logged."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from job.pgserver import free_port
from tests.core.helpers import env_for, events, write


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_gets_success_and_failure_and_url_stays_secret(database_url, run_job, tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/services/T0/B0/hook-secret-token"
    _Hook.received.clear()
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    env = env_for(database_url, mdir, MIGRATE_NOTIFY_URL=url)
    ok = run_job("run", env=env)
    assert ok.returncode == 0, ok.stderr
    write(mdir, "0002_bad.sql", "SELECT nope;\n")
    bad = run_job("run", env=env)
    assert bad.returncode == 8
    server.shutdown()
    assert [r["migrate_job"]["outcome"] for r in _Hook.received] == ["applied", "migration_failed"]
    assert "0001_a" in _Hook.received[0]["text"] and "0002_bad" in _Hook.received[1]["text"]
    assert "hook-secret-token" not in ok.stderr + bad.stderr + ok.stdout + bad.stdout


def test_unreachable_webhook_does_not_change_the_exit_code(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    env = env_for(database_url, mdir, MIGRATE_NOTIFY_URL=f"http://127.0.0.1:{free_port()}/x/secret-x")
    res = run_job("run", env=env)
    assert res.returncode == 0
    failed = [e for e in events(res.stderr) if e["event"] == "notify.failed"]
    assert failed and "secret-x" not in res.stderr
