"""The real yoyo CLI (from the venv) against the job: no interleaving, no stale lock.

Data migrations INSERT a row each, so a migration applied twice shows up as a count of 2.
"""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import pytest

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
    wait_for,
    write,
)
from tests.core.reliability_helpers import (
    index_valid,
    job_holds_yoyo_lock,
    popen_yoyo,
    sessions_of,
    yoyo,
    yoyo_lock_rows,
    yoyo_log_applies,
    yoyo_waiting,
)

ROUNDS = 10
IDS = [f"{i:04d}_m" for i in range(2, 7)]
# Sleeps only in the job's session or only in yoyo's, to hold one of them at a chosen point.
JOB_ONLY = "current_setting('application_name') LIKE 'migrate-job%'"


def _job_waits_for_a_yoyo_waiter(then_sleep: float) -> str:
    """A statement that, in the job's session only, waits until a yoyo CLI is blocked on the
    yoyo_lock row (polling pg_stat_activity, 60 s cap), then sleeps a little longer."""
    return (
        "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN\n"
        f"  IF {JOB_ONLY} THEN\n"
        "    LOOP\n"
        "      PERFORM pg_stat_clear_snapshot();\n"
        "      EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'\n"
        "                        AND query LIKE '%INSERT INTO \"yoyo_lock\"%')\n"
        "             OR clock_timestamp() - t0 > interval '60 s';\n"
        "      PERFORM pg_sleep(0.05);\n"
        "    END LOOP;\n"
        f"    PERFORM pg_sleep({then_sleep});\n"
        "  END IF;\n"
        "END $$;\n")


def _data_migrations(mdir: Path, sleep: str = "0.25") -> None:
    write(mdir, "0001_hits.sql", "CREATE TABLE hits (id text);\n")
    for mid in IDS:
        write(mdir, f"{mid}.sql", f"INSERT INTO hits VALUES ('{mid}');\nSELECT pg_sleep({sleep});\n")


def _exactly_once(url: str, ids: list[str]) -> None:
    counts = dict(query(url, "SELECT id, count(*) FROM hits GROUP BY id"))
    assert counts == {i: 1 for i in ids}, counts
    assert applied_ids(url) == sorted(["0001_hits", *ids])
    for mid in ["0001_hits", *ids]:
        assert yoyo_log_applies(url, mid) == 1, mid


def _no_lock_left(url: str) -> None:
    wait_for(lambda: advisory_locks(url) == 0, timeout=15)
    wait_for(lambda: sessions_of(url, "yoyo-lock") == 0, timeout=15)
    assert yoyo_lock_rows(url) == 0


def _kill_group(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["job_first", "yoyo_first", "together"])
def test_yoyo_apply_racing_run_applies_each_migration_exactly_once(pg_server, tmp_path, order):
    mdir = tmp_path / "m"
    _data_migrations(mdir)
    for _ in range(ROUNDS):
        url = pg_server.create_database()
        if order == "job_first":
            job = popen_job("run", env=env_for(url, mdir))
            wait_for(partial(job_holds_yoyo_lock, url), timeout=30)
            cli = popen_yoyo("apply", url=url, mdir=mdir)
        elif order == "yoyo_first":
            cli = popen_yoyo("apply", url=url, mdir=mdir)
            wait_for(partial(yoyo_lock_rows, url), timeout=30)
            job = popen_job("run", env=env_for(url, mdir))
        else:
            job = popen_job("run", env=env_for(url, mdir))
            cli = popen_yoyo("apply", url=url, mdir=mdir)
        _, job_err = job.communicate(timeout=120)
        _, cli_err = cli.communicate(timeout=120)
        assert job.returncode == 0, job_err[-3000:]
        assert cli.returncode == 0, cli_err[-3000:]
        _exactly_once(url, IDS)
        _no_lock_left(url)
        pg_server.drop_database(url)


def test_job_started_during_a_yoyo_run_waits_for_it_and_names_it(database_url, tmp_path):
    mdir = tmp_path / "m"
    _data_migrations(mdir, sleep="0")
    # In yoyo's session only: wait until the job holds its advisory lock (it then waits for
    # yoyo's row), then a little longer.
    write(mdir, "0002_m.sql", "INSERT INTO hits VALUES ('0002_m');\n"
          "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN\n"
          f"  IF NOT {JOB_ONLY} THEN\n"
          "    LOOP\n"
          "      PERFORM pg_stat_clear_snapshot();\n"
          "      EXIT WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted)\n"
          "             OR clock_timestamp() - t0 > interval '60 s';\n"
          "      PERFORM pg_sleep(0.05);\n"
          "    END LOOP;\n"
          "    PERFORM pg_sleep(1);\n"
          "  END IF;\n"
          "END $$;\n")
    cli = popen_yoyo("apply", url=database_url, mdir=mdir)
    wait_for(partial(yoyo_lock_rows, database_url), timeout=30)
    job = popen_job("run", env=env_for(database_url, mdir))
    _, err = job.communicate(timeout=120)
    cli.communicate(timeout=120)
    assert job.returncode == 0 and cli.returncode == 0, err[-3000:]
    waits = [e for e in events(err) if e["event"] == "lock.waiting"]
    assert waits and waits[0]["holder"]["kind"] == "yoyo_lock", waits
    assert waits[0]["holder"]["pid"] == cli.pid
    assert any(e["event"] == "integrity.adopted" for e in events(err))
    _exactly_once(database_url, IDS)
    _no_lock_left(database_url)


def test_kill_9_of_the_job_lets_a_waiting_yoyo_apply_finish_and_leaves_no_lock(
        database_url, tmp_path):
    mdir = tmp_path / "m"
    _data_migrations(mdir, sleep=f"CASE WHEN {JOB_ONLY} AND "
                                 "(SELECT count(*) FROM hits) = 2 THEN 60 ELSE 0 END")
    job = popen_job("run", env=env_for(database_url, mdir))
    wait_for(partial(backend_running, database_url, "THEN 60"), timeout=30)
    cli = popen_yoyo("apply", url=database_url, mdir=mdir)
    wait_for(partial(yoyo_waiting, database_url), timeout=30)
    _kill_group(job)
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err[-3000:]
    _exactly_once(database_url, IDS)
    _no_lock_left(database_url)


def test_kill_9_of_a_waiting_yoyo_apply_leaves_no_lock(database_url, tmp_path):
    mdir = tmp_path / "m"
    _data_migrations(mdir, sleep="0")
    write(mdir, "0002_m.sql", "INSERT INTO hits VALUES ('0002_m');\n"
          + _job_waits_for_a_yoyo_waiter(then_sleep=2))
    job = popen_job("run", env=env_for(database_url, mdir))
    wait_for(partial(job_holds_yoyo_lock, database_url), timeout=30)
    cli = popen_yoyo("apply", url=database_url, mdir=mdir)
    wait_for(partial(yoyo_waiting, database_url), timeout=30)
    _kill_group(cli)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 0, err[-3000:]
    _exactly_once(database_url, IDS)
    _no_lock_left(database_url)
    again = yoyo("apply", url=database_url, mdir=mdir, timeout=60)  # not locked out
    assert again.returncode == 0, again.stderr[-3000:]
    _exactly_once(database_url, IDS)


def test_kill_9_of_yoyo_holding_its_own_lock_is_named_with_exit_4(database_url, tmp_path,
                                                                     run_job):
    """yoyo commits its lock row, so a killed yoyo leaves it (yoyo's design, NOTES §1): the job
    names it and how to remove it instead of hanging or failing obscurely."""
    mdir = tmp_path / "m"
    _data_migrations(mdir, sleep=f"CASE WHEN {JOB_ONLY} THEN 0 ELSE 60 END")
    cli = popen_yoyo("apply", url=database_url, mdir=mdir)
    wait_for(partial(backend_running, database_url, "ELSE 60"), timeout=30)
    _kill_group(cli)
    query(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query "
          "LIKE '%ELSE 60%' AND pid <> pg_backend_pid()")
    assert yoyo_lock_rows(database_url) == 1
    res = run_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_WAIT="2s"))
    assert res.returncode == 4, res.stderr[-3000:]
    message = summary(res.stderr)["message"]
    assert f"yoyo_lock row of process {cli.pid}" in message and "yoyo break-lock" in message
    assert yoyo("break-lock", url=database_url).returncode == 0
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr[-3000:]
    _exactly_once(database_url, IDS)
    _no_lock_left(database_url)


def test_waiting_yoyo_does_not_deadlock_a_concurrent_index_build(database_url, tmp_path):
    """yoyo's blocked INSERT holds a snapshot that CREATE INDEX CONCURRENTLY waits for, while it
    waits for our yoyo_lock row: the job cancels that statement (yoyo retries) instead of
    waiting until lock_timeout leaves an INVALID index."""
    mdir = tmp_path / "m"
    write(mdir, "0001_hits.sql", "CREATE TABLE hits (id text);\nINSERT INTO hits VALUES ('a');\n"
          + _job_waits_for_a_yoyo_waiter(then_sleep=0))
    write(mdir, "0002_idx.sql", "-- transactional: false\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS hits_id ON hits (id);\n")
    job = popen_job("run", env=env_for(database_url, mdir, MIGRATE_LOCK_TIMEOUT="3s",
                                       MIGRATE_LOCK_RETRIES="0"))
    wait_for(partial(job_holds_yoyo_lock, database_url), timeout=30)
    cli = popen_yoyo("apply", url=database_url, mdir=mdir)
    wait_for(partial(yoyo_waiting, database_url), timeout=30)
    _, err = job.communicate(timeout=60)
    _, cli_err = cli.communicate(timeout=60)
    assert job.returncode == 0, err[-3000:]
    cancelled = [e for e in events(err) if e["event"] == "lock.yoyo_waiter_cancelled"]
    assert cancelled, err[-3000:]
    assert index_valid(database_url, "hits_id") is True
    assert cli.returncode == 0, cli_err[-3000:]  # it retried and found everything applied
    assert scalar(database_url, "SELECT count(*) FROM hits") == 1
    _no_lock_left(database_url)


def test_yoyo_rollback_edit_and_reapply_is_adopted_not_refused(database_url, tmp_path, run_job):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    write(mdir, "0001_a.rollback.sql", "DROP TABLE a;\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    assert yoyo("rollback", url=database_url, mdir=mdir).returncode == 0
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int, note text);\n")
    res = yoyo("apply", url=database_url, mdir=mdir)
    assert res.returncode == 0, res.stderr
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    readopted = [e for e in events(res.stderr) if e["event"] == "integrity.readopted"]
    assert readopted and readopted[0]["migrations"] == ["0001_a"]
    assert run_job("status", env=env).returncode == 0
    # Adoption is not a blanket pass: an edit nobody applied is still refused.
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int, note text, more int);\n")
    res = run_job("run", env=env)
    assert res.returncode == 5, res.stderr[-3000:]


def test_yoyo_lock_of_another_role_is_warned_about_not_fatal(database_url, tmp_path, run_job):
    """yoyo_lock created by another role's yoyo run: this role cannot take it. The deploy goes
    on with the migration lock and says the yoyo CLI is not kept out."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    role = "r_" + uuid.uuid4().hex[:10]
    query(database_url, 'CREATE TABLE yoyo_lock ("locked" INT DEFAULT 1, "ctime" TIMESTAMP, '
          '"pid" INT NOT NULL, PRIMARY KEY ("locked"))')
    query(database_url, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'; "
          f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
    try:
        parts = urlsplit(database_url)
        url = urlunsplit(parts._replace(netloc=f"{role}:pw-{role}@{parts.hostname}:{parts.port}"))
        mdir = tmp_path / "m"
        _data_migrations(mdir, sleep="0")
        res = run_job("run", env=env_for(url, mdir))
        assert res.returncode == 0, res.stderr[-3000:]
        warned = [e for e in events(res.stderr) if e["event"] == "lock.yoyo_lock_unavailable"]
        assert warned and "not kept out" in warned[0]["reason"]
        _exactly_once(database_url, IDS)
    finally:
        query(database_url, f"DROP OWNED BY {role}; DROP ROLE {role}")
