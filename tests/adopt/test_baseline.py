"""`baseline`: the current schema as the first migration, marked here, replayed elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.adopt.helpers import cli_env, execute, schema_of
from tests.conftest import REPO, job_env
from tests.core.helpers import applied_ids, query, scalar, summary

RICH = """
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
CREATE EXTENSION pg_trgm;
CREATE SCHEMA ext;
CREATE EXTENSION ltree WITH SCHEMA ext;
CREATE SCHEMA app;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE invoice_no START 1000 INCREMENT 5;
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email citext UNIQUE NOT NULL,
    attrs hstore,
    path ext.ltree,
    feeling mood DEFAULT 'ok',
    updated_at timestamptz
);
COMMENT ON TABLE users IS 'people';
CREATE TABLE orders (id serial PRIMARY KEY, user_id bigint REFERENCES users (id),
                     invoice int DEFAULT nextval('invoice_no'), note text);
CREATE INDEX orders_note_trgm ON orders USING gin (note gin_trgm_ops);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- a comment and a SET inside a body must survive the cleaning
SET LOCAL statement_timeout = 0;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
-- A SQL function created before the table it reads, as pg_dump orders them.
CREATE FUNCTION order_count(uid bigint) RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT count(*) FROM orders WHERE user_id = uid $$;
CREATE VIEW user_orders AS SELECT u.email, order_count(u.id) AS n FROM users u;
CREATE MATERIALIZED VIEW mood_counts AS SELECT feeling, count(*) FROM users GROUP BY feeling;
CREATE TABLE events (id bigint, at date NOT NULL, payload jsonb) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_at ON events (at);
CREATE TABLE app.settings (k text PRIMARY KEY, v text);
-- Other tools' history tables stay out of the baseline.
CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY);
CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255));
"""


def _baseline(run_job: Any, env: dict[str, str], *extra: str) -> Any:
    return run_job("baseline", "--schema", "public", "--schema", "app", *extra, env=env)


def test_baseline_round_trips_a_rich_schema(database_url: str, fresh_url: str, run_job: Any,
                                            tmp_path: Path) -> None:
    execute(database_url, RICH)
    mdir = tmp_path / "migrations"
    env = cli_env(database_url, mdir)
    res = _baseline(run_job, env, "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    path = mdir / "0001_baseline.sql"
    text = path.read_text()
    assert "Commit" in res.stdout and str(path) in res.stdout
    assert "_prisma_migrations" not in text and "knex_migrations" not in text
    assert "\\restrict" not in text and "set_config('search_path'" not in text
    assert 'CREATE EXTENSION IF NOT EXISTS "ltree" WITH SCHEMA "ext";' in text
    assert "-- a comment and a SET inside a body must survive the cleaning\nSET LOCAL " \
        "statement_timeout = 0;\n" in text
    assert "-- transactional" not in text  # pg_dump's schema runs in one transaction
    assert applied_ids(database_url) == ["0001_baseline"]
    assert query(database_url, "SELECT how FROM _migrate_job_migration") == [("baseline",)]
    assert ("baseline", "success", 0) in query(
        database_url, "SELECT command, outcome, exit_code FROM _migrate_job_run")
    res = run_job("status", env=env)
    assert res.returncode == 0, res.stdout + res.stderr

    res = run_job("run", env=cli_env(fresh_url, mdir))
    assert res.returncode == 0, res.stderr
    assert schema_of(fresh_url) == schema_of(database_url)
    # The materialized view is usable, not just created WITH NO DATA.
    assert scalar(fresh_url, "SELECT count(*) FROM mood_counts") == 0

    # The next migration builds on the baseline.
    res = run_job("new", "second", env=env)
    assert "-- depends: 0001_baseline" in Path(res.stdout.split()[0]).read_text()


def test_baseline_refuses_when_migrations_are_applied_unless_forced(
        database_url: str, run_job: Any, tmp_path: Path) -> None:
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_first.sql").write_text("CREATE TABLE first (id int);\n")
    env = cli_env(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    res = run_job("baseline", "--yes", env=env)
    assert res.returncode == 2, res.stderr
    assert "already applied" in summary(res.stderr)["message"]
    assert sorted(p.name for p in mdir.iterdir()) == ["0001_first.sql"]
    res = run_job("baseline", "--yes", "--force", env=env)
    assert res.returncode == 0, res.stderr
    made = sorted(p.name for p in mdir.iterdir() if p.name != "0001_first.sql")
    assert len(made) == 1 and made[0].endswith("_baseline.sql") and made[0] > "0001_first.sql"
    assert "CREATE TABLE public.first" in (mdir / made[0]).read_text()
    assert "delete the ones this baseline replaces" in res.stdout


def test_baseline_without_yes_off_a_terminal_changes_nothing(database_url: str, run_job: Any,
                                                            tmp_path: Path) -> None:
    execute(database_url, "CREATE TABLE t (id int);")
    mdir = tmp_path / "migrations"
    env = cli_env(database_url, mdir)
    res = run_job("baseline", env=env)
    assert res.returncode == 2
    assert "refusing without --yes" in summary(res.stderr)["message"]
    assert not mdir.exists() and applied_ids(database_url) == []
    res = run_job("baseline", "--dry-run", env=env)
    assert res.returncode == 0, res.stderr
    assert "CREATE TABLE public.t" in res.stdout
    assert not mdir.exists() and applied_ids(database_url) == []


def test_baseline_on_another_environment_marks_the_committed_file_or_refuses_a_different_schema(
        database_url: str, fresh_url: str, pg_server: Any, run_job: Any, tmp_path: Path) -> None:
    schema = "CREATE TABLE t (id int PRIMARY KEY, name text);"
    execute(database_url, schema)
    execute(fresh_url, schema)
    mdir = tmp_path / "migrations"
    assert run_job("baseline", "--yes", env=cli_env(database_url, mdir)).returncode == 0
    written = (mdir / "0001_baseline.sql").read_bytes()
    res = run_job("baseline", "--yes", env=cli_env(fresh_url, mdir))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "already written, identical" in res.stdout
    assert (mdir / "0001_baseline.sql").read_bytes() == written
    assert applied_ids(fresh_url) == ["0001_baseline"]

    other = pg_server.create_database()
    try:
        execute(other, "CREATE TABLE t (id int PRIMARY KEY, name text, extra int);")
        res = run_job("baseline", "--yes", env=cli_env(other, mdir))
        assert res.returncode == 5, res.stdout + res.stderr
        assert "extra integer" in res.stdout  # the diff shows what differs
        assert applied_ids(other) == []
    finally:
        pg_server.drop_database(other)


def test_baseline_on_a_terminal_asks_naming_the_database_and_the_file(
        database_url: str, tmp_path: Path) -> None:
    execute(database_url, "CREATE TABLE t (id int);")
    mdir = tmp_path / "migrations"
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "job", "baseline"], stdin=secondary, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=str(REPO),
        env=job_env(**cli_env(database_url, mdir)))
    os.close(secondary)
    os.write(primary, b"yes\n")
    out, err = proc.communicate(timeout=120)
    os.close(primary)
    assert proc.returncode == 0, out + err
    db = database_url.rsplit("/", 1)[1]
    # The prompt goes to stderr (stdout stays for results).
    assert f"{mdir / '0001_baseline.sql'} and mark it applied on" in err and db in err
    assert applied_ids(database_url) == ["0001_baseline"]
