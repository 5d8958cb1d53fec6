"""Schema drift on a real server: an out-of-band change stops the next deploy, naming the object;
the job's own changes (apply, a failed apply, rollback, a killed run) never count as drift."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, job_env
from tests.core.helpers import (
    applied_ids,
    backend_running,
    env_for,
    events,
    kill,
    popen_job,
    query,
    scalar,
    summary,
    table_exists,
    wait_for,
    write,
)

BASE = """
CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL,
                    score int DEFAULT 0);
CREATE INDEX users_email_idx ON users (email);
CREATE FUNCTION user_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM users $$;
"""


def _base(mdir: Path) -> None:
    write(mdir, "0001_base.sql", BASE)
    write(mdir, "0001_base.rollback.sql", "DROP FUNCTION user_count();\nDROP TABLE users;\n")


def _by_hand(url: str, *statements: str) -> None:
    for sql in statements:
        query(url, sql)


def _run(run_job, env, *args):
    res = run_job(*args, env=env)
    return res, (summary(res.stderr) if "migrate.summary" in res.stderr else {})


# -- out-of-band changes stop the deploy ----------------------------------------------------------
DRIFTS = [
    pytest.param(["ALTER TABLE users ADD COLUMN nickname text"],
                 "column public.users.nickname added", id="column-added"),
    pytest.param(["DROP INDEX users_email_idx"], "index public.users_email_idx dropped",
                 id="index-dropped"),
    pytest.param(["CREATE OR REPLACE FUNCTION user_count() RETURNS bigint LANGUAGE sql STABLE "
                  "AS $$ SELECT count(*) + 1 FROM users $$"],
                 "body of function public.user_count() changed", id="function-body-replaced"),
    pytest.param(["ALTER TABLE users ALTER COLUMN score SET DEFAULT 10"],
                 "default of column public.users.score changed (was 0, now 10)",
                 id="column-default-changed"),
    pytest.param(["CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RETURN NEW; END $$",
                  "CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW "
                  "EXECUTE FUNCTION touch()"],
                 "trigger public.users.users_touch added", id="trigger-added"),
]


@pytest.mark.parametrize(("statements", "expected"), DRIFTS)
def test_out_of_band_change_stops_the_next_run_naming_the_object(
        database_url, run_job, tmp_path, statements, expected):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, *statements)
    write(mdir, "0002_next.sql", "CREATE TABLE next_one (id bigint);\n")

    res, s = _run(run_job, env, "run")
    assert res.returncode == 5, res.stderr
    assert expected in s["message"]
    assert expected in s["error"]["schema_drift"]
    assert "accept-schema" in s["message"]
    assert applied_ids(database_url) == ["0001_base"]  # nothing applied
    assert not table_exists(database_url, "next_one")

    # status says the same, with exit 5
    st = run_job("status", "--json", env=env)
    assert st.returncode == 5, st.stderr
    data = json.loads(st.stdout)
    assert data["schema"]["state"] == "drift"
    assert expected in [c["text"] for c in data["schema"]["changes"]]

    # after review, accept-schema records the schema as it is; the next run proceeds
    res, s = _run(run_job, env, "accept-schema", "--yes")
    assert res.returncode == 0, res.stderr
    assert expected in s["accepted_schema_changes"]
    res, s = _run(run_job, env, "run")
    assert res.returncode == 0, res.stderr
    assert applied_ids(database_url) == ["0001_base", "0002_next"]
    assert run_job("status", env=env).returncode == 0


def test_warn_logs_the_drift_and_continues(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "ALTER TABLE users ADD COLUMN nickname text")
    write(mdir, "0002_next.sql", "CREATE TABLE next_one (id bigint);\n")

    res = run_job("run", env={**env, "MIGRATE_ON_SCHEMA_DRIFT": "warn"})
    assert res.returncode == 0, res.stderr
    [warning] = [e for e in events(res.stderr) if e["event"] == "schema.drift"]
    assert "column public.users.nickname added" in warning["changes"]
    assert warning["level"] == "warning"
    assert applied_ids(database_url) == ["0001_base", "0002_next"]
    # warned once, recorded: the next run (default fail) passes
    assert run_job("run", env=env).returncode == 0


def test_plan_exits_5_when_run_would_refuse_on_drift(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "DROP INDEX users_email_idx")
    res = run_job("plan", env=env)
    assert res.returncode == 5, res.stderr
    assert "index public.users_email_idx dropped" in res.stdout
    assert run_job("plan", env={**env, "MIGRATE_ON_SCHEMA_DRIFT": "warn"}).returncode == 0


def test_accept_schema_without_yes_and_without_terminal_changes_nothing(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "ALTER TABLE users ADD COLUMN nickname text")
    before = scalar(database_url, "SELECT count(*) FROM _migrate_job_schema")
    res = run_job("accept-schema", env=env)
    assert res.returncode == 2
    assert "--yes" in summary(res.stderr)["message"]
    assert scalar(database_url, "SELECT count(*) FROM _migrate_job_schema") == before
    assert run_job("run", env=env).returncode == 5


def test_drift_in_a_schema_that_is_not_managed_is_ignored_unless_listed(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_app.sql", "CREATE SCHEMA app;\nCREATE TABLE app.items (id bigint);\n"
          "CREATE TABLE t (id bigint);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "ALTER TABLE app.items ADD COLUMN note text")
    # Default: only the schema of the tracking tables (public) is watched.
    assert run_job("run", env=env).returncode == 0
    listed = {**env, "MIGRATE_MANAGED_SCHEMAS": "public,app"}
    assert run_job("accept-schema", "--yes", env=listed).returncode == 0
    _by_hand(database_url, "ALTER TABLE app.items DROP COLUMN note")
    res, s = _run(run_job, listed, "run")
    assert res.returncode == 5, res.stderr
    assert "column app.items.note dropped" in s["message"]


def test_a_dropped_table_is_one_line_not_one_per_column(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    write(mdir, "0002_audit.sql", "CREATE TABLE audit (id bigint PRIMARY KEY, at timestamptz, "
          "what text);\nCREATE INDEX audit_at ON audit (at);\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "DROP TABLE audit")
    res, s = _run(run_job, env, "run")
    assert res.returncode == 5
    assert s["error"]["schema_drift"] == ["table public.audit dropped"]


# -- the job's own changes never count as drift ------------------------------------------------
REALISTIC = {
    "0010_types.sql": """
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE TYPE address AS (street text, zip text);
CREATE TYPE span AS RANGE (subtype = int4);
CREATE SEQUENCE invoice_no START 1000 INCREMENT 5;
""",
    "0011_tables.sql": """
-- depends: 0010_types
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    login email NOT NULL UNIQUE,
    feeling mood DEFAULT 'ok',
    home address,
    credit numeric(12, 2) NOT NULL DEFAULT 0 CHECK (credit >= 0),
    created timestamptz NOT NULL DEFAULT now(),
    invoice bigint DEFAULT nextval('invoice_no'),
    login_lower text GENERATED ALWAYS AS (lower(login::text)) STORED,
    valid span,
    EXCLUDE USING gist (valid WITH &&)
);
CREATE TABLE events (
    id bigint GENERATED BY DEFAULT AS IDENTITY,
    account_id bigint REFERENCES accounts (id) ON DELETE CASCADE,
    at date NOT NULL,
    payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX events_payload ON events USING gin (payload);
CREATE TABLE event_notes (event_id bigint, event_at date, note text,
                          FOREIGN KEY (event_id, event_at) REFERENCES events (id, at));
CREATE UNLOGGED TABLE scratch (k text PRIMARY KEY, v text);
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON accounts USING (login::text = current_user);
CREATE VIEW rich AS SELECT id, credit FROM accounts WHERE credit > 1000 WITH CHECK OPTION;
CREATE MATERIALIZED VIEW daily AS SELECT at, count(*) AS n FROM events GROUP BY at;
CREATE UNIQUE INDEX daily_at ON daily (at);
COMMENT ON TABLE accounts IS 'customer accounts';
""",
    "0012_code.sql": """
-- depends: 0011_tables
CREATE FUNCTION credit_of(a bigint) RETURNS numeric LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT credit FROM accounts WHERE id = a);
END
$$;
CREATE FUNCTION doubled(x int) RETURNS int LANGUAGE sql IMMUTABLE
    BEGIN ATOMIC SELECT x * 2; END;
CREATE PROCEDURE reset_credit(a bigint) LANGUAGE sql AS $$ UPDATE accounts SET credit = 0
    WHERE id = a $$;
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN NEW.created := now(); RETURN NEW; END $$;
CREATE TRIGGER accounts_stamp BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE AGGREGATE total(numeric) (sfunc = numeric_add, stype = numeric, initcond = '0');
""",
    "0013_enum_value.sql": """
-- depends: 0012_code
ALTER TYPE mood ADD VALUE 'happy' AFTER 'ok';
""",
    "0014_concurrently.sql": """
-- depends: 0013_enum_value
-- transactional: false
CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_created ON accounts (created);
ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' BEFORE 'ok';
""",
}


def test_job_applied_migrations_and_everyday_activity_never_count_as_drift(
        any_database_url, run_job, tmp_path):
    url = any_database_url
    mdir = tmp_path / "m"
    for p in sorted((Path(__file__).resolve().parents[2] / "migrations").iterdir()):
        write(mdir, p.name, p.read_text())
    for name, sql in REALISTIC.items():
        write(mdir, name, sql)
    env = env_for(url, mdir)
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert len(applied_ids(url)) == 8

    role = "reader_" + uuid.uuid4().hex[:8]
    # Everyday life: rows, sequence values, statistics, a new partition, refreshed matview,
    # vacuum, a rebuilt index, grants and comments.
    _by_hand(url,
             "INSERT INTO customers (email) VALUES ('a@b.c')",
             "INSERT INTO accounts (login, credit) VALUES ('x@y.z', 5)",
             "SELECT nextval('invoice_no')",
             "INSERT INTO events (account_id, at) VALUES (1, '2026-05-01')",
             "ANALYZE",
             "VACUUM accounts",
             "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') "
             "TO ('2028-01-01')",
             "REFRESH MATERIALIZED VIEW CONCURRENTLY daily",
             "REINDEX INDEX CONCURRENTLY accounts_created",
             f"CREATE ROLE {role}",
             f"GRANT SELECT ON accounts TO {role}",
             "COMMENT ON COLUMN accounts.credit IS 'cents'",
             "ALTER TABLE accounts SET (autovacuum_vacuum_scale_factor = 0.01)")
    try:
        res = run_job("run", env=env)
        assert res.returncode == 0, res.stderr
        assert not [e for e in events(res.stderr) if e["event"].startswith("schema.")
                    and e["event"] != "schema.unchanged"], res.stderr
        st = run_job("status", "--json", env=env)
        assert st.returncode == 0, st.stderr
        assert json.loads(st.stdout)["schema"]["state"] == "clean"
    finally:
        _by_hand(url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_description_holds_what_migrations_decide(database_url, run_job, tmp_path):
    """Guards the test above: the realistic objects are really described, so 'no drift' is
    not 'nothing looked at'."""
    mdir = tmp_path / "m"
    for name, sql in REALISTIC.items():
        write(mdir, name, sql)
    assert run_job("run", env=env_for(database_url, mdir)).returncode == 0
    desc = scalar(database_url, "SELECT description FROM _migrate_job_schema "
                  "ORDER BY id DESC LIMIT 1")["public"]
    assert desc["enum public.mood"]["values"] == "sad, meh, ok, happy"
    assert desc["index public.accounts_created"]["definition"].startswith(
        "CREATE INDEX accounts_created ON public.accounts")
    assert desc["column public.accounts.credit"]["default"] == "0"
    assert desc["column public.accounts.invoice"]["default"] == \
        "nextval('public.invoice_no'::regclass)"
    assert desc["table public.events"]["partitioned by"] == "RANGE (at)"
    assert "table public.events_2026" not in desc  # partitions come and go
    assert desc["sequence public.accounts_id_seq"]["owned by"] == "public.accounts.id"
    assert "sequence public.events_id_seq" not in desc  # identity: part of the column
    assert desc["column public.events.id"]["identity"] == "by default"
    assert desc["function public.doubled(integer)"]["body"]
    assert desc["procedure public.reset_credit(bigint)"]["language"] == "sql"
    assert desc["aggregate public.total(numeric)"]["aggregate"].startswith("numeric_add")
    assert desc["trigger public.accounts.accounts_stamp"]["definition"].startswith(
        "CREATE TRIGGER accounts_stamp BEFORE INSERT ON public.accounts")
    assert desc["policy public.accounts.own_rows"]["command"] == "all"
    assert desc["table public.accounts"]["row level security"] == "enabled"
    assert desc["table public.scratch"]["unlogged"] is True
    assert "constraint public.accounts.accounts_valid_excl" in desc
    assert "index public.accounts_pkey" not in desc  # the constraint stands for it
    assert desc["materialized view public.daily"]["definition"]
    assert desc["domain public.email"]["constraints"].startswith("email_check CHECK")
    assert desc["attribute public.address.zip"]["type"] == "text"
    assert desc["range type public.span"]["range"].startswith("integer")
    assert not [k for k in desc if "_yoyo" in k or "_migrate_job" in k]


def test_failed_non_transactional_migration_leaves_the_record_matching(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0002_half.sql", "-- transactional: false\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_score ON users (score);\n"
          "ALTER TABLE no_such_table ADD COLUMN x int;\n")
    res = run_job("run", env=env)
    assert res.returncode == 8, res.stderr
    assert scalar(database_url, "SELECT to_regclass('users_score') IS NOT NULL")
    # What the failed run left is recorded: status reports pending work, not drift.
    st = run_job("status", "--json", env=env)
    assert st.returncode == 10, st.stdout
    assert json.loads(st.stdout)["schema"]["state"] == "clean"
    write(mdir, "0002_half.sql", "-- transactional: false\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_score ON users (score);\n"
          "ALTER TABLE users ADD COLUMN IF NOT EXISTS x int;\n")
    assert run_job("run", env=env).returncode == 0


def test_failed_transactional_migration_leaves_the_record_matching(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    write(mdir, "0002_ok.sql", "-- depends: 0001_base\nCREATE TABLE ok (id bigint);\n")
    write(mdir, "0003_bad.sql", "-- depends: 0002_ok\nCREATE TABLE bad (id bigint);\n"
          "SELECT 1/0;\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 8
    assert applied_ids(database_url) == ["0001_base", "0002_ok"]
    st = run_job("status", "--json", env=env)
    assert st.returncode == 10
    assert json.loads(st.stdout)["schema"]["state"] == "clean"


def test_rollback_keeps_the_record_right(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    write(mdir, "0002_more.sql", "-- depends: 0001_base\nALTER TABLE users ADD COLUMN bio text;\n"
          "CREATE INDEX users_bio ON users (bio);\n")
    write(mdir, "0002_more.rollback.sql", "DROP INDEX users_bio;\n"
          "ALTER TABLE users DROP COLUMN bio;\n")
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    st = run_job("status", "--json", env=env)
    assert st.returncode == 10  # pending again, no drift
    assert json.loads(st.stdout)["schema"]["state"] == "clean"
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert not [e for e in events(res.stderr) if e["event"] == "schema.stale_record"]
    assert run_job("status", env=env).returncode == 0


def test_rollback_refuses_on_drift(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "ALTER TABLE users ADD COLUMN nickname text")
    res = run_job("rollback", "--yes", env=env)
    assert res.returncode == 5
    assert "column public.users.nickname added" in summary(res.stderr)["message"]
    assert table_exists(database_url, "users")


def test_mark_and_unmark_keep_the_record_right(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0002_by_hand.sql", "-- depends: 0001_base\nCREATE TABLE manual (id bigint);\n")
    # Applied by hand during an incident, then recorded with mark: no drift afterwards.
    _by_hand(database_url, "CREATE TABLE manual (id bigint)")
    res = run_job("mark", "0002_by_hand", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    [rec] = [e for e in events(res.stderr) if e["event"] == "schema.recorded"]
    assert rec["changes"] == ["table public.manual added"]  # said what the record took in
    assert run_job("status", env=env).returncode == 0
    assert run_job("unmark", "0002_by_hand", "--yes", env=env).returncode == 0
    st = run_job("status", "--json", env=env)
    assert json.loads(st.stdout)["schema"]["state"] == "clean"


def test_killed_run_does_not_wedge_the_next_deploy(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    write(mdir, "0002_slow.sql", "-- depends: 0001_base\n-- transactional: false\n"
          "CREATE TABLE IF NOT EXISTS half (id bigint);\n"
          "SELECT pg_sleep(60);\n")
    proc = popen_job("run", env=env)
    try:
        wait_for(lambda: backend_running(database_url, "pg_sleep(60)"), timeout=60)
    finally:
        kill(proc, signal.SIGKILL)
        proc.communicate(timeout=30)
    wait_for(lambda: not backend_running(database_url, "pg_sleep(60)"), timeout=60)
    assert table_exists(database_url, "half")  # its first statement stayed
    write(mdir, "0002_slow.sql", "-- depends: 0001_base\n-- transactional: false\n"
          "CREATE TABLE IF NOT EXISTS half (id bigint);\n")
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    [stale] = [e for e in events(res.stderr) if e["event"] == "schema.stale_record"]
    assert "table public.half added" in stale["changes"]
    assert any("did not finish" in r for r in stale["reasons"])
    assert run_job("status", env=env).returncode == 0


def test_database_adopted_from_yoyo_records_a_fingerprint_without_refusing(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    # As if applied by the yoyo CLI and never seen by migrate-job's drift check.
    _by_hand(database_url, "DROP TABLE _migrate_job_schema",
             "ALTER TABLE users ADD COLUMN extra text")
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert [e for e in events(res.stderr) if e["event"] == "schema.recorded"]
    assert scalar(database_url, "SELECT count(*) FROM _migrate_job_schema") == 1
    _by_hand(database_url, "ALTER TABLE users DROP COLUMN extra")
    assert run_job("run", env=env).returncode == 5


def test_accept_schema_on_a_terminal_lists_the_changes_before_asking(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "ALTER TABLE users ADD COLUMN nickname text")
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "job", "accept-schema"],
                            env=job_env(**env), cwd=str(REPO), stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"Type 'yes'" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 65536)
        assert b"Type 'yes'" in seen, seen.decode(errors="replace")
        prompt = seen.decode(errors="replace")
        assert "column public.users.nickname added" in prompt
        assert "accept-schema on postgres@" in prompt  # names the database
        os.write(master, b"yes\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert run_job("run", env=env).returncode == 0


# -- the catalog digest: a shortcut that never decides "drift" on its own -------------------------
def _latest_digest(url: str) -> str | None:
    return scalar(url, "SELECT catalog_digest FROM _migrate_job_schema ORDER BY id DESC LIMIT 1")


def _unchanged(res) -> dict:
    [event] = [e for e in events(res.stderr) if e["event"] == "schema.unchanged"]
    return event


def test_a_clean_no_op_compares_the_server_digest_only(database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    recorded = _latest_digest(database_url)
    assert recorded and len(recorded) == 64
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert _unchanged(res)["compared"] == "digest"
    assert _latest_digest(database_url) == recorded


def test_a_hand_made_change_is_drift_when_the_record_has_a_digest(
        database_url, run_job, tmp_path):
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    assert _latest_digest(database_url)
    _by_hand(database_url, "ALTER TABLE users ALTER COLUMN score SET DEFAULT 10")
    res, s = _run(run_job, env, "run")
    assert res.returncode == 5, res.stderr
    assert "default of column public.users.score changed (was 0, now 10)" in s["message"]


def test_a_record_without_digest_is_compared_in_full_and_completed(
        database_url, run_job, tmp_path):
    """Records of an earlier version have no catalog_digest (nor the column): the full
    description decides, and the digest of what was read is added for the next run."""
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    _by_hand(database_url, "ALTER TABLE _migrate_job_schema DROP COLUMN catalog_digest")
    st = run_job("status", "--json", env=env)  # read-only: works without the column
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["schema"]["state"] == "clean"
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert _unchanged(res)["compared"] == "description"
    assert _latest_digest(database_url)
    assert _unchanged(run_job("run", env=env))["compared"] == "digest"
    # and a change made while the record had no digest is still drift
    _by_hand(database_url, "UPDATE _migrate_job_schema SET catalog_digest = NULL",
             "ALTER TABLE users ADD COLUMN nickname text")
    res, s = _run(run_job, env, "run")
    assert res.returncode == 5, res.stderr
    assert "column public.users.nickname added" in s["message"]


def test_a_different_digest_with_the_same_description_is_clean_and_re_recorded(
        database_url, run_job, tmp_path):
    """The digest covers raw catalog rows, the description normalises some of them (a
    function's whitespace): rows that differ that way are not drift."""
    mdir = tmp_path / "m"
    _base(mdir)
    env = env_for(database_url, mdir)
    assert run_job("run", env=env).returncode == 0
    before = _latest_digest(database_url)
    count = scalar(database_url, "SELECT count(*) FROM _migrate_job_schema")
    _by_hand(database_url, "CREATE OR REPLACE FUNCTION user_count() RETURNS bigint LANGUAGE sql "
             "STABLE AS $$\n    SELECT count(*)\n    FROM users\n$$")
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert _unchanged(res)["compared"] == "description"
    after = _latest_digest(database_url)
    assert after and after != before
    assert scalar(database_url, "SELECT count(*) FROM _migrate_job_schema") == count  # updated
    assert _unchanged(run_job("run", env=env))["compared"] == "digest"
    # a digest that matches nothing (corrupted) is not drift either
    _by_hand(database_url, "UPDATE _migrate_job_schema SET catalog_digest = 'bogus'")
    res = run_job("run", env=env)
    assert res.returncode == 0, res.stderr
    assert _unchanged(res)["compared"] == "description"
    assert _latest_digest(database_url) == after


def test_digest_equals_the_digest_of_the_rows_read(database_url):
    """catalog.digest (server only) and read_with_digest (rows and digest in one statement)
    agree, and the split over a second session changes nothing."""
    import psycopg

    from job.drift import catalog

    query(database_url, BASE)
    with psycopg.connect(database_url, autocommit=True) as a, \
            psycopg.connect(database_url) as b:
        full, with_rows = catalog.read_with_digest(a, ["public"])
        assert catalog.read(a, ["public"], b) == full
        assert catalog.read_with_digest(a, ["public"], b) == (full, with_rows)
        assert catalog.digest(a, ["public"]) == with_rows
        assert catalog.digest(a, ["public"], b) == with_rows
        assert b.info.transaction_status == 0  # the helper ended its read's transaction
        assert catalog.digest(a, ["public", "other"]) != with_rows  # parameters count
        a.execute("ALTER TABLE users ADD COLUMN nickname text")
        assert catalog.digest(a, ["public"], b) != with_rows
