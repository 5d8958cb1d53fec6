# ruff: noqa: E501  (SQL cases read best on one line each)
"""The gate inside the real CLI: what `run` refuses before anything runs, quiet and bounded
logs on long histories, and `plan --json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.core.helpers import applied_ids, env_for, events, query, summary, table_exists, write

LINE_LIMIT = 16 * 1024


def test_commit_in_a_transactional_migration_is_refused_with_exit_2_naming_file_and_line(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_ok.sql", "CREATE TABLE kept (id bigint);\n")
    bad = write(mdir, "0002_commit.sql", "CREATE TABLE half (id bigint);\nCOMMIT;\nCREATE TABLE other (id bigint);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 2, res.stderr
    s = summary(res.stderr)
    assert f"{bad}:2" in s["message"] and "transaction control" in s["message"]
    assert applied_ids(database_url) == [] and not table_exists(database_url, "kept")
    assert not table_exists(database_url, "half")
    # Not approvable: it would still commit half the migration.
    write(mdir, "0002_commit.sql", '-- migrate-job: approve TX02 "we know"\nCREATE TABLE half (id bigint);\nCOMMIT;\n')
    assert run_job("run", env=env_for(database_url, mdir)).returncode == 2
    plan = run_job("plan", env=env_for(database_url, mdir))
    assert plan.returncode == 2 and "run would refuse" in summary(plan.stderr)["message"]


def test_syntax_error_stops_before_anything_runs_and_says_so(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_ok.sql", "CREATE TABLE kept (id bigint);\n")
    bad = write(mdir, "0002_typo.sql", "CREATE TABLE a (id bigint);\nALTER TABEL a ADD COLUMN b bigint;\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 6, res.stderr
    message = summary(res.stderr)["message"]
    assert message.startswith(f"syntax error at {bad}:2: ")
    assert "MIGRATE_ALLOW_DESTRUCTIVE" not in message and "unapproved" not in message
    assert not table_exists(database_url, "kept")


def _history(mdir: Path) -> None:
    """A small real-shaped history: later migrations drop and reshape what earlier ones made."""
    write(mdir, "0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY, email text, legacy text);\nINSERT INTO users VALUES (1, 'a@b', 'x');\n")
    write(mdir, "0002_audit.sql", "CREATE TABLE audit (id bigint, at timestamptz);\nCREATE INDEX audit_at ON audit (at);\n")
    write(mdir, "0003_reshape.sql", "ALTER TABLE users DROP COLUMN legacy;\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\nDELETE FROM users WHERE id = 1;\n")
    write(mdir, "0004_drop.sql", "DROP TABLE audit;\nDROP TABLE IF EXISTS never_existed;\n")


def test_fresh_database_history_runs_with_no_blocking_finding(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _history(mdir)
    env = env_for(database_url, mdir)
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    s = summary(res.stderr)
    assert [f for f in s.get("findings", []) if f["blocking"]] == []
    levels = {(e["event"], e["level"]) for e in events(res.stderr) if e["event"].startswith("safety.")}
    assert ("safety.finding", "error") not in levels


def test_populated_database_blocks_the_destructive_migration_and_approval_releases_it(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _history(mdir)
    env = env_for(database_url, mdir)
    (mdir / "0003_reshape.sql").rename(tmp_path / "0003")
    (mdir / "0004_drop.sql").rename(tmp_path / "0004")
    assert run_job("run", env=env).returncode == 0
    query(database_url, "INSERT INTO audit VALUES (1, now())")
    (tmp_path / "0003").rename(mdir / "0003_reshape.sql")
    (tmp_path / "0004").rename(mdir / "0004_drop.sql")
    res = run_job("run", env=env)
    assert res.returncode == 6, res.stderr
    blocking = [(f["migration"], f["rule"]) for f in summary(res.stderr)["findings"] if f["blocking"]]
    assert blocking == [("0003_reshape", "DL02"), ("0003_reshape", "DL06"), ("0004_drop", "DL01")]
    errors = [e for e in events(res.stderr) if e["event"] == "safety.finding" and e.get("blocking")]
    assert errors and all(e["level"] == "error" for e in errors)
    write(mdir, "0003_reshape.sql", '-- migrate-job: approve DL02 "legacy unused since v41"\n-- migrate-job: approve DL06 "test user"\n'
          "ALTER TABLE users DROP COLUMN legacy;\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\nDELETE FROM users WHERE id = 1;\n")
    write(mdir, "0004_drop.sql", '-- migrate-job: approve DL01 "audit moved to the warehouse"\nDROP TABLE audit;\nDROP TABLE IF EXISTS never_existed;\n')
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert not table_exists(database_url, "audit")


def test_info_findings_are_counted_not_logged_unless_debug(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int, at timestamp, code char(2));\n")
    env = env_for(database_url, mdir)
    plan = run_job("plan", "--json", env=env)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)
    infos = [f for f in data["safety"]["findings"] if f["severity"] == "info"]
    assert infos  # plan --json keeps every finding
    logged = [e for e in events(plan.stderr) if e["event"] == "safety.finding"]
    assert logged == []
    (counted,) = [e for e in events(plan.stderr) if e["event"] == "safety.summary"]
    assert counted["by_severity"]["info"] == len(infos)
    assert summary(plan.stderr)["findings_by_rule"]["HY01"] >= 1
    debug = run_job("plan", env={**env, "MIGRATE_LOG_LEVEL": "debug"})
    assert len([e for e in events(debug.stderr) if e["event"] == "safety.finding"]) == len(infos)
    safety = data["safety"]
    assert safety["schema"] == "migrate-job.safety/v1" and safety["pg_version"] >= 140000
    assert {"findings", "blocking", "error", "warning", "info", "by_rule"} <= set(safety["summary"])
    assert not any(f["rule"] in ("LK17", "LK18") for f in safety["findings"] if f["rule"] == "LK17")


def test_plan_counts_statements_without_yoyos_sqlparse_splitter(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_t.sql", "CREATE TABLE t (id bigint);\nINSERT INTO t VALUES (1);\nCREATE INDEX ti ON t (id);\n")
    write(mdir, "0001_t.rollback.sql", "DROP TABLE t;\n")
    code = ("import sys, sqlparse\n"
            "def boom(*a, **k):\n    raise SystemExit('sqlparse.split called')\n"
            "sqlparse.split = boom\n"
            "from job.cli import main\nsys.exit(main(['plan', '--json']))\n")
    import subprocess

    from tests.conftest import REPO, job_env
    res = subprocess.run([sys.executable, "-c", code], env=job_env(**env_for(database_url, mdir)),
                         capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert res.returncode == 0, res.stderr
    (pending,) = json.loads(res.stdout)["pending"]
    assert pending["statements"] == 3 and pending["has_rollback"] is True


def _long_history(mdir: Path, n: int = 500) -> None:
    write(mdir, "0000_base.sql", "CREATE TABLE base (id int, note varchar(20), at timestamp);\n")
    for i in range(1, n):
        write(mdir, f"{i:04d}_step.sql",
              f"-- depends: {i - 1:04d}_{'base' if i == 1 else 'step'}\n"
              f"CREATE TABLE t{i} (id serial PRIMARY KEY, code char(3), at timestamp, n int);\n"
              f"CREATE INDEX t{i}_at ON t{i} (at);\n"
              f"ALTER TABLE base ADD COLUMN c{i} int;\n"
              + (f"DROP TABLE IF EXISTS t{i - 1};\n" if i > 1 else ""))


def _assert_bounded(stderr: str) -> None:
    lines = stderr.splitlines()
    assert lines
    too_long = [len(line.encode()) for line in lines if len(line.encode()) > LINE_LIMIT]
    assert too_long == [], too_long


def test_no_log_line_over_16_kib_on_a_500_migration_history(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _long_history(mdir)
    env = {**env_for(database_url, mdir), "MIGRATE_LOG_FORMAT": "json"}
    plan = run_job("plan", "--json", env=env, timeout=600)
    assert plan.returncode == 0, plan.stderr[-2000:]
    _assert_bounded(plan.stderr)
    data = json.loads(plan.stdout)
    assert len(data["pending"]) == 500 and data["safety"]["summary"]["findings"] > 1000
    assert len(data["safety"]["findings"]) == data["safety"]["summary"]["findings"]
    lint = run_job("lint", str(mdir), env=env, timeout=600)
    assert lint.returncode == 0, lint.stderr[-2000:]
    _assert_bounded(lint.stderr)
    res = run_job("run", env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    _assert_bounded(res.stderr)
    s = summary(res.stderr)
    assert s["applied_total"] == 500 and len(s["applied"]) < 500
    # A history that blocks everywhere: the refusal stays bounded too.
    for i in range(1, 200):
        write(mdir, f"{i + 499:04d}_drop.sql", f"-- depends: {i + 498:04d}_{'step' if i == 1 else 'drop'}\nALTER TABLE base DROP COLUMN c{i};\n")
    query(database_url, "INSERT INTO base (id, c1) SELECT g, g FROM generate_series(1, 3) g; UPDATE base SET " + ", ".join(f"c{i} = 1" for i in range(1, 200)))
    refused = run_job("run", env=env, timeout=600)
    assert refused.returncode == 6
    _assert_bounded(refused.stderr)
    s = summary(refused.stderr)
    assert s["error"]["blocking_total"] == 199 and s.get("findings_omitted", 0) + len(s["findings"]) >= 199
