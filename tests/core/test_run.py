"""`migrate-job run` on a real PostgreSQL: apply, no-op, failures, transaction modes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.core.helpers import (
    applied_ids,
    env_for,
    events,
    query,
    scalar,
    summary,
    table_exists,
    write,
)


def test_apply_to_empty_database_creates_table_and_tracking_row(any_database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_users.sql", "CREATE TABLE users (id int PRIMARY KEY);\n")
    term = tmp_path / "termination-log"
    res = run_job("run", env=env_for(any_database_url, mdir, MIGRATE_TERMINATION_LOG=str(term)))
    assert res.returncode == 0, res.stderr
    assert table_exists(any_database_url, "users")
    assert applied_ids(any_database_url) == ["0001_users"]
    checksum = scalar(any_database_url, "SELECT checksum FROM _migrate_job_migration "
                      "WHERE migration_id = '0001_users'")
    assert len(checksum) == 64
    s = summary(res.stderr)
    assert s["outcome"] == "applied" and s["exit_code"] == 0
    assert [a["id"] for a in s["applied"]] == ["0001_users"]
    assert json.loads(term.read_text())["applied"][0]["id"] == "0001_users"
    # The yoyo log has exactly one 'apply' line for it.
    assert scalar(any_database_url, "SELECT count(*) FROM _yoyo_log WHERE migration_id = "
                  "'0001_users' AND operation = 'apply'") == 1


def test_rerun_logs_nothing_pending_and_changes_nothing(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_users.sql", "CREATE TABLE users (id int PRIMARY KEY);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    before = query(database_url, "SELECT * FROM _yoyo_migration ORDER BY 1")
    before_log = scalar(database_url, "SELECT count(*) FROM _yoyo_log")
    res = run_job("run", env={**env, "MIGRATE_LOG_LEVEL": "debug"})
    assert res.returncode == 0, res.stderr
    assert any(e["event"] == "run.nothing_pending" for e in events(res.stderr))
    assert [e["migration"] for e in events(res.stderr)
            if e["event"] == "migration.skipped"] == ["0001_users"]
    assert summary(res.stderr)["outcome"] == "nothing_pending"
    assert query(database_url, "SELECT * FROM _yoyo_migration ORDER BY 1") == before
    assert scalar(database_url, "SELECT count(*) FROM _yoyo_log") == before_log


def test_failing_migration_reports_file_and_line_and_keeps_earlier(any_database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_ok.sql", "CREATE TABLE ok (id int);\n")
    bad = write(mdir, "0002_bad.sql",
                "-- a comment\nCREATE TABLE half (id int);\n\nINSERT INTO half\n"
                "  SELECT * FROM\n    no_such_table;\n")
    res = run_job("run", env=env_for(any_database_url, mdir))
    assert res.returncode == 8, res.stderr
    s = summary(res.stderr)
    assert s["outcome"] == "migration_failed"
    assert s["error"]["migration"] == "0002_bad"
    assert s["error"]["file"] == str(bad)
    assert s["error"]["line"] == 6  # the line holding no_such_table
    assert s["error"]["sqlstate"] == "42P01"
    assert f"{bad}:6" in s["message"]
    assert "Traceback" not in res.stderr
    # Earlier migration of the run stays; nothing of the failed one.
    assert applied_ids(any_database_url) == ["0001_ok"]
    assert table_exists(any_database_url, "ok")
    assert not table_exists(any_database_url, "half")


def test_tx_mode_all_failure_leaves_database_exactly_as_before(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    snapshot = query(database_url, "SELECT relname FROM pg_class WHERE relnamespace = "
                     "'public'::regnamespace ORDER BY 1")
    log_rows = scalar(database_url, "SELECT count(*) FROM _yoyo_log")
    write(mdir, "0002_b.sql", "CREATE TABLE b (id int);\nINSERT INTO a VALUES (1);\n")
    write(mdir, "0003_c.sql", "CREATE TABLE c (id int);\n")
    write(mdir, "0004_bad.sql", "SELECT 1/0;\n")
    res = run_job("run", env={**env, "MIGRATE_TX_MODE": "all"})
    assert res.returncode == 8, res.stderr
    assert query(database_url, "SELECT relname FROM pg_class WHERE relnamespace = "
                 "'public'::regnamespace ORDER BY 1") == snapshot
    assert scalar(database_url, "SELECT count(*) FROM a") == 0
    assert applied_ids(database_url) == ["0001_a"]
    assert scalar(database_url, "SELECT count(*) FROM _yoyo_log") == log_rows
    # And in the default mode the same files apply 0002 and 0003 before failing on 0004.
    res = run_job("run", env=env)
    assert res.returncode == 8
    assert applied_ids(database_url) == ["0001_a", "0002_b", "0003_c"]


def test_tx_mode_all_success_applies_everything(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    for i in range(1, 4):
        write(mdir, f"000{i}_t.sql", f"CREATE TABLE t{i} (id int);\n")
    res = run_job("run", env={**env_for(database_url, mdir), "MIGRATE_TX_MODE": "all"})
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == ["0001_t", "0002_t", "0003_t"]


def test_create_index_concurrently_migration_applies(any_database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\nINSERT INTO t SELECT generate_series(1,1000);\n")
    write(mdir, "0002_idx.sql", "-- transactional: false\n"
          "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"
          "CREATE INDEX CONCURRENTLY t_id2 ON t ((id * 2));\n")
    res = run_job("run", env=env_for(any_database_url, mdir))
    assert res.returncode == 0, res.stderr
    assert scalar(any_database_url, "SELECT count(*) FROM pg_index i JOIN pg_class c ON "
                  "c.oid = i.indexrelid WHERE c.relname IN ('t_id','t_id2') AND i.indisvalid") == 2
    assert applied_ids(any_database_url) == ["0001_t", "0002_idx"]


def test_failed_non_transactional_migration_reports_what_ran_and_invalid_index(
        any_database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (1);\n")
    write(mdir, "0002_idx.sql", "-- transactional: false\n"
          "CREATE INDEX CONCURRENTLY t_plain ON t (id);\n"
          "CREATE UNIQUE INDEX CONCURRENTLY t_unique ON t (id);\n")
    res = run_job("run", env=env_for(any_database_url, mdir))
    assert res.returncode == 8
    s = summary(res.stderr)
    assert s["error"]["line"] == 3
    assert s["error"]["sqlstate"] == "23505"
    assert s["error"]["executed_statements"] == ["CREATE INDEX CONCURRENTLY t_plain ON t (id);"]
    assert "public.t_unique" in s["error"]["invalid_indexes"]
    assert "INVALID" in s["message"]
    assert applied_ids(any_database_url) == ["0001_t"]


def test_select_results_never_reach_stdout(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_s.sql", "SELECT 'leaky-value-123' AS x;\nCREATE TABLE s (id int);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr
    assert "leaky-value-123" not in res.stdout
    assert "leaky-value-123" not in res.stderr


def test_post_apply_hook_runs_after_non_empty_apply_only(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\nCREATE TABLE hook_runs (n int);\n")
    write(mdir, "post-apply.sql", "INSERT INTO hook_runs VALUES (1);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    assert scalar(database_url, "SELECT count(*) FROM hook_runs") == 1
    assert run_job("run", env=env).returncode == 0  # nothing pending: hook does not run
    assert scalar(database_url, "SELECT count(*) FROM hook_runs") == 1
    assert applied_ids(database_url) == ["0001_t"]  # hooks are never recorded as applied


def test_dependency_order_is_followed(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_child.sql",
          "-- depends: 0002_parent\nCREATE TABLE child (p int REFERENCES parent(id));\n")
    write(mdir, "0002_parent.sql", "CREATE TABLE parent (id int PRIMARY KEY);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr
    order = [r[0] for r in query(database_url, "SELECT migration_id FROM _migrate_job_migration "
                                 "ORDER BY recorded_at_utc")]
    assert order == ["0002_parent", "0001_child"]


def test_github_step_summary_written_as_markdown(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    gh = tmp_path / "gh.md"
    res = run_job("run", env={**env_for(database_url, mdir), "GITHUB_STEP_SUMMARY": str(gh)})
    assert res.returncode == 0
    text = gh.read_text()
    assert "| `0001_t` |" in text and "exit 0" in text


def test_run_history_recorded(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int);\n")
    assert run_job("run", env={**env_for(database_url, mdir), "USER": "deployer"}).returncode == 0
    rows = query(database_url, "SELECT command, outcome, exit_code, username, applied "
                 "FROM _migrate_job_run")
    assert rows[0][:4] == ("run", "applied", 0, "deployer")
    assert rows[0][4][0]["id"] == "0001_t"


def test_migrations_dir_missing_is_config_error(database_url, run_job, tmp_path):
    res = run_job("run", env=env_for(database_url, tmp_path / "nope"))
    assert res.returncode == 2
    assert "MIGRATE_MIGRATIONS_DIR" in summary(res.stderr)["message"]


def test_example_migrations_apply_and_roll_back(database_url, run_job):
    mdir = Path(__file__).resolve().parents[2] / "migrations"
    env = env_for(database_url, mdir)
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert len(applied_ids(database_url)) == 3
    res = run_job("rollback", "--count", "3", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == []
    assert not table_exists(database_url, "customers")


def test_runtime_error_without_server_position_names_the_statement_line(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    bad = write(mdir, "0001_div.sql", "-- header\nCREATE TABLE d (id int);\n\nINSERT INTO d VALUES (1);\n"
                "UPDATE d\n   SET id = id / 0;\nCREATE TABLE never (id int);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 8
    s = summary(res.stderr)
    assert s["error"]["sqlstate"] == "22012"
    assert s["error"]["line"] == 5, s["error"]  # the UPDATE, not the first line of the file
    assert f"{bad}:5" in s["message"]
    assert not table_exists(database_url, "d")


def test_unparsable_sql_is_reported_at_its_line(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_bad.sql",
          "-- transactional: true\nCREATE TABLE ok (id int);\nCREAT TABLE typo (id int);\n")
    res = run_job("run", env={**env_for(database_url, mdir), "MIGRATE_ALLOW_DESTRUCTIVE": "true"})
    # The safety gate already refuses what it cannot parse (AN01, blocking) before anything runs.
    assert res.returncode == 6
    assert summary(res.stderr)["error"]["blocking"][0]["line"] == 3


def test_durations_are_measured_per_migration(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_fast.sql", "CREATE TABLE f (id int);\n")
    write(mdir, "0002_slow.sql", "CREATE TABLE s (id int);\nSELECT pg_sleep(0.3);\n")
    for mode in ("each", "all"):
        query(database_url, "DROP TABLE IF EXISTS f, s, _yoyo_migration, _yoyo_log, _yoyo_version,"
              " _migrate_job_migration, _migrate_job_run")
        res = run_job("run", env={**env_for(database_url, mdir), "MIGRATE_TX_MODE": mode})
        assert res.returncode == 0, res.stderr
        applied = {a["id"]: a["duration_s"] for a in summary(res.stderr)["applied"]}
        assert applied["0002_slow"] >= 0.3 > applied["0001_fast"], (mode, applied)
        ms = dict(query(database_url, "SELECT migration_id, duration_ms FROM _migrate_job_migration"))
        assert ms["0002_slow"] >= 300 and ms["0001_fast"] < 300, (mode, ms)


def test_python_migration_with_sql_and_callable_steps(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_py.py",
          "from yoyo import step\n\n"
          "def fill(conn):\n"
          "    conn.execute(\"INSERT INTO py_t SELECT generate_series(1, 3)\")\n\n"
          "steps = [\n"
          "    step(\"CREATE TABLE py_t (id int)\", \"DROP TABLE py_t\"),\n"
          "    step(fill),\n"
          "]\n")
    env = env_for(database_url, mdir)
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert scalar(database_url, "SELECT count(*) FROM py_t") == 3
    assert run_job("rollback", "--yes", env=env).returncode == 0
    assert not table_exists(database_url, "py_t")
