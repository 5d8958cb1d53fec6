# ruff: noqa: E501  (SQL cases read best on one line each)
"""Connected: the model starts from the target's catalog, and a data-loss finding blocks only
when there is data to lose (a real PostgreSQL)."""

from __future__ import annotations

import psycopg

from job.safety import Report, SafetyConfig, SqlFile, analyze
from job.safety.stats import PgCatalog, PgProbe


def _gate(conn: psycopg.Connection, *texts: str) -> Report:
    files = [SqlFile(f"000{i}_m", f"m/000{i}_m.sql", t, True) for i, t in enumerate(texts, 1)]
    return analyze(files, server_version_num=conn.info.server_version, stats=None,
                   config=SafetyConfig(), catalog=PgCatalog(conn), probe=PgProbe(conn),
                   lock_timeout=5, statement_timeout=0)


def _one(report: Report, rule: str):  # type: ignore[no-untyped-def]
    found = [f for f in report.findings if f.rule == rule]
    assert len(found) == 1, [(f.rule, f.message) for f in report.findings]
    return found[0]


def test_dropping_an_empty_table_does_not_block_and_says_why(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint)")
        dl01 = _one(_gate(conn, "DROP TABLE orders;"), "DL01")
        assert not dl01.blocking and dl01.data == "empty"
        assert dl01.message.endswith("orders is empty: not blocking")
        conn.execute("INSERT INTO orders VALUES (1)")  # never analysed: reltuples says 0 or -1
        dl01 = _one(_gate(conn, "DROP TABLE orders;"), "DL01")
        assert dl01.blocking and dl01.data == "rows" and dl01.message.endswith("orders has rows")


def test_drop_column_blocks_only_when_the_column_holds_a_value(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (id bigint NOT NULL, email text)")
        conn.execute("INSERT INTO users VALUES (1, NULL), (2, NULL)")
        dl02 = _one(_gate(conn, "ALTER TABLE users DROP COLUMN email;"), "DL02")
        assert not dl02.blocking and "users.email is NULL in every row: not blocking" in dl02.message
        conn.execute("UPDATE users SET email = 'a@b' WHERE id = 2")
        dl02 = _one(_gate(conn, "ALTER TABLE users DROP COLUMN email;"), "DL02")
        assert dl02.blocking and "users.email holds values" in dl02.message
        dl02 = _one(_gate(conn, "ALTER TABLE users DROP COLUMN id;"), "DL02")
        assert dl02.blocking and "NOT NULL" in dl02.message


def test_objects_absent_from_the_database_give_no_finding(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = _gate(conn, "DROP TABLE IF EXISTS legacy;\nDROP SEQUENCE IF EXISTS legacy_seq;\n"
                             "ALTER TABLE IF EXISTS legacy DROP COLUMN x;\nDROP SCHEMA IF EXISTS old CASCADE;\n"
                             "DROP TYPE IF EXISTS mood CASCADE;\nDROP EXTENSION IF EXISTS hstore CASCADE;")
        assert [f.rule for f in report.findings if f.category == "data-loss"] == []


def test_existing_appears_only_for_objects_in_the_database(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint)")
        report = _gate(conn, "CREATE INDEX i ON orders (id);", "CREATE TABLE fresh (id bigint);\nCREATE INDEX j ON fresh (id);")
        (lk01,) = [f for f in report.findings if f.rule == "LK01"]
        assert "existing table orders" in lk01.message


def test_a_rename_keeps_the_tables_identity_for_the_probe(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app; CREATE TABLE app.orders (id bigint); INSERT INTO app.orders VALUES (1)")
        conn.execute("SET search_path TO app, public")
        report = _gate(conn, "ALTER TABLE orders RENAME TO old_orders;", "DROP TABLE app.old_orders;")
        dl01 = _one(report, "DL01")
        assert dl01.blocking and "has rows" in dl01.message


def test_a_probe_that_cannot_get_its_lock_answers_unknown_and_blocks(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn, psycopg.connect(database_url) as holder:
        conn.execute("CREATE TABLE orders (id bigint)")
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        dl01 = _one(_gate(conn, "DROP TABLE orders;"), "DL01")
        holder.rollback()
    assert dl01.blocking and dl01.data == "unknown"
    assert "could not check whether orders has rows (its lock was not granted in time)" in dl01.message


def test_probes_are_read_only_take_access_share_and_leave_the_transaction_usable(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE orders (id bigint, note text); INSERT INTO orders VALUES (1, NULL)")
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        report = _gate(conn, "DROP TABLE orders;\nALTER TABLE orders DROP COLUMN note;")
        modes = {r[0] for r in conn.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'").fetchall()}
        settings = conn.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')").fetchone()
        conn.rollback()
    assert modes <= {"AccessShareLock"}, modes
    assert settings == ("0", "0")  # the probe's short timeouts did not leak into the transaction
    assert _one(report, "DL01").blocking


def test_existing_validated_not_null_check_in_the_database_exempts_set_not_null(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (a int, b int, CONSTRAINT a_nn CHECK (a IS NOT NULL))")
        conn.execute("ALTER TABLE orders ADD CONSTRAINT b_nn CHECK (b IS NOT NULL) NOT VALID")
        report = _gate(conn, "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;\nALTER TABLE orders ALTER COLUMN b SET NOT NULL;")
        lk08 = [f.message for f in report.findings if f.rule == "LK08"]
        assert len(lk08) == 1 and "orders.b" in lk08[0]


def test_type_change_of_a_column_under_a_check_seen_in_the_catalog(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE codes (c varchar(10) CONSTRAINT c_len CHECK (length(c) > 1), d varchar(10))")
        report = _gate(conn, "ALTER TABLE codes ALTER COLUMN c TYPE varchar(20);\nALTER TABLE codes ALTER COLUMN d TYPE varchar(20);")
        rw01 = [f.message for f in report.findings if f.rule == "RW01"]
        assert len(rw01) == 1 and "CHECK constraint c_len" in rw01[0]
        char = _gate(conn, "ALTER TABLE codes ALTER COLUMN d TYPE char(5);")
        assert [f.rule for f in char.findings if f.rule == "DL08"] == ["DL08"]  # narrower: real


def test_table_emptied_by_nothing_but_seed_rows_of_the_run_does_not_block(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = _gate(conn, "CREATE TABLE settings (k text, v text);\nINSERT INTO settings VALUES ('a', '1');",
                       "DELETE FROM settings WHERE k = 'a';\nUPDATE settings SET v = '2';")
        assert report.blocking() == []
