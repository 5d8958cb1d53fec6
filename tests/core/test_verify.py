"""Verify scripts (NNNN_name.verify.sql): assertions that run right after a migration, in its
transaction; a failing one rolls the migration back (exit 8), or for a non-transactional
migration stops the run with exit 9 saying what stayed applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from job import migrations
from job.errors import ConfigError
from tests.core.helpers import applied_ids, env_for, scalar, summary, table_exists, write

UP = "CREATE TABLE items (id bigint PRIMARY KEY, price bigint NOT NULL);\n" \
     "INSERT INTO items VALUES (1, 10), (2, 20);\n"


def _setup(mdir: Path, verify: str, up: str = UP) -> None:
    write(mdir, "0001_items.sql", up)
    write(mdir, "0001_items.verify.sql", verify)


def test_passing_verify_script_lets_the_migration_commit(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _setup(mdir, "-- both rows are there\nSELECT count(*) = 2 FROM items;\n"
           "SELECT to_regclass('items_pkey') IS NOT NULL;\n"
           "DO $$ BEGIN IF (SELECT sum(price) FROM items) <> 30 THEN RAISE 'bad sum'; END IF; "
           "END $$;\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == ["0001_items"]  # the verify file is not a migration


@pytest.mark.parametrize(("verify", "line", "problem"), [
    ("-- prices are positive\n\nSELECT count(*) = 3 FROM items;\n", 3, "returned false"),
    ("SELECT true;\n-- a row that does not exist\nSELECT price > 0 FROM items WHERE id = 99;\n",
     3, "returned no row"),
    ("SELECT true;\nSELECT NULL::boolean;\n", 2, "returned NULL"),
    ("SELECT true;\n\nSELECT\n  no_such_column\nFROM items;\n", 4, "no_such_column"),
])
def test_failing_verify_rolls_the_migration_back_naming_file_and_line(
        database_url, run_job, tmp_path, verify, line, problem):
    mdir = tmp_path / "m"
    _setup(mdir, verify)
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 8, res.stderr
    s = summary(res.stderr)
    where = f"{mdir / '0001_items.verify.sql'}:{line}"
    assert where in s["message"], s["message"]
    assert problem in s["message"]
    assert s["error"]["file"] == str(mdir / "0001_items.verify.sql")
    assert s["error"]["line"] == line
    assert not table_exists(database_url, "items")  # rolled back
    assert applied_ids(database_url) == []


def test_failing_verify_in_tx_mode_all_rolls_back_the_whole_batch(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0000_first.sql", "CREATE TABLE first (id bigint);\n")
    _setup(mdir, "SELECT count(*) = 5 FROM items;\n")
    res = run_job("run", env=env_for(database_url, mdir, MIGRATE_TX_MODE="all"))
    assert res.returncode == 8, res.stderr
    assert "0001_items.verify.sql:1" in summary(res.stderr)["message"]
    assert not table_exists(database_url, "first")


def test_verify_script_of_a_python_migration_runs_in_its_transaction(
        database_url, run_job, tmp_path):
    """Python migrations run step by step (not pipelined): the same contract holds."""
    mdir = tmp_path / "m"
    write(mdir, "0001_py.py",
          "from yoyo import step\n\n"
          "def fill(conn):\n"
          "    conn.execute(\"INSERT INTO py_t SELECT generate_series(1, 3)\")\n\n"
          "steps = [step(\"CREATE TABLE py_t (id int)\", \"DROP TABLE py_t\"), step(fill)]\n")
    write(mdir, "0001_py.verify.sql", "SELECT count(*) = 3 FROM py_t;\n"
          "SELECT max(id) = 4 FROM py_t;\n")
    env = env_for(database_url, mdir)
    res = run_job("run", env=env)
    assert res.returncode == 8, res.stderr
    assert f"{mdir / '0001_py.verify.sql'}:2" in summary(res.stderr)["message"]
    assert not table_exists(database_url, "py_t")
    write(mdir, "0001_py.verify.sql", "SELECT count(*) = 3 FROM py_t;\n")
    assert run_job("run", env=env).returncode == 0
    assert applied_ids(database_url) == ["0001_py"]


def test_non_transactional_verify_failure_exits_9_saying_what_stayed_applied(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_items.sql", UP)
    write(mdir, "0002_idx.sql", "-- depends: 0001_items\n-- transactional: false\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_price ON items (price);\n")
    write(mdir, "0002_idx.verify.sql",
          "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_price'::regclass;\n"
          "SELECT count(*) = 0 FROM items;\n")
    env = env_for(database_url, mdir)
    res = run_job("run", env=env)
    assert res.returncode == 9, res.stderr
    s = summary(res.stderr)
    assert f"{mdir / '0002_idx.verify.sql'}:2" in s["message"]
    assert "stayed applied" in s["message"]
    assert s["error"]["executed_statements"] == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_price ON items (price);"]
    assert scalar(database_url, "SELECT to_regclass('items_price') IS NOT NULL")
    assert applied_ids(database_url) == ["0001_items"]  # not recorded: the rerun verifies again
    # The record of the schema matches what stayed: no drift, the migration is pending.
    st = run_job("status", "--json", env=env)
    assert st.returncode == 10
    assert json.loads(st.stdout)["schema"]["state"] == "clean"
    write(mdir, "0002_idx.verify.sql",
          "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_price'::regclass;\n")
    assert run_job("run", env=env).returncode == 0
    assert applied_ids(database_url) == ["0001_items", "0002_idx"]


def test_non_transactional_verify_error_exits_9(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_idx.sql", "-- transactional: false\nCREATE TABLE IF NOT EXISTS t (a int);\n")
    write(mdir, "0001_idx.verify.sql", "SELECT 1/0 = 1;\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 9, res.stderr
    assert "division by zero" in summary(res.stderr)["message"]
    assert f"{mdir / '0001_idx.verify.sql'}:1" in summary(res.stderr)["message"]


def test_rollback_of_a_migration_with_a_verify_script_works(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _setup(mdir, "SELECT count(*) = 2 FROM items;\n")
    write(mdir, "0001_items.rollback.sql", "-- migrate-job: approve DL01 \"test data only\"\n"
          "DROP TABLE items;\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert not table_exists(database_url, "items")
    assert applied_ids(database_url) == []


def test_write_in_a_verify_script_is_refused_by_the_gate(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _setup(mdir, "SELECT count(*) = 2 FROM items;\nINSERT INTO items VALUES (3, 30);\n")
    env = env_for(database_url, mdir)
    res = run_job("run", env=env)
    assert res.returncode == 6, res.stderr
    s = summary(res.stderr)
    assert "VF01" in s["message"]
    assert [(b["rule"], b["line"]) for b in s["error"]["blocking"]] == [("VF01", 2)]
    assert not table_exists(database_url, "items")
    lint = run_job("lint", str(mdir), env=env)
    assert lint.returncode == 6
    assert "VF01" in lint.stdout and "0001_items.verify.sql:2" in lint.stdout


def test_lint_of_read_only_verify_scripts_is_clean(run_job, tmp_path):
    mdir = tmp_path / "m"
    _setup(mdir, "SELECT count(*) = 2 FROM items;\nSET LOCAL lock_timeout = '1s';\n")
    res = run_job("lint", str(mdir), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "VF01" not in res.stdout


def test_plan_lists_the_verify_script(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _setup(mdir, "SELECT count(*) = 2 FROM items;\n")
    env = env_for(database_url, mdir)
    res = run_job("plan", env=env)
    assert res.returncode == 0, res.stderr
    assert f"  verify    {mdir / '0001_items.verify.sql'} (runs right after" in res.stdout
    res = run_job("plan", "--json", env=env)
    pending = json.loads(res.stdout)["pending"]
    assert pending[0]["verify"] == str(mdir / "0001_items.verify.sql")


def test_verify_files_are_not_migrations_and_orphans_are_refused(tmp_path):
    mdir = tmp_path / "m"
    _setup(mdir, "SELECT true;\n")
    found = migrations.read(str(mdir))
    assert [m.id for m in found.migrations] == ["0001_items"]
    assert found.migrations[0].verify_path == str(mdir / "0001_items.verify.sql")
    write(mdir, "0002_typo.verify.sql", "SELECT true;\n")
    with pytest.raises(ConfigError, match="0002_typo.verify.sql: verify script without"):
        migrations.read(str(mdir))


def test_new_with_verify_creates_the_script_and_ignores_it_for_depends(run_job, tmp_path):
    mdir = tmp_path / "m"
    env = {"MIGRATE_MIGRATIONS_DIR": str(mdir)}
    res = run_job("new", "add items", "--verify", env=env)
    assert res.returncode == 0, res.stderr
    paths = [Path(p) for p in res.stdout.split()]
    assert [p.name.split("_", 1)[1] for p in paths] == [
        "add_items.sql", "add_items.rollback.sql", "add_items.verify.sql"]
    assert "first column of its first row" in paths[2].read_text()
    res = run_job("new", "second", env=env)
    second = Path(res.stdout.split()[0])
    assert f"-- depends: {paths[0].stem}\n" in second.read_text()
    found = migrations.read(str(mdir))
    assert len(found.migrations) == 2
    assert found.migrations[0].verify_steps() == []  # only comments: nothing to run
