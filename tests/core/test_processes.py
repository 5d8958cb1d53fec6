"""Behaviour that is about processes: concurrency, kills, signals, waiting, locks."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from job.pgserver import PgServer, embedded_bin_dir, free_port
from tests.core.helpers import (
    advisory_locks,
    applied_ids,
    backend_running,
    env_for,
    events,
    kill,
    popen_job,
    query,
    scalar,
    summary,
    table_exists,
    wait_for,
    write,
)


def test_eight_concurrent_runners_apply_each_migration_exactly_once(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_counter.sql", "CREATE TABLE applied_count (id text);\n"
          "INSERT INTO applied_count VALUES ('0001');\n")
    for i in range(2, 11):
        write(mdir, f"{i:04d}_m.sql", f"INSERT INTO applied_count VALUES ('{i:04d}');\n"
              "SELECT pg_sleep(0.02);\n")
    env = env_for(database_url, mdir, MIGRATE_LOCK_WAIT="60s")
    procs = [popen_job("run", env=env) for _ in range(8)]
    results = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 8, [r[1][-2000:] for r in results]
    counts = query(database_url, "SELECT id, count(*) FROM applied_count GROUP BY id ORDER BY id")
    assert len(counts) == 10 and all(c == 1 for _, c in counts)
    assert len(applied_ids(database_url)) == 10
    applied_by = [summary(err)["applied"] for _, err in results]
    assert sum(len(a) for a in applied_by) == 10  # every migration reported by exactly one run
    assert advisory_locks(database_url) == 0


def test_killed_runner_leaves_nothing_half_applied_and_no_lock(any_database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_long.sql", "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\n"
          "SELECT pg_sleep(30);\n")
    env = env_for(any_database_url, mdir)
    proc = popen_job("run", env=env)
    wait_for(lambda: backend_running(any_database_url, "pg_sleep(30)"))
    kill(proc, signal.SIGKILL)
    proc.wait(timeout=10)
    # The server notices the dead client (client_connection_check_interval) and ends the backend.
    wait_for(lambda: not backend_running(any_database_url, "pg_sleep(30)"), timeout=15)
    wait_for(lambda: advisory_locks(any_database_url) == 0, timeout=15)
    assert not table_exists(any_database_url, "half")
    assert applied_ids(any_database_url) == []
    # The next run succeeds without anybody cleaning up.
    write(mdir, "0001_long.sql", "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\n")
    res = popen_job("run", env=env)
    out, err = res.communicate(timeout=60)
    assert res.returncode == 0, err
    assert scalar(any_database_url, "SELECT count(*) FROM half") == 1


def test_sigterm_cancels_statement_and_exits_143_within_5s(any_database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_ok.sql", "CREATE TABLE ok (id int);\n")
    write(mdir, "0002_sleep.sql", "CREATE TABLE sleepy (id int);\nSELECT pg_sleep(60);\n")
    term = tmp_path / "term.json"
    proc = popen_job("run", env=env_for(any_database_url, mdir, MIGRATE_TERMINATION_LOG=str(term)))
    wait_for(lambda: backend_running(any_database_url, "pg_sleep(60)"))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    elapsed = time.monotonic() - started
    assert proc.returncode == 143, err
    assert elapsed < 5, elapsed
    assert not backend_running(any_database_url, "pg_sleep(60)")  # cancelled server-side
    assert advisory_locks(any_database_url) == 0
    assert applied_ids(any_database_url) == ["0001_ok"]
    assert not table_exists(any_database_url, "sleepy")
    s = summary(err)
    assert s["outcome"] == "interrupted" and s["exit_code"] == 143
    assert [a["id"] for a in s["applied"]] == ["0001_ok"]
    assert term.read_text().startswith("{") and '"exit_code":143' in term.read_text()


def test_sigint_exits_130(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_sleep.sql", "SELECT pg_sleep(60);\n")
    proc = popen_job("run", env=env_for(database_url, mdir))
    wait_for(lambda: backend_running(database_url, "pg_sleep(60)"))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert advisory_locks(database_url) == 0


def test_job_waits_for_a_server_that_starts_late(tmp_path):
    bin_dir = embedded_bin_dir()
    assert bin_dir is not None
    server = PgServer(bin_dir, port=free_port())  # own temp dir, outside pytest's 0700 tree
    server.init()
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    proc = popen_job("run", env=env_for(server.admin_url, mdir, MIGRATE_DB_WAIT="40s"))
    try:
        time.sleep(5)
        assert proc.poll() is None, "job gave up before the server started"
        server.start()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        waits = [e for e in events(err) if e["event"] == "db.waiting"]
        assert len(waits) >= 2
        assert table_exists(server.admin_url, "t")
    finally:
        proc.kill()
        server.destroy()


def test_unreachable_database_exits_3_after_db_wait(tmp_path, run_job):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    url = f"postgresql://u:secret-pw-xyz@127.0.0.1:{free_port()}/db"
    started = time.monotonic()
    res = run_job("run", env=env_for(url, mdir, MIGRATE_DB_WAIT="2s"))
    assert res.returncode == 3
    assert time.monotonic() - started < 15
    assert "not reachable within 2s" in summary(res.stderr)["message"]
    assert "secret-pw-xyz" not in res.stdout + res.stderr


def test_wrong_password_exits_3_fast_and_never_shows_password(pg_server, database_url, tmp_path,
                                                              run_job):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    password = "Wr0ng-p@ss/w#rd%-leak-canary"
    from urllib.parse import quote
    url = database_url.replace(f":{quote('pg-admin-secret')}@", f":{quote(password, safe='')}@")
    term = tmp_path / "term"
    gh = tmp_path / "gh"
    started = time.monotonic()
    res = run_job("run", env=env_for(url, mdir, MIGRATE_DB_WAIT="30s",
                                     MIGRATE_TERMINATION_LOG=str(term),
                                     GITHUB_STEP_SUMMARY=str(gh), MIGRATE_LOG_LEVEL="debug"))
    assert res.returncode == 3, res.stderr
    assert time.monotonic() - started < 10  # not retried for the whole MIGRATE_DB_WAIT
    assert "password authentication failed" in summary(res.stderr)["message"]
    everything = res.stdout + res.stderr + term.read_text() + gh.read_text()
    for form in (password, quote(password, safe=""), quote(password)):
        assert form not in everything


def test_lock_wait_timeout_exits_4_naming_the_holder(database_url, tmp_path, run_job):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    from job.lock import lock_key

    with psycopg.connect(database_url, autocommit=True,
                         application_name="other-deployer") as holder:
        key = lock_key(holder.info.dbname, "public")
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        res = run_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_WAIT="2s"))
    assert res.returncode == 4, res.stderr
    msg = summary(res.stderr)["message"]
    assert "other-deployer" in msg and "since" in msg and "127.0.0.1" in msg
    assert any(e["event"] == "lock.waiting" for e in events(res.stderr))
    assert not table_exists(database_url, "t")


def test_lock_key_separates_schemas_and_databases():
    from job.lock import lock_key

    assert lock_key("db", "public") != lock_key("db", "app2")
    assert lock_key("db1", "public") != lock_key("db2", "public")
    assert lock_key("db", "public") == lock_key("db", "public")


def test_lock_timeout_retries_log_blocker_then_exit_8_without_stalling_traffic(
        database_url, tmp_path):
    query(database_url, "CREATE TABLE busy (id int); INSERT INTO busy VALUES (1)")
    mdir = tmp_path / "m"
    write(mdir, "0001_alter.sql", "ALTER TABLE busy ADD COLUMN note text;\n")
    blocker = psycopg.connect(database_url, application_name="long-report")
    blocker.execute("SELECT * FROM busy")  # holds ACCESS SHARE until the transaction ends
    stalls: list[float] = []
    stop = threading.Event()

    def traffic() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            while not stop.is_set():
                t0 = time.monotonic()
                conn.execute("SELECT count(*) FROM busy").fetchone()
                stalls.append(time.monotonic() - t0)
                time.sleep(0.02)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        proc = popen_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="300ms",
                                            MIGRATE_LOCK_RETRIES="2"))
        _, err = proc.communicate(timeout=60)
    finally:
        stop.set()
        thread.join()
        blocker.close()
    assert proc.returncode == 8, err
    retries = [e for e in events(err) if e["event"] == "migration.lock_timeout_retry"]
    assert len(retries) == 2
    assert any(b["application_name"] == "long-report" for b in retries[0]["blockers"])
    s = summary(err)
    assert s["error"]["sqlstate"] == "55P03"
    assert any(b["application_name"] == "long-report" for b in s["error"]["blockers"])
    assert "note" not in [r[0] for r in query(
        database_url, "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'busy'")]
    # Readers queued behind the waiting ALTER for at most about lock_timeout.
    assert stalls and max(stalls) < 0.3 + 0.5, max(stalls)


@pytest.mark.parametrize("pgbouncer_port", [False])
def test_lock_is_held_by_the_session_that_runs(database_url, tmp_path, pgbouncer_port):
    """The same-backend check passes on a direct connection (the refusal path needs PgBouncer)."""
    from job.lock import MigrationLock

    class _Log:
        def info(self, *a: object, **k: object) -> None: ...

    with psycopg.connect(database_url, autocommit=True) as conn:
        lock = MigrationLock(conn, _Log())
        lock.acquire(1)
        assert lock.held and advisory_locks(database_url) == 1
        lock.release()
    assert advisory_locks(database_url) == 0


_ = Path


def test_non_transactional_lock_timeout_retries_the_statement_then_exit_8(database_url, tmp_path):
    query(database_url, "CREATE TABLE busy2 (id int)")
    mdir = tmp_path / "m"
    write(mdir, "0001_nt.sql", "-- transactional: false\nCREATE TABLE IF NOT EXISTS side (id int);\n"
          "ALTER TABLE busy2 ADD COLUMN note text;\n")
    blocker = psycopg.connect(database_url, application_name="long-report-2")
    blocker.execute("SELECT * FROM busy2")
    try:
        proc = popen_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="300ms",
                                            MIGRATE_LOCK_RETRIES="2"))
        _, err = proc.communicate(timeout=60)
    finally:
        blocker.close()
    assert proc.returncode == 8, err
    retries = [e for e in events(err) if e["event"] == "migration.lock_timeout_retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["migration"] == "0001_nt" for r in retries)
    s = summary(err)
    assert s["error"]["sqlstate"] == "55P03" and s["error"]["line"] == 3
    assert s["error"]["executed_statements"] == ["CREATE TABLE IF NOT EXISTS side (id int);"]
    assert table_exists(database_url, "side") and applied_ids(database_url) == []
