"""The real CLI as a subprocess (JSON logs): what tools and operators rely on."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from tests.core.helpers import applied_ids, env_for, events, summary, table_exists, write


class Listener:
    """A TCP port that records whether anything connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener():
    lis = Listener()
    yield lis
    lis.close()


def test_bare_command_prints_help_exits_2_and_never_connects(run_job, listener, database_url,
                                                              tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\n")
    # The application's DATABASE_URL in the shell: typing the tool's name must not migrate it.
    res = run_job(env={"DATABASE_URL": f"postgresql://app@127.0.0.1:{listener.port}/app",
                       "MIGRATE_MIGRATIONS_DIR": str(mdir)})
    assert res.returncode == 2
    assert "usage: migrate-job" in res.stderr and "commands:" in res.stderr
    res = run_job(env={"MIGRATE_DATABASE_URL": database_url, "MIGRATE_MIGRATIONS_DIR": str(mdir)})
    assert res.returncode == 2
    assert listener.connections == 0
    assert not table_exists(database_url, "t")
    assert not table_exists(database_url, "_yoyo_migration")


def test_flag_before_the_command_picks_the_database(run_job, listener, database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\n")
    env = env_for(f"postgresql://wrong@127.0.0.1:{listener.port}/wrong", mdir,
                  MIGRATE_DB_WAIT="1s")
    res = run_job("--database-url", database_url, "status", env=env)
    assert res.returncode == 10, res.stderr
    assert summary(res.stderr)["database"].endswith("/" + database_url.rsplit("/", 1)[1])
    assert listener.connections == 0
    res = run_job("--migrations-dir", str(tmp_path / "nope"), "status",
                  env=env_for(database_url, mdir))
    assert res.returncode == 2
    assert "nope" in summary(res.stderr)["message"]


def test_allow_destructive_before_plan_is_honoured(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint, legacy text);\n"
          "INSERT INTO t VALUES (1, 'x');\n")  # data in the column: the drop blocks
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0002_drop.sql", "ALTER TABLE t DROP COLUMN legacy;\n")
    assert run_job("plan", env=env).returncode == 6
    assert run_job("--allow-destructive", "plan", env=env).returncode == 0
    assert run_job("plan", "--allow-destructive", env=env).returncode == 0


def test_unknown_variable_is_a_warning_event_naming_the_closest(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\n")
    res = run_job("status", env={**env_for(database_url, mdir), "MIGRATE_LOCKWAIT": "5m",
                                 "MIGRATE_DATABSE_URL": "postgresql://x@y/z"})
    warned = {e["variable"]: e for e in events(res.stderr)
              if e["event"] == "config.unknown_variable"}
    assert warned["MIGRATE_LOCKWAIT"]["level"] == "warning"
    assert warned["MIGRATE_LOCKWAIT"]["did_you_mean"] == "MIGRATE_LOCK_WAIT"
    assert "did you mean MIGRATE_LOCK_WAIT?" in warned["MIGRATE_LOCKWAIT"]["message"]
    assert warned["MIGRATE_DATABSE_URL"]["did_you_mean"] == "MIGRATE_DATABASE_URL"
    assert "postgresql://x@y/z" not in res.stderr  # the value of a typo may be a secret


def test_typo_is_named_even_when_the_configuration_fails(run_job, tmp_path):
    res = run_job("run", env={"MIGRATE_DATABSE_URL": "postgresql://x@y/z",
                              "MIGRATE_MIGRATIONS_DIR": str(tmp_path)})
    assert res.returncode == 2
    warned = [e for e in events(res.stderr) if e["event"] == "config.unknown_variable"]
    assert warned and warned[0]["did_you_mean"] == "MIGRATE_DATABASE_URL"
    assert "no database configured" in summary(res.stderr)["message"]


def test_config_error_still_ends_with_a_summary(run_job):
    res = run_job("run", env={"MIGRATE_DATABASE_URL": "postgresql://x@h/db",
                              "MIGRATE_LOCK_WAIT": "soon"})
    assert res.returncode == 2
    s = summary(res.stderr)
    assert s["outcome"] == "config_error" and s["exit_code"] == 2
    assert "MIGRATE_LOCK_WAIT" in s["message"]
    assert events(res.stderr)[-1]["event"] == "migrate.summary"


def test_run_refused_for_a_changed_file_still_reports_what_is_pending(run_job, database_url,
                                                                      tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint, x int);\n")
    write(mdir, "0002_b.sql", "CREATE TABLE b (id bigint);\n")
    res = run_job("run", env=env)
    assert res.returncode == 5
    s = summary(res.stderr)
    assert s["pending"] == ["0002_b"]
    assert s["database"].endswith("/" + database_url.rsplit("/", 1)[1])
    assert s["applied"] == []


def test_status_summary_lists_what_the_database_has_applied(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    for i in range(1, 4):
        write(mdir, f"000{i}_t{i}.sql", f"CREATE TABLE t{i} (id bigint);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0004_t4.sql", "CREATE TABLE t4 (id bigint);\n")
    res = run_job("status", env=env)
    assert res.returncode == 10
    s = summary(res.stderr)
    assert [a["id"] for a in s["applied"]] == ["0001_t1", "0002_t2", "0003_t3"]
    assert s["pending"] == ["0004_t4"]


def test_summary_names_the_database_when_the_command_stops_before_connecting(run_job,
                                                                             tmp_path):
    res = run_job("run", env={"MIGRATE_DATABASE_URL": "postgresql://app:pw@db.internal:6543/app",
                              "MIGRATE_MIGRATIONS_DIR": str(tmp_path / "missing")})
    assert res.returncode == 2
    s = summary(res.stderr)
    assert s["database"] == "app@db.internal:6543/app"
    assert "pw" not in res.stderr


def test_demo_outside_the_repository_says_where_migrations_are_expected(run_job, tmp_path):
    res = run_job("demo", cwd=str(tmp_path))
    assert res.returncode == 2
    assert "demo applies the migrations in ./migrations, which is not a directory" in res.stderr
    assert "None" not in res.stdout + res.stderr


def test_failure_event_carries_each_fact_once(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_bad.sql",
          "CREATE TABLE p (id bigint PRIMARY KEY);\nINSERT INTO p VALUES (1), (1);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 8
    failed = next(e for e in events(res.stderr) if e["event"] == "run.failed")
    s = summary(res.stderr)
    detail = s["error"]["detail"]
    assert detail == "Key (id)=(1) already exists."
    for event in (failed, s):
        line = json.dumps(event)
        # The server's message and its DETAIL each appear once per event.
        assert line.count("duplicate key value violates unique constraint") == 1, line
        assert line.count("already exists") == 1, line
        assert "null" not in line.replace('"backup": null', "")


def test_termination_log_is_not_written_outside_kubernetes(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\n")
    env = env_for(database_url, mdir)
    del env["MIGRATE_LOCK_WAIT"]
    path = Path("/dev/termination-log")
    before = path.stat().st_mtime_ns if path.exists() else None
    # job_env sets MIGRATE_TERMINATION_LOG for tests; an empty value is "not configured".
    res = run_job("run", env={**env, "MIGRATE_TERMINATION_LOG": ""})
    assert res.returncode == 0, res.stderr
    after = path.stat().st_mtime_ns if path.exists() else None
    assert after == before


def test_termination_log_is_written_inside_kubernetes_when_configured(run_job, database_url,
                                                                     tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\n")
    term = tmp_path / "term"
    res = run_job("run", env={**env_for(database_url, mdir), "MIGRATE_TERMINATION_LOG": str(term),
                              "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert res.returncode == 0, res.stderr
    assert json.loads(term.read_text())["applied"][0]["id"] == "0001_t"


@pytest.mark.slow
def test_no_json_log_line_is_over_16_kib_on_any_command(run_job, database_url, tmp_path):
    mdir = tmp_path / "m"
    n = 400
    for i in range(n):
        # int4 columns: an informational finding each, and long ids for long lists.
        write(mdir, f"{i:04d}_create_a_table_with_a_rather_long_descriptive_name.sql",
              f"CREATE TABLE t{i} (id int);\n")
    env = env_for(database_url, mdir)
    outputs = {"run": run_job("run", env=env, timeout=300)}
    assert outputs["run"].returncode == 0, outputs["run"].stderr[-3000:]
    assert len(applied_ids(database_url)) == n
    # A non-transactional failure after 3,000 statements: its error lists what ran.
    write(mdir, "9999_big.sql", "-- transactional: false\n" + "SELECT 1;\n" * 3000
          + "SELECT * FROM no_such_table;\n")
    outputs["status"] = run_job("status", env=env)
    outputs["plan"] = run_job("plan", "--json", env=env)
    outputs["failed"] = run_job("run", env=env, timeout=300)
    assert outputs["failed"].returncode == 8, outputs["failed"].stderr[-3000:]
    failed = next(e for e in events(outputs["failed"].stderr) if e["event"] == "run.failed")
    assert any("executed_statements: 3000 items" in t for t in failed["truncated"])
    for name, res in outputs.items():
        for line in res.stderr.splitlines():
            assert len(line.encode()) <= 16 * 1024, (name, len(line.encode()), line[:300])
    # The summary's long lists keep their first items and say how many there were.
    s = summary(outputs["status"].stderr)
    assert len(s["applied"]) < n
    assert s.get("applied_total") == n or any("applied" in t for t in s.get("truncated", []))
    s = summary(outputs["run"].stderr)
    assert s["findings_by_rule"]["HY01"] == n
    assert s.get("applied_total") == n or "truncated" in s
    assert os.path.getsize(mdir / "9999_big.sql") > 16 * 1024
