"""An INVALID index is never success: interrupted CREATE INDEX CONCURRENTLY, on a real server.

The scenario of issue 13: a ``-- transactional: false`` migration runs ``CREATE INDEX
CONCURRENTLY IF NOT EXISTS`` while another session holds a long REPEATABLE READ transaction; the
build waits for that snapshot, and the run is interrupted (SIGTERM, SIGKILL, server restart).
"""

from __future__ import annotations

import json
import signal
from functools import partial
from pathlib import Path

import psycopg
import pytest

from tests.core.helpers import (
    advisory_locks,
    applied_ids,
    env_for,
    events,
    kill,
    popen_job,
    query,
    scalar,
    summary,
    wait_for,
    write,
)
from tests.core.reliability_helpers import (
    cic_running,
    cic_waiting,
    close_quietly,
    index_valid,
    invalid_indexes,
    new_database,
    open_snapshot_holder,
    private_server,
    restart,
    yoyo_log_applies,
)

TRIALS = 5
ITEMS = ("CREATE TABLE items (id int, name text);\n"
         "INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 200) g;\n")
CIC = ("-- transactional: false\n"
       "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name ON items (name);\n")


def _migrations(mdir: Path, cic: str = CIC) -> None:
    write(mdir, "0001_items.sql", ITEMS)
    write(mdir, "0002_items_name.sql", cic)


def _rerun_rebuilds(run_job, url: str, mdir: Path, index: str = "public.items_name") -> None:
    res = run_job("run", env=env_for(url, mdir))
    assert res.returncode == 0, res.stderr[-3000:]
    dropped = [e for e in events(res.stderr) if e["event"] == "index.invalid_dropped"]
    assert [e["index"] for e in dropped] == [index], dropped
    assert any(e["event"] == "index.rebuilt" and e["index"] == index
               for e in events(res.stderr))
    s = summary(res.stderr)
    assert s["rebuilt_indexes"] == [{"index": index, "migration": "0002_items_name"}]
    assert index_valid(url, index) is True
    assert invalid_indexes(url) == []
    assert applied_ids(url) == ["0001_items", "0002_items_name"]
    assert yoyo_log_applies(url, "0002_items_name") == 1


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_interrupted_concurrent_index_build_is_named_and_rebuilt_never_recorded(
        pg_server, run_job, tmp_path, how):
    for trial in range(TRIALS):
        url = pg_server.create_database()
        mdir = tmp_path / f"{how}{trial}"
        _migrations(mdir)
        blocker = open_snapshot_holder(url)
        try:
            proc = popen_job("run", env=env_for(url, mdir, MIGRATE_LOCK_TIMEOUT="120s"))
            wait_for(partial(cic_waiting, url), timeout=30)
            assert index_valid(url, "items_name") is False  # the build has begun
            if how == "sigterm":
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=15)
                assert proc.returncode == 143, err[-3000:]
                s = summary(err)
                assert s["error"]["invalid_indexes"] == ["public.items_name"], s
                assert s["error"]["migration"] == "0002_items_name"
                assert "items_name" in s["message"] and "INVALID" in s["message"]
            else:
                kill(proc, signal.SIGKILL)
                proc.wait(timeout=10)
                # Its backend lingers until client_connection_check_interval notices.
                wait_for(lambda u=url: not cic_running(u), timeout=20)
            assert index_valid(url, "items_name") is False
            assert applied_ids(url) == ["0001_items"]
            wait_for(lambda u=url: advisory_locks(u) == 0, timeout=15)
        finally:
            blocker.close()
        _rerun_rebuilds(run_job, url, mdir)
        pg_server.drop_database(url)


@pytest.mark.slow
def test_server_restart_during_concurrent_index_build_is_exit_8_and_rerun_rebuilds(
        tmp_path, run_job):
    with private_server() as server:
        for trial in range(TRIALS):
            url = new_database(server, f"restart_cic_{trial}")
            mdir = tmp_path / f"r{trial}"
            _migrations(mdir)
            blocker = open_snapshot_holder(url)
            proc = popen_job("run", env=env_for(url, mdir, MIGRATE_LOCK_TIMEOUT="120s"))
            try:
                wait_for(partial(cic_waiting, url), timeout=30)
                restart(server, "fast" if trial % 2 == 0 else "immediate")
                _, err = proc.communicate(timeout=60)
            finally:
                close_quietly(blocker)
                proc.kill()
            assert proc.returncode == 8, err[-3000:]
            s = summary(err)
            assert "connection lost during 0002_items_name" in s["message"], s["message"]
            # The server is gone, so the run names what the statement in flight may have left.
            assert "items_name" in s["message"]
            assert s["error"]["possibly_invalid_indexes"] == ["items_name"]
            assert index_valid(url, "items_name") is False
            assert applied_ids(url) == ["0001_items"]
            _rerun_rebuilds(run_job, url, mdir)


def test_lock_timeout_on_a_concurrent_build_is_never_recorded_and_status_lists_it(
        database_url, run_job, tmp_path):
    """lock_timeout cancels the build, the retry's IF NOT EXISTS would skip the INVALID index:
    the retry drops it first; when every attempt times out, exit 8 names it."""
    mdir = tmp_path / "m"
    _migrations(mdir)
    blocker = open_snapshot_holder(database_url)
    try:
        res = run_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="400ms",
                                         MIGRATE_LOCK_RETRIES="1"))
        assert res.returncode == 8, res.stderr[-3000:]
        s = summary(res.stderr)
        assert s["error"]["sqlstate"] == "55P03"
        assert "public.items_name" in s["error"]["invalid_indexes"]
        assert "items_name" in s["message"]
        assert applied_ids(database_url) == ["0001_items"]
        assert index_valid(database_url, "items_name") is False
        # status lists the INVALID index, in text and JSON, with what will happen to it.
        env = env_for(database_url, mdir)
        text = run_job("status", env=env)
        assert text.returncode == 10
        assert ("INVALID index public.items_name on public.items: built by 0002_items_name "
                "(pending)") in text.stdout, text.stdout
        data = json.loads(run_job("status", "--json", env=env).stdout)
        [item] = data["invalid_indexes"]
        assert item["index"] == "public.items_name" and item["state"] == "pending"
        assert item["migration"] == "0002_items_name"
        assert "drops and rebuilds" in item["fix"]
        # The rerun, still behind the snapshot: drops, rebuilds, times out again -> exit 8.
        res = run_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="400ms",
                                         MIGRATE_LOCK_RETRIES="0"))
        assert res.returncode == 8, res.stderr[-3000:]
        assert "items_name" in summary(res.stderr)["message"]
        assert applied_ids(database_url) == ["0001_items"]
    finally:
        blocker.close()
    _rerun_rebuilds(run_job, database_url, mdir)


def test_failed_unique_build_then_fixed_data_rebuilds_instead_of_skipping(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_items.sql", ITEMS + "INSERT INTO items VALUES (1, 'n1');\n")
    write(mdir, "0002_items_name.sql", "-- transactional: false\n"
          "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_name ON items (name);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 8
    assert "public.items_name" in summary(res.stderr)["error"]["invalid_indexes"]
    query(database_url, "DELETE FROM items WHERE ctid IN (SELECT max(ctid) FROM items "
          "GROUP BY name HAVING count(*) > 1)")
    _rerun_rebuilds(run_job, database_url, mdir)


def test_interrupted_unnamed_build_leaves_no_invalid_duplicate(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _migrations(mdir, "-- transactional: false\nCREATE INDEX CONCURRENTLY ON items (name);\n")
    blocker = open_snapshot_holder(database_url)
    try:
        proc = popen_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="120s"))
        wait_for(lambda: cic_waiting(database_url), timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 143, err[-3000:]
    finally:
        blocker.close()
    assert invalid_indexes(database_url) == ["items_name_idx"]
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr[-3000:]
    dropped = [e for e in events(res.stderr) if e["event"] == "index.invalid_dropped"]
    assert [e["index"] for e in dropped] == ["public.items_name_idx"]
    assert "duplicate of public.items_name_idx1" in dropped[0]["reason"]
    assert invalid_indexes(database_url) == []
    assert index_valid(database_url, "items_name_idx1") is True


def test_recorded_migration_with_invalid_index_fails_verification_and_status_shows_it(
        database_url, run_job, tmp_path):
    """A database where an older version recorded an INVALID index as success."""
    mdir = tmp_path / "m"
    _migrations(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    query(database_url, "UPDATE pg_index SET indisvalid = false "
          "WHERE indexrelid = 'items_name'::regclass")
    # An older version kept no schema fingerprint (docs/drift.md): nothing to drift from.
    query(database_url, "DELETE FROM _migrate_job_schema")
    res = run_job("run", env=env)
    assert res.returncode == 9, res.stderr[-3000:]
    s = summary(res.stderr)
    assert "public.items_name (0002_items_name)" in s["message"]
    assert "REINDEX INDEX CONCURRENTLY public.items_name" in s["message"]
    data = json.loads(run_job("status", "--json", env=env).stdout)
    assert [(i["index"], i["state"]) for i in data["invalid_indexes"]] == [
        ("public.items_name", "recorded")]
    query(database_url, "REINDEX INDEX CONCURRENTLY items_name")
    # The fix was made out of band, so the recorded schema (index INVALID) is accepted after
    # review, as for any out-of-band change (docs/drift.md: an INVALID index is a change).
    assert run_job("run", env=env).returncode == 5
    assert run_job("accept-schema", "--yes", env=env).returncode == 0
    assert run_job("run", env=env).returncode == 0


def test_rerun_waits_for_the_killed_runs_lingering_build_then_rebuilds(
        database_url, run_job, tmp_path):
    """After SIGKILL the killed run's backend keeps building until client_connection_check_
    interval notices; the rerun starts meanwhile, waits for that build to end, then drops the
    INVALID index it left and rebuilds it (before: `IF NOT EXISTS` recorded it INVALID)."""
    mdir = tmp_path / "m"
    _migrations(mdir)
    blocker = open_snapshot_holder(database_url)
    proc = popen_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="120s"))
    rerun = None
    try:
        wait_for(partial(cic_waiting, database_url), timeout=30)
        zombie = scalar(database_url, "SELECT pid FROM pg_stat_activity WHERE query ILIKE "
                        "'CREATE INDEX CONCURRENTLY%%' AND pid <> pg_backend_pid()")
        kill(proc, signal.SIGKILL)
        proc.wait(timeout=10)
        rerun = popen_job("run", env=env_for(database_url, mdir))
        wait_for(lambda: not scalar(database_url, "SELECT count(*) FROM pg_stat_activity "
                                    "WHERE pid = %s", (zombie,)), timeout=30)
        blocker.close()
        _, err = rerun.communicate(timeout=60)
    finally:
        close_quietly(blocker)
        proc.kill()
        if rerun is not None:
            rerun.kill()
    assert rerun.returncode == 0, err[-3000:]
    assert [e["index"] for e in events(err) if e["event"] == "index.invalid_dropped"] == [
        "public.items_name"]
    assert index_valid(database_url, "items_name") is True
    assert invalid_indexes(database_url) == []
    assert applied_ids(database_url) == ["0001_items", "0002_items_name"]


_ = psycopg
