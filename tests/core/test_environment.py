"""The environment guard: a database stamped 'production' refuses a run that says 'staging'."""

from __future__ import annotations

import json
import uuid

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


def _stamp(url: str) -> str | None:
    return scalar(url, "SELECT name FROM _migrate_job_environment") if table_exists(
        url, "_migrate_job_environment") else None


def test_first_writing_run_stamps_the_database(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    res = run_job("run", env=env_for(database_url, mdir, MIGRATE_ENVIRONMENT="production"))
    assert res.returncode == 0, res.stderr
    assert _stamp(database_url) == "production"
    assert [e for e in events(res.stderr) if e["event"] == "environment.stamped"]
    assert summary(res.stderr)["environment"] == "production"


def test_run_with_another_environment_is_refused_naming_both(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    assert run_job("run", env=env_for(database_url, mdir,
                                      MIGRATE_ENVIRONMENT="production")).returncode == 0
    write(mdir, "0002_b.sql", "CREATE TABLE b (id bigint);\n")
    res = run_job("run", env=env_for(database_url, mdir, MIGRATE_ENVIRONMENT="staging"))
    assert res.returncode == 5, res.stderr
    s = summary(res.stderr)
    assert "this database is stamped 'production'; this run says 'staging'" in s["message"]
    assert applied_ids(database_url) == ["0001_a"]
    assert _stamp(database_url) == "production"


def test_run_without_environment_on_a_stamped_database_is_refused(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    assert run_job("run", env=env_for(database_url, mdir,
                                      MIGRATE_ENVIRONMENT="production")).returncode == 0
    write(mdir, "0002_b.sql", "CREATE TABLE b (id bigint);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 5, res.stderr
    assert "stamped 'production'; this run names no environment" in summary(res.stderr)["message"]
    assert applied_ids(database_url) == ["0001_a"]


def test_other_writing_commands_are_guarded_too(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    write(mdir, "0001_a.rollback.sql", "DROP TABLE a;\n")
    assert run_job("run", env=env_for(database_url, mdir,
                                      MIGRATE_ENVIRONMENT="production")).returncode == 0
    staging = env_for(database_url, mdir, MIGRATE_ENVIRONMENT="staging")
    for args in (("rollback", "--yes"), ("unmark", "0001_a", "--yes"),
                 ("accept-schema", "--yes")):
        res = run_job(*args, env=staging)
        assert res.returncode == 5, (args, res.stderr)
        assert "this run says 'staging'" in summary(res.stderr)["message"]
    assert table_exists(database_url, "a")
    assert applied_ids(database_url) == ["0001_a"]


def test_database_without_a_stamp_accepts_runs_without_a_name(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr
    assert _stamp(database_url) is None


def test_read_only_commands_report_the_stamp_and_a_mismatch(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    assert run_job("run", env=env_for(database_url, mdir,
                                      MIGRATE_ENVIRONMENT="production")).returncode == 0
    res = run_job("status", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr
    assert "environment: stamped 'production'" in res.stdout
    res = run_job("status", "--json", env=env_for(database_url, mdir,
                                                  MIGRATE_ENVIRONMENT="staging"))
    assert res.returncode == 5
    assert json.loads(res.stdout)["environment"] == {
        "stamp": "production", "stamped_at_utc": json.loads(res.stdout)["environment"][
            "stamped_at_utc"], "this_run": "staging", "mismatch": True}
    res = run_job("plan", env=env_for(database_url, mdir, MIGRATE_ENVIRONMENT="staging"))
    assert res.returncode == 5
    assert "this run says 'staging'" in res.stdout
    assert "this database is stamped 'production'; this run says 'staging'" in summary(
        res.stderr)["message"]
    # plan tells what run would do: without a name, run would be refused too
    assert run_job("plan", env=env_for(database_url, mdir)).returncode == 5


def test_stamp_environment_changes_the_stamp_only_when_confirmed(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    assert run_job("run", env=env_for(database_url, mdir,
                                      MIGRATE_ENVIRONMENT="staging")).returncode == 0
    env = env_for(database_url, mdir)
    res = run_job("stamp-environment", "production", env=env)
    assert res.returncode == 2  # no --yes, no terminal
    assert _stamp(database_url) == "staging"
    res = run_job("stamp-environment", "production", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    s = summary(res.stderr)
    assert (s["environment"], s["previous_environment"]) == ("production", "staging")
    assert _stamp(database_url) == "production"
    write(mdir, "0002_b.sql", "CREATE TABLE b (id bigint);\n")
    assert run_job("run", env={**env, "MIGRATE_ENVIRONMENT": "staging"}).returncode == 5
    assert run_job("run", env={**env, "MIGRATE_ENVIRONMENT": "production"}).returncode == 0
    # recorded in the run history
    assert scalar(database_url, "SELECT count(*) FROM _migrate_job_run "
                  "WHERE command = 'stamp-environment'") == 1


def test_bad_environment_name_is_a_configuration_error(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    res = run_job("run", env=env_for(database_url, mdir, MIGRATE_ENVIRONMENT="prod; drop"))
    assert res.returncode == 2
    assert "MIGRATE_ENVIRONMENT" in res.stderr
    res = run_job("stamp-environment", "bad name", "--yes", env=env_for(database_url, mdir))
    assert res.returncode == 2
    assert not table_exists(database_url, "_yoyo_migration")


def test_role_without_create_gets_a_clear_configuration_error(database_url, run_job, tmp_path):
    from urllib.parse import urlsplit, urlunsplit

    role = "nocreate_" + uuid.uuid4().hex[:8]
    query(database_url, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    try:
        query(database_url, f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        parts = urlsplit(database_url)
        url = urlunsplit(parts._replace(
            netloc=f"{role}:pw-{role}@{parts.hostname}:{parts.port}"))
        mdir = tmp_path / "m"
        write(mdir, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
        res = run_job("run", env=env_for(url, mdir, MIGRATE_ENVIRONMENT="staging"))
        assert res.returncode == 2, res.stderr
        assert "cannot stamp the environment" in summary(res.stderr)["message"]
    finally:
        query(database_url, f"DROP OWNED BY {role}")
        query(database_url, f"DROP ROLE {role}")
