"""Backups and restores report how far they are: bytes, percent of the size estimate (restore:
of the exact size) and an ETA, every MIGRATE_HEARTBEAT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from job.backup.stream import Progress


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def _events(stderr: str, name: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e["event"] == name:
                out.append(e)
    return out


def test_progress_reports_percent_of_the_total_and_an_eta() -> None:
    log = _Log()
    p = Progress(log, "restore.progress", every=1e-9, total=4000, uri="file:///x")
    p.add(1000)
    (event, fields), = log.events
    assert event == "restore.progress"
    assert fields["percent"] == 25.0 and fields["total_bytes"] == 4000
    assert fields["total_is_estimate"] is False and fields["eta_s"] >= 0
    assert fields["uri"] == "file:///x"


def test_an_estimate_never_reads_as_done_before_the_end() -> None:
    log = _Log()
    p = Progress(log, "backup.progress", every=1e-9, total=1000, estimate=True)
    p.add(5000)  # a dump larger than the estimate
    assert log.events[-1][1]["percent"] == 99.0 and "eta_s" not in log.events[-1][1]


def test_progress_events_can_be_turned_off() -> None:
    log = _Log()
    p = Progress(log, "backup.progress", every=0, total=1000)
    p.add(500)
    assert log.events == [] and p.bytes == 500


def test_backup_and_restore_through_the_cli_report_percent_and_eta(
        database_url: str, run_job: Any, tmp_path: Path, pg_bin: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Incompressible enough that the dump spans several 1 MiB reads.
        conn.execute("CREATE TABLE blob AS SELECT g, md5(random()::text) || md5(random()::text) "
                     "AS v FROM generate_series(1, 120000) g")
    env = {"MIGRATE_DATABASE_URL": database_url, "MIGRATE_MIGRATIONS_DIR": str(tmp_path),
           "MIGRATE_BACKUP": f"file://{tmp_path}/b", "MIGRATE_PG_BIN_DIR": str(pg_bin),
           "MIGRATE_HEARTBEAT": "1ms"}
    res = run_job("backup", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    progress = _events(res.stderr, "backup.progress")
    assert progress, res.stderr[-3000:]
    for e in progress:
        assert e["total_is_estimate"] is True and 0 <= e["percent"] <= 99
        assert e["bytes"] <= e["total_bytes"] or e["percent"] == 99
    assert any(e["percent"] > 0 for e in progress)
    assert any("eta_s" in e for e in progress)
    uri = _events(res.stderr, "migrate.summary")[-1]["backup"]["uri"]

    res = run_job("restore", uri, "--yes", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    restored = _events(res.stderr, "restore.progress")
    assert restored, res.stderr[-3000:]
    size = restored[0]["total_bytes"]
    assert all(e["total_is_estimate"] is False and e["total_bytes"] == size for e in restored)
    percents = [e["percent"] for e in restored]
    assert percents == sorted(percents) and percents[0] >= 0 and 0 < percents[-1] <= 100
