"""The safety gate inside `run` and `plan`, on a real PostgreSQL."""

from __future__ import annotations

import json

import psycopg

from tests.core.helpers import applied_ids, env_for, events, query, summary, table_exists, write


def _base(database_url: str, run_job, mdir) -> dict[str, str]:
    write(mdir, "0001_t.sql", "CREATE TABLE t (id int, legacy text);\nINSERT INTO t VALUES (1, 'x');\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    return env


def test_unapproved_destructive_migration_exits_6_changes_nothing_takes_no_backup(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = _base(database_url, run_job, mdir)
    backups = tmp_path / "backups"
    backups.mkdir()
    write(mdir, "0002_drop.sql", "CREATE TABLE other (id int);\nALTER TABLE t DROP COLUMN legacy;\n")
    before = query(database_url, "SELECT * FROM _yoyo_log ORDER BY id")
    res = run_job("run", env={**env, "MIGRATE_BACKUP": f"file://{backups}"})
    assert res.returncode == 6, res.stderr
    s = summary(res.stderr)
    assert s["outcome"] == "safety_refused"
    assert s["error"]["blocking"][0]["rule"] == "DL02"
    assert s["error"]["blocking"][0]["line"] == 2
    assert "0002_drop.sql:2" in s["message"]
    assert applied_ids(database_url) == ["0001_t"]
    assert not table_exists(database_url, "other")
    assert query(database_url, "SELECT * FROM _yoyo_log ORDER BY id") == before
    assert list(backups.iterdir()) == []  # no backup taken


def test_approved_destructive_migration_applies_and_approval_travels_with_content(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = _base(database_url, run_job, mdir)
    write(mdir, "0002_drop.sql", '-- migrate-job: approve DL02 "legacy unused since v41"\n'
          "ALTER TABLE t DROP COLUMN legacy;\n")
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    found = [f for f in summary(res.stderr)["findings"] if f["rule"] == "DL02"]
    assert found and found[0]["approved_by"]
    # Editing the approved, applied file (e.g. removing the approval) is an integrity refusal.
    write(mdir, "0002_drop.sql", "ALTER TABLE t DROP COLUMN legacy;\n")
    assert run_job("run", env=env).returncode == 5


def test_allow_destructive_applies_and_is_logged_loudly(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = _base(database_url, run_job, mdir)
    write(mdir, "0002_drop.sql", "DROP TABLE t;\n")
    res = run_job("run", env={**env, "MIGRATE_ALLOW_DESTRUCTIVE": "true"})
    assert res.returncode == 0, res.stderr
    assert any(e["event"] == "safety.allow_destructive" and e["level"] == "warning"
               for e in events(res.stderr))
    assert not table_exists(database_url, "t")


def test_cic_in_transactional_migration_is_refused_before_anything_runs(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = _base(database_url, run_job, mdir)
    write(mdir, "0002_idx.sql", "CREATE TABLE x (id int);\nCREATE INDEX CONCURRENTLY ti ON t (id);\n")
    res = run_job("run", env=env)
    assert res.returncode == 6, res.stderr
    assert summary(res.stderr)["error"]["blocking"][0]["rule"] == "TX01"
    assert not table_exists(database_url, "x")


def test_plan_takes_no_lock_stronger_than_access_share_and_changes_nothing(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    env = _base(database_url, run_job, mdir)
    query(database_url, "INSERT INTO t SELECT g, 'v' FROM generate_series(2, 20000) g; ANALYZE t")
    write(mdir, "0002_type.sql", "ALTER TABLE t ALTER COLUMN id TYPE bigint;\n")
    catalog = "SELECT relname, relkind FROM pg_class ORDER BY 1, 2"
    before = (query(database_url, catalog), query(database_url, "SELECT * FROM _yoyo_log ORDER BY id"))
    # EXCLUSIVE conflicts with every lock except ACCESS SHARE: plan would hang if it took more.
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE t, _yoyo_migration, _migrate_job_migration IN EXCLUSIVE MODE")
        res = run_job("plan", "--json", env={**env, "MIGRATE_LOCK_TIMEOUT": "1s"}, timeout=60)
        holder.rollback()
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    rewrite = [f for f in data["safety"]["findings"] if f["rule"] == "RW01"]
    assert rewrite, data["safety"]["findings"]
    assert "rows" in rewrite[0]["message"] and " on t " in rewrite[0]["message"]
    after = (query(database_url, catalog), query(database_url, "SELECT * FROM _yoyo_log ORDER BY id"))
    assert after == before
    md = run_job("plan", "--markdown", env=env)
    assert "| `0002_type` |" in md.stdout and "RW01" in md.stdout
