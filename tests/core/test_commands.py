"""status, plan, new, rollback, mark, unmark, accept-changes, and the integrity check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.conftest import REPO, job_env
from tests.core.helpers import applied_ids, env_for, events, query, scalar, summary, table_exists, write


def _two(mdir: Path) -> None:
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    write(mdir, "0001_a.rollback.sql", "DROP TABLE a;\n")
    write(mdir, "0002_b.sql", "CREATE TABLE b (id int);\nALTER TABLE a ADD COLUMN x int;\n")
    write(mdir, "0002_b.rollback.sql", "DROP TABLE b;\nALTER TABLE a DROP COLUMN x;\n")


def test_new_creates_timestamped_files_with_directives(run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_first.sql", "CREATE TABLE first (id int);\n")
    res = run_job("new", "Add Orders table!", env={"MIGRATE_MIGRATIONS_DIR": str(mdir)})
    assert res.returncode == 0, res.stderr
    paths = [Path(p) for p in res.stdout.split()]
    assert paths[0].name.endswith("_add_orders_table.sql") and len(paths[0].name) == 14 + 1 + 20
    assert paths[1].name.endswith("_add_orders_table.rollback.sql")
    text = paths[0].read_text()
    assert "-- depends: 0001_first" in text
    # The directive hints are comments that yoyo does not read as directives.
    from yoyo.migrations import read_sql_migration

    directives, _, _ = read_sql_migration(str(paths[0]))
    assert directives == {"depends": "0001_first"}


def test_rollback_of_last_removes_its_effect_and_record(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == ["0001_a"]
    assert not table_exists(database_url, "b")
    cols = [r[0] for r in query(database_url, "SELECT column_name FROM information_schema.columns"
                                " WHERE table_name = 'a'")]
    assert cols == ["id"]
    assert scalar(database_url, "SELECT count(*) FROM _migrate_job_migration") == 1
    assert scalar(database_url, "SELECT count(*) FROM _yoyo_log WHERE operation = 'rollback'") == 1
    # Re-running applies it again.
    assert run_job("run", env=env).returncode == 0
    assert applied_ids(database_url) == ["0001_a", "0002_b"]


def test_rollback_to_keeps_the_named_migration(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    write(mdir, "0003_c.sql", "CREATE TABLE c (id int);\n")
    write(mdir, "0003_c.rollback.sql", "DROP TABLE c;\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    assert run_job("rollback", "--to", "0001_a", "--yes", env=env).returncode == 0
    assert applied_ids(database_url) == ["0001_a"]


def test_rollback_without_script_stops_before_anything(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    write(mdir, "0003_c.sql", "CREATE TABLE c (id int);\n")  # no rollback script
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    res = run_job("rollback", "--count", "2", "--yes", env=env)
    assert res.returncode == 2
    assert "0003_c" in summary(res.stderr)["message"]
    assert applied_ids(database_url) == ["0001_a", "0002_b", "0003_c"]
    assert table_exists(database_url, "b")


def test_failed_rollback_is_atomic(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\nCREATE TABLE a2 (id int);\n")
    write(mdir, "0001_a.rollback.sql", "DROP TABLE a;\nDROP TABLE nope;\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 8
    assert summary(res.stderr)["error"]["file"].endswith("0001_a.rollback.sql")
    assert table_exists(database_url, "a") and applied_ids(database_url) == ["0001_a"]


def test_changing_commands_refuse_without_yes(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    for args in (["rollback"], ["mark", "0001_a"], ["unmark", "0001_a"],
                 ["accept-changes", "0001_a"]):
        res = subprocess.run([sys.executable, "-m", "job", *args], env=job_env(**env),
                             capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             cwd=str(REPO))
        assert res.returncode == 2, (args, res.stderr)
        assert "--yes" in res.stderr
    assert applied_ids(database_url) == ["0001_a", "0002_b"]


def test_edited_applied_file_exits_5_and_applies_nothing(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    write(mdir, "0002_b.sql", "CREATE TABLE b (id int);\n")
    res = run_job("run", env=env)
    assert res.returncode == 5, res.stderr
    assert str(mdir / "0001_a.sql") in summary(res.stderr)["message"]
    assert not table_exists(database_url, "b")
    # status reports it too
    st = run_job("status", "--json", env=env)
    assert st.returncode == 5
    assert json.loads(st.stdout)["changed"][0]["id"] == "0001_a"
    # accept-changes after review lets the deploy proceed
    assert run_job("accept-changes", "0001_a", "--yes", env=env).returncode == 0
    assert run_job("run", env=env).returncode == 0
    assert table_exists(database_url, "b")


def test_crlf_only_change_is_not_an_edit(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\nCREATE TABLE a2 (id int);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    (mdir / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\r\nCREATE TABLE a2 (id int);\r\n")
    assert run_job("run", env=env).returncode == 0


def test_unknown_applied_migration_warns_or_fails(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    (mdir / "0002_b.sql").unlink()
    res = run_job("run", env=env)
    assert res.returncode == 0
    assert any(e["event"] == "integrity.unknown_applied" for e in events(res.stderr))
    res = run_job("run", env={**env, "MIGRATE_ON_UNKNOWN": "fail"})
    assert res.returncode == 5
    assert "0002_b" in summary(res.stderr)["message"]


def test_status_json_and_exit_10_when_pending(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    env = env_for(database_url, mdir)
    res = run_job("status", "--json", env=env)
    assert res.returncode == 10, res.stderr
    data = json.loads(res.stdout)
    assert [p["id"] for p in data["pending"]] == ["0001_a", "0002_b"]
    assert not table_exists(database_url, "_yoyo_migration")  # status never writes
    assert run_job("run", env=env).returncode == 0
    res = run_job("status", env=env)
    assert res.returncode == 0
    assert "2 applied, 0 pending" in res.stdout


def test_plan_is_read_only_and_lists_pending(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _two(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0003_c.sql", "-- transactional: false\nCREATE INDEX CONCURRENTLY ai ON a (id);\n")
    before = query(database_url, "SELECT relname FROM pg_class ORDER BY 1")
    res = run_job("plan", "--json", env=env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [p["id"] for p in data["pending"]] == ["0003_c"]
    assert data["pending"][0]["transactional"] is False
    assert query(database_url, "SELECT relname FROM pg_class ORDER BY 1") == before
    text = run_job("plan", env=env)
    assert "would apply 0003_c  (pre, NON-transactional" in text.stdout


def test_mark_and_unmark_adopt_an_existing_database(database_url, run_job, tmp_path):
    query(database_url, "CREATE TABLE legacy (id int)")
    mdir = tmp_path / "m"
    write(mdir, "0001_legacy.sql", "CREATE TABLE legacy (id int);\n")
    write(mdir, "0002_new.sql", "CREATE TABLE newer (id int);\n")
    env = env_for(database_url, mdir)
    res = run_job("mark", "0001_legacy", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == ["0001_legacy"]
    assert scalar(database_url, "SELECT how FROM _migrate_job_migration") == "marked"
    assert run_job("run", env=env).returncode == 0
    assert table_exists(database_url, "newer")
    assert run_job("unmark", "0002_new", "--yes", env=env).returncode == 0
    assert applied_ids(database_url) == ["0001_legacy"]
    assert table_exists(database_url, "newer")  # unmark does not roll back
    assert run_job("mark", "9999_nope", "--yes", env=env).returncode == 2


def test_yoyo_cli_applied_migrations_are_adopted_and_yoyo_reads_ours(database_url, run_job,
                                                                      tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    yoyo = str(Path(sys.executable).parent / "yoyo")
    res = subprocess.run([yoyo, "apply", "--batch", "--database", _yoyo_url(database_url), str(mdir)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                              "USER": "tester", "HOME": "/tmp"})
    assert res.returncode == 0, res.stderr
    write(mdir, "0002_b.sql", "CREATE TABLE b (id int);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr
    adopted = [e for e in events(res.stderr) if e["event"] == "integrity.adopted"]
    assert adopted and adopted[0]["migrations"] == ["0001_a"]
    assert scalar(database_url, "SELECT how FROM _migrate_job_migration WHERE "
                  "migration_id = '0001_a'") == "adopted"
    # The yoyo CLI sees our database as fully applied.
    res = subprocess.run([yoyo, "list", "--database", _yoyo_url(database_url), str(mdir)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                              "USER": "tester", "HOME": "/tmp"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("A ") >= 2 and "U " not in res.stdout, res.stdout


def test_bad_migration_sets_exit_2_naming_the_file(database_url, run_job, tmp_path):
    cases = {
        "missing-dep": {"0001_a.sql": "-- depends: 0000_gone\nCREATE TABLE a (id int);\n"},
        "cycle": {"0001_a.sql": "-- depends: 0002_b\nSELECT 1;\n",
                  "0002_b.sql": "-- depends: 0001_a\nSELECT 1;\n"},
        "duplicate": {"0001_a.sql": "SELECT 1;\n", "0001_a.py": "steps = []\n"},
        "bad-directive": {"0001_a.sql": "-- transactional: maybe\nSELECT 1;\n"},
    }
    for name, files in cases.items():
        mdir = tmp_path / name
        for fname, text in files.items():
            write(mdir, fname, text)
        res = run_job("run", env=env_for(database_url, mdir))
        assert res.returncode == 2, (name, res.stderr)
        msg = summary(res.stderr)["message"]
        assert "0001_a" in msg or "0002_b" in msg, (name, msg)
    assert not table_exists(database_url, "_yoyo_migration") or applied_ids(database_url) == []


def test_no_database_configured_exits_2(run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "SELECT 1;\n")
    res = run_job("run", env={"MIGRATE_MIGRATIONS_DIR": str(mdir)})
    assert res.returncode == 2
    assert "no database configured" in summary(res.stderr)["message"]


def test_libpq_environment_variables_are_used(pg_server, database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    env = {"MIGRATE_MIGRATIONS_DIR": str(mdir), "PGHOST": str(info["host"]),
           "PGPORT": str(info["port"]), "PGUSER": str(info["user"]),
           "PGPASSWORD": str(info["password"]), "PGDATABASE": str(info["dbname"])}
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert table_exists(database_url, "a")


def test_bad_settings_are_reported_together_with_exit_2(run_job):
    res = run_job("run", env={"MIGRATE_DATABASE_URL": "postgresql://x@h/db",
                              "MIGRATE_LOCK_WAIT": "soon", "MIGRATE_TX_MODE": "some",
                              "MIGRATE_LOCK_RETRIES": "-1"})
    assert res.returncode == 2
    for var in ("MIGRATE_LOCK_WAIT", "MIGRATE_TX_MODE", "MIGRATE_LOCK_RETRIES"):
        assert var in res.stderr


def _yoyo_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)
