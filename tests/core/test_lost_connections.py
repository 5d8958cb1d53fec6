"""Every connection failure maps to its exit code, never to "internal error" (exit 1)."""

from __future__ import annotations

import random
import signal
from collections import Counter
from functools import partial

import psycopg
import pytest

from job.lock import lock_key
from tests.core.helpers import (
    advisory_locks,
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
from tests.core.reliability_helpers import invalid_indexes, new_database, private_server, restart

MIGRATIONS = 40


def _forty(mdir) -> None:
    write(mdir, "0001_hits.sql", "CREATE TABLE hits (id text);\n")
    for i in range(2, MIGRATIONS + 1):
        if i % 8 == 0:
            write(mdir, f"{i:04d}_idx.sql", "-- transactional: false\n"
                  f"CREATE INDEX CONCURRENTLY IF NOT EXISTS hits_{i} ON hits (id);\n"
                  "SELECT pg_sleep(0.03);\n")
        else:
            write(mdir, f"{i:04d}_m.sql", f"INSERT INTO hits VALUES ('{i:04d}');\n"
                  "SELECT pg_sleep(0.03);\n")


def _applied_count(url: str) -> int:
    try:
        return int(scalar(url, "SELECT count(*) FROM _yoyo_migration"))
    except psycopg.Error:
        return 0


@pytest.mark.slow
def test_server_restart_at_random_points_of_a_40_migration_run_is_exit_8_or_3_never_1(
        tmp_path, run_job):
    """Random points chosen by progress, not by time: right after start (connecting), once the
    job holds its lock, or once k of the 40 migrations are recorded."""
    rng = random.Random(13)
    outcomes: Counter[int] = Counter()
    mdir = tmp_path / "m"
    _forty(mdir)
    with private_server() as server:
        for trial in range(10):
            url = new_database(server, f"forty_{trial}")
            point = "start" if trial == 0 else "lock" if trial == 1 else rng.randint(1, 35)
            proc = popen_job("run", env=env_for(url, mdir, MIGRATE_DB_WAIT="20s"))
            try:
                if point == "lock":
                    wait_for(lambda u=url: advisory_locks(u) == 1, timeout=30, interval=0.01)
                elif isinstance(point, int):
                    wait_for(lambda u=url, k=point: _applied_count(u) >= k, timeout=60,
                             interval=0.02)
                restart(server, rng.choice(["fast", "immediate"]))
                _, err = proc.communicate(timeout=90)
            finally:
                proc.kill()
            outcomes[proc.returncode] += 1
            assert proc.returncode != 1, err[-3000:]
            assert proc.returncode in (0, 3, 8), (point, err[-3000:])
            s = summary(err)
            if proc.returncode in (3, 8):
                assert "connection lost" in s["message"] or "not reachable" in s["message"], \
                    s["message"]
            # The rerun converges: every migration exactly once.
            res = run_job("run", env=env_for(url, mdir))
            assert res.returncode == 0, res.stderr[-3000:]
            assert len(applied_ids(url)) == MIGRATIONS
            counts = query(url, "SELECT id, count(*) FROM hits GROUP BY id")
            assert len(counts) == MIGRATIONS - 1 - MIGRATIONS // 8
            assert all(c == 1 for _, c in counts), counts
            assert scalar(url, "SELECT count(*) FROM _yoyo_log WHERE operation = 'apply'") \
                == MIGRATIONS
            assert invalid_indexes(url) == []
    # Restarts in the middle of the apply are exit 8.
    assert outcomes[8] >= 6, outcomes
    print("exit codes after a restart:", dict(outcomes))


def _terminate(url: str, fragment: str) -> None:
    wait_for(partial(backend_running, url, fragment), timeout=30)
    query(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s "
          "AND pid <> pg_backend_pid()", (f"%{fragment}%",))


def test_connection_lost_in_a_non_transactional_migration_is_exit_8_naming_what_ran(
        database_url, tmp_path):
    """Before: the cleanup `_autocommit(False)` raised "the connection is lost" -> exit 1."""
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    write(mdir, "0002_nt.sql", "-- transactional: false\nCREATE TABLE IF NOT EXISTS side (id int);\n"
          "SELECT pg_sleep(60);\n")
    proc = popen_job("run", env=env_for(database_url, mdir))
    _terminate(database_url, "pg_sleep(60)")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 8, err[-3000:]
    s = summary(err)
    assert s["message"].startswith("connection lost during 0002_nt at "), s["message"]
    assert "0002_nt.sql:3" in s["message"]
    assert s["error"]["executed_statements"] == ["CREATE TABLE IF NOT EXISTS side (id int);"]
    assert s["error"]["connection_lost"] is True
    assert applied_ids(database_url) == ["0001_t"]
    wait_for(lambda: advisory_locks(database_url) == 0, timeout=15)


@pytest.mark.parametrize("tx_mode", ["each", "all"])
def test_connection_lost_in_a_transactional_migration_is_exit_8_rolled_back(
        database_url, tmp_path, tx_mode):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    write(mdir, "0002_slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);\n"
          "INSERT INTO slow VALUES (1);\n")
    proc = popen_job("run", env=env_for(database_url, mdir, MIGRATE_TX_MODE=tx_mode))
    _terminate(database_url, "pg_sleep(60)")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 8, err[-3000:]
    s = summary(err)
    assert "connection lost during 0002_slow at" in s["message"], s["message"]
    assert "0002_slow.sql:2" in s["message"]
    if tx_mode == "each":
        assert "the server rolled the migration back" in s["message"]
        assert applied_ids(database_url) == ["0001_t"]
    else:
        assert "none of them was applied" in s["message"]
        assert applied_ids(database_url) == []
    assert not table_exists(database_url, "slow")


def test_duplicate_key_on_the_tracking_table_is_exit_8_and_rolled_back(database_url, tmp_path):
    """Another writer recorded the migration while it ran (a tool ignoring every lock)."""
    from job.migrations import migration_hash

    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\nSELECT pg_sleep(1.5);\n")
    proc = popen_job("run", env=env_for(database_url, mdir))
    wait_for(partial(backend_running, database_url, "pg_sleep(1.5)"), timeout=30)
    query(database_url, "INSERT INTO _yoyo_migration VALUES (%s, '0001_t', now())",
          (migration_hash("0001_t"),))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 8, err[-3000:]
    s = summary(err)
    assert "0001_t could not be recorded" in s["message"], s["message"]
    assert "23505" in s["message"] and "rolled it back" in s["message"]
    assert not table_exists(database_url, "t")


def test_connection_lost_while_waiting_for_the_lock_is_exit_3(database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(holder.info.dbname, "public"),))
        proc = popen_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_WAIT="60s"))
        wait_for(lambda: scalar(database_url, "SELECT count(*) FROM pg_stat_activity WHERE "
                                "application_name LIKE 'migrate-job/%% lock'") == 1, timeout=30)
        query(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
              "application_name LIKE 'migrate-job/% lock'")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err[-3000:]
    s = summary(err)
    assert "before anything was applied" in s["message"] and "Nothing was changed" in s["message"]
    assert not table_exists(database_url, "t")


def test_race_on_a_tracking_table_outside_apply_is_exit_4(database_url):
    """The translation at the edge, fed a real server error."""
    from job import report
    from job.errors import ConcurrentChange
    from job.runtime import Context, translate

    query(database_url, "CREATE TABLE _yoyo_version (version int PRIMARY KEY, "
          "installed_at_utc timestamp); INSERT INTO _yoyo_version VALUES (2, now())")
    with (psycopg.connect(database_url, autocommit=True) as conn,
          pytest.raises(psycopg.errors.UniqueViolation) as raised):
        conn.execute("INSERT INTO _yoyo_version VALUES (2, now())")
    ctx = Context(settings=None, command="run", log=None,  # type: ignore[arg-type]
                  summary=report.Summary(command="run"))
    known = translate(ctx, raised.value)
    assert isinstance(known, ConcurrentChange) and known.exit_code == 4
    assert "_yoyo_version" in known.message
    assert translate(ctx, ValueError("a bug")) is None


_ = (events, signal)
