"""Long statements are never silent: heartbeats with elapsed time, wait events, blockers and
``pg_stat_progress_*`` phases and percentages, from the real server."""

from __future__ import annotations

import re
import threading

import psycopg
import pytest

from job.progress import (
    activity_sql,
    cluster_progress,
    copy_progress,
    create_index_progress,
)
from tests.cli.terminal import run_in_pty
from tests.core.helpers import applied_ids, backend_running, env_for, events, popen_job, wait_for, write


def _heartbeats(stderr: str) -> list[dict]:
    return [e for e in events(stderr) if e["event"] == "migration.heartbeat"]


@pytest.mark.slow
def test_a_25_second_statement_produces_heartbeats_with_elapsed_time(run_job, database_url,
                                                                     tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_sleep.sql", "SELECT pg_sleep(25);\n")
    res = run_job("run", "--heartbeat", "2s", env=env_for(database_url, mdir), timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    beats = _heartbeats(res.stderr)
    # One every 2 s of a 25 s statement; generous bounds: the machine may be busy.
    assert len(beats) >= 6, beats
    elapsed = [b["elapsed_s"] for b in beats]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 2 and elapsed[-1] >= 12
    assert all(b["migration"] == "0001_sleep" for b in beats)
    assert all("pg_sleep(25)" in b["statement"] for b in beats)
    assert any(b.get("wait_event") == "Timeout:PgSleep" for b in beats), beats
    assert all(b["state"] == "active" for b in beats)
    assert applied_ids(database_url) == ["0001_sleep"]


def test_heartbeat_names_the_session_that_blocks_the_statement(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\n")
    env = env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="0", MIGRATE_HEARTBEAT="500ms")
    first = popen_job("run", env=env)
    assert first.wait(timeout=60) == 0
    write(mdir, "0002_alter.sql", "ALTER TABLE t ADD COLUMN c bigint;\n")
    blocker = psycopg.connect(database_url, application_name="long-report")
    blocker.execute("SELECT * FROM t")  # holds ACCESS SHARE until the transaction ends
    try:
        proc = popen_job("run", env=env)
        wait_for(lambda: backend_running(database_url, "ADD COLUMN c"), timeout=30)
        threading.Timer(3.0, blocker.rollback).start()
        out, err = proc.communicate(timeout=60)
    finally:
        blocker.close()
    assert proc.returncode == 0, err[-3000:]
    beats = _heartbeats(err)
    blocked = [b for b in beats if b.get("blocked_by")]
    assert blocked, beats
    assert blocked[0]["blocked_by"][0]["application_name"] == "long-report"
    assert blocked[0]["wait_event"].startswith("Lock:")


@pytest.mark.slow
def test_create_index_concurrently_reports_its_phase_and_percentage(run_job, database_url,
                                                                    tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_big.sql",
          "CREATE TABLE big (id bigint, h text, filler text);\n"
          "INSERT INTO big SELECT g, md5(g::text), repeat('x', 100)\n"
          "  FROM generate_series(1, 800000) g;\n")
    write(mdir, "0002_index.sql", "-- transactional: false\n"
          "CREATE INDEX CONCURRENTLY big_h ON big (h);\n")
    res = run_job("run", "--heartbeat", "300ms", env=env_for(database_url, mdir), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    beats = [b for b in _heartbeats(res.stderr) if b["migration"] == "0002_index"]
    building = [b for b in beats if (b.get("progress") or {}).get("command")
                == "CREATE INDEX CONCURRENTLY"]
    assert building, beats
    phases = {b["progress"]["phase"] for b in building}
    assert any(p.startswith(("building index", "waiting", "index validation")) for p in phases)
    with_percent = [b["progress"] for b in building if b["progress"].get("percent") is not None]
    assert with_percent, building
    p = with_percent[0]
    assert 0 <= p["percent"] <= 100 and p["total"] > 0 and p["unit"] in (
        "blocks", "tuples", "lockers")


def test_a_long_statement_is_a_live_line_on_a_terminal(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_sleep.sql", "SELECT pg_sleep(3);\n")
    screen = run_in_pty("run", "--heartbeat", "1s", env=env_for(database_url, mdir))
    assert screen.code == 0, screen.raw
    # The same screen line was rewritten with the elapsed time, then finished with "ok".
    assert re.search(r"\rapplying 0001_sleep \.\.\. \d\.\d s, waiting on Timeout:PgSleep",
                     screen.raw.replace("\x1b[K", "")), screen.raw
    assert any(re.fullmatch(r"applying 0001_sleep \.\.\. ok \(3\.\d s\)", ln)
               for ln in screen.lines), screen.text
    assert not any("still running" in ln for ln in screen.lines)


def test_heartbeats_can_be_turned_off(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_sleep.sql", "SELECT pg_sleep(1.5);\n")
    res = run_job("run", "--heartbeat", "0", env=env_for(database_url, mdir))
    assert res.returncode == 0
    assert _heartbeats(res.stderr) == []


# -- reading pg_stat_progress_* rows -------------------------------------------------------------
def test_index_build_progress_uses_the_counter_of_its_phase():
    scanning = create_index_progress({
        "command": "CREATE INDEX CONCURRENTLY", "phase": "building index: scanning table",
        "blocks_total": 2000, "blocks_done": 500, "tuples_total": 0, "tuples_done": 0,
        "lockers_total": 0, "lockers_done": 0})
    assert (scanning["percent"], scanning["done"], scanning["total"], scanning["unit"]) == (
        25.0, 500, 2000, "blocks")
    loading = create_index_progress({
        "command": "CREATE INDEX", "phase": "building index: loading tuples in tree",
        "blocks_total": 2000, "blocks_done": 2000, "tuples_total": 1000, "tuples_done": 100})
    assert (loading["percent"], loading["unit"]) == (10.0, "tuples")
    waiting = create_index_progress({
        "command": "CREATE INDEX CONCURRENTLY", "phase": "waiting for old snapshots",
        "lockers_total": 4, "lockers_done": 1})
    assert (waiting["percent"], waiting["unit"]) == (25.0, "lockers")
    unknown = create_index_progress({"command": "CREATE INDEX", "phase": "initializing"})
    assert unknown["percent"] is None and unknown["phase"] == "initializing"


def test_cluster_and_vacuum_full_progress():
    scan = cluster_progress({"command": "VACUUM FULL", "phase": "seq scanning heap",
                             "heap_blks_total": 400, "heap_blks_scanned": 100})
    assert (scan["command"], scan["percent"], scan["unit"]) == ("VACUUM FULL", 25.0, "blocks")
    write_ = cluster_progress({"command": "CLUSTER", "phase": "writing new heap",
                               "heap_tuples_scanned": 1000, "heap_tuples_written": 900})
    assert (write_["percent"], write_["unit"]) == (90.0, "tuples")


def test_copy_progress_is_bytes_of_the_file():
    p = copy_progress({"command": "COPY FROM", "type": "FILE", "bytes_total": 4000,
                       "bytes_processed": 1000, "tuples_processed": 55})
    assert (p["phase"], p["percent"], p["tuples"]) == ("COPY FROM (file)", 25.0, 55)
    pipe = copy_progress({"command": "COPY FROM", "type": "PIPE", "bytes_total": 0,
                          "bytes_processed": 1000})
    assert pipe["percent"] is None


def test_activity_query_matches_the_server_version(database_url):
    assert "pg_stat_progress_copy" not in activity_sql(130000)
    assert "pg_stat_progress_create_index" in activity_sql(120000)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(activity_sql(conn.info.server_version),
                           (conn.info.backend_pid,)).fetchone()
    assert row is not None and row[0] == "active"
