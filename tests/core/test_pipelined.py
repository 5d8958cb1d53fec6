"""Many transactional migrations share one round trip (job/pgpipe.py), yet each one is still
its own atomic transaction: applied and recorded exactly once, reported as it commits, and the
first failure stops everything after it."""

from __future__ import annotations

import signal
import threading

import psycopg

from tests.core.helpers import (
    applied_ids,
    backend_running,
    env_for,
    events,
    popen_job,
    query,
    scalar,
    summary,
    table_exists,
    wait_for,
    write,
)


def test_migrations_after_a_failed_one_never_run(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    write(mdir, "0002_b.sql", "CREATE TABLE b (id int);\nINSERT INTO a VALUES (2);\n")
    bad = write(mdir, "0003_bad.sql", "INSERT INTO a VALUES (3);\nSELECT 1/0;\n")
    write(mdir, "0004_d.sql", "CREATE TABLE d (id int);\nINSERT INTO a VALUES (4);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 8, res.stderr[-3000:]
    s = summary(res.stderr)
    assert s["error"]["migration"] == "0003_bad" and s["error"]["sqlstate"] == "22012"
    assert f"{bad}:2" in s["message"]
    assert [a["id"] for a in s["applied"]] == ["0001_a", "0002_b"]
    assert s["pending"] == ["0003_bad", "0004_d"]
    assert applied_ids(database_url) == ["0001_a", "0002_b"]
    # Nothing of the failed migration, nothing of the one after it.
    assert [r[0] for r in query(database_url, "SELECT id FROM a ORDER BY id")] == [2]
    assert not table_exists(database_url, "d")
    assert scalar(database_url, "SELECT count(*) FROM _yoyo_log WHERE migration_id = "
                  "'0004_d'") == 0
    starts = [e["migration"] for e in events(res.stderr) if e["event"] == "migration.start"]
    assert starts == ["0001_a", "0002_b", "0003_bad"]


def test_each_migration_is_reported_applied_as_it_commits(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_quick.sql", "CREATE TABLE quick (id int);\n")
    write(mdir, "0002_slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);\n")
    proc = popen_job("run", env=env_for(database_url, mdir))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    try:
        wait_for(lambda: backend_running(database_url, "pg_sleep(60)"), timeout=60)
        # While 0002 still runs on the server, 0001 is already committed and said so.
        wait_for(lambda: any('"migration.applied"' in ln and "0001_quick" in ln
                             for ln in list(lines)), timeout=30)
        assert backend_running(database_url, "pg_sleep(60)")
        assert applied_ids(database_url) == ["0001_quick"]
        started = [e["migration"] for e in events("".join(lines))
                   if e["event"] == "migration.start"]
        assert started == ["0001_quick", "0002_slow"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=30)
    assert proc.returncode == 143
    assert [a["id"] for a in summary("".join(lines))["applied"]] == ["0001_quick"]


def test_heartbeat_names_the_migration_the_server_is_on(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_quick.sql", "CREATE TABLE quick (id int);\n")
    write(mdir, "0002_sleep.sql", "CREATE TABLE sleepy (id int);\nSELECT pg_sleep(4);\n")
    write(mdir, "0003_after.sql", "CREATE TABLE after_sleep (id int);\n")
    res = run_job("run", "--heartbeat", "1s", env=env_for(database_url, mdir), timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    beats = [e for e in events(res.stderr) if e["event"] == "migration.heartbeat"]
    assert beats, res.stderr[-3000:]
    assert {b["migration"] for b in beats} == {"0002_sleep"}
    assert all("pg_sleep(4)" in b["statement"] for b in beats)


def test_lock_timeout_retry_resumes_at_the_migration_that_timed_out(database_url, tmp_path):
    query(database_url, "CREATE TABLE busy (id int)")
    mdir = tmp_path / "m"
    write(mdir, "0001_count.sql", "CREATE TABLE counted (id int);\nINSERT INTO counted VALUES (1);\n")
    write(mdir, "0002_alter.sql", "ALTER TABLE busy ADD COLUMN note text;\n")
    write(mdir, "0003_after.sql", "INSERT INTO counted VALUES (3);\n")
    blocker = psycopg.connect(database_url, application_name="long-report")
    blocker.execute("SELECT * FROM busy")  # ACCESS SHARE until the transaction ends
    try:
        proc = popen_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="300ms",
                                            MIGRATE_LOCK_RETRIES="20"))
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
        reader.start()
        wait_for(lambda: any("migration.lock_timeout_retry" in ln for ln in list(lines)),
                 timeout=60)
    finally:
        blocker.rollback()
        blocker.close()
    assert proc.wait(timeout=120) == 0
    reader.join(timeout=30)
    err = "".join(lines)
    retries = [e for e in events(err) if e["event"] == "migration.lock_timeout_retry"]
    assert retries and {r["migration"] for r in retries} == {"0002_alter"}
    assert retries[0]["blockers"][0]["application_name"] == "long-report"
    # 0001 committed once before the retries; nothing ran twice.
    assert [r[0] for r in query(database_url, "SELECT id FROM counted ORDER BY id")] == [1, 3]
    assert applied_ids(database_url) == ["0001_count", "0002_alter", "0003_after"]
    assert scalar(database_url, "SELECT count(*) FROM _yoyo_log WHERE operation = 'apply'") == 3
    assert [a["id"] for a in summary(err)["applied"]] == ["0001_count", "0002_alter",
                                                          "0003_after"]
