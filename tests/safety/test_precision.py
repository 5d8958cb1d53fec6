# ruff: noqa: E501  (SQL cases read best on one line each)
"""Precision and recall fixes, one case per defect class found against real histories and
linter fixtures (our own SQL, written for these tests)."""

from __future__ import annotations

import re

import pytest

from tests.safety.helpers import rules_fired, run

NONTX = {"transactional": False}
HY07 = {}  # the helper switches the opt-in HY07 on

# (rule, sql, options): must fire
FIRES: list[tuple[str, str, dict]] = [
    # option lists read with their values
    ("LK03", "REINDEX (CONCURRENTLY false) TABLE orders;", {}),
    ("TX01", "REINDEX (CONCURRENTLY) TABLE orders;", {}),
    ("RW07", "VACUUM (FULL) orders;", NONTX),
    ("RW07", "VACUUM (FULL true, VERBOSE) orders;", NONTX),
    # HY08: duplicates PostgreSQL rejects
    ("HY08", "CREATE VIEW v AS SELECT a, a FROM orders;", {}),
    ("HY08", "CREATE VIEW v AS SELECT id AS a, note AS a FROM orders;", {}),
    ("HY08", "SELECT id, id INTO orders_copy FROM orders;", {}),
    ("HY08", "CREATE TABLE t2 AS SELECT a, b AS a FROM orders;", {}),
    ("HY08", "INSERT INTO orders (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = 1, a = 2;", {}),
    ("HY08", "MERGE INTO orders o USING s ON o.id = s.id WHEN MATCHED THEN UPDATE SET a = 1, a = 2;", {}),
    ("HY08", "UPDATE orders SET a = 1, a.x = 2;", {}),
    # TX05 in non-transactional files
    ("TX05", "ALTER TABLE orders ADD CONSTRAINT pos CHECK (a > 0) NOT VALID;", NONTX),
    ("TX05", "ALTER TABLE orders DROP CONSTRAINT pos;", NONTX),
    # HY07 scope
    ("HY07", "DROP TABLE IF EXISTS orders;", {}),
    ("HY07", "CREATE TABLE t2 AS SELECT 1 AS a;", {}),
    # missed before
    ("BC13", "ALTER VIEW order_view RESET (security_barrier);", {}),
    ("BC16", "ALTER TABLE orders ALTER CONSTRAINT orders_fk NOT DEFERRABLE;", {}),
    ("TX02", "BEGIN;\nALTER TABLE orders ADD COLUMN IF NOT EXISTS b bigint;\nCOMMIT;\nCOMMIT;", NONTX),
    ("TX02", "SELECT 1;\nCOMMIT;", {}),
    ("TX02", "END;", {}),
    ("AN07", "UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'orders_a'::regclass;", {}),
    ("BC14", "ALTER PUBLICATION cdc SET TABLE orders;", {}),
    ("BC18", "ALTER EXTENSION hstore DROP FUNCTION f();", {}),
    ("BC09", "ALTER SEQUENCE order_seq OWNED BY orders.id RESTART;", {}),
]

# (rule, sql, options): must stay quiet
QUIET: list[tuple[str, str, dict]] = [
    ("TX01", "REINDEX (CONCURRENTLY false) TABLE orders;", {}),
    ("TX01", "REINDEX (CONCURRENTLY off) INDEX orders_a;", {}),
    ("RW07", "VACUUM (FULL false) orders;", NONTX),
    ("RW07", "VACUUM (FULL 0, ANALYZE) orders;", NONTX),
    ("HY08", "UPDATE orders SET a.x = 1, a.y = 2;", {}),
    ("HY08", "UPDATE orders SET a[1] = 1, a[2] = 2;", {}),
    ("HY08", "INSERT INTO orders (a[1], a[2]) VALUES (1, 2);", {}),
    ("HY08", "CREATE VIEW v AS SELECT a, b FROM orders;", {}),
    ("TX05", "CREATE TEMP TABLE scratch (a bigint);", NONTX),
    ("TX05", "ALTER TABLE orders DROP CONSTRAINT IF EXISTS pos;\nALTER TABLE orders ADD CONSTRAINT pos CHECK (a > 0) NOT VALID;", NONTX),
    ("HY07", "CREATE TEMP TABLE scratch (a bigint);", {}),
    ("HY07", "DROP TABLE IF EXISTS app.orders;", {}),
    ("BC09", "ALTER SEQUENCE order_seq OWNED BY orders.id;", {}),
    ("BC17", "CREATE TYPE mood AS ENUM ('ok');\nALTER TYPE mood ADD VALUE 'meh';", {}),
    ("BC17", "CREATE TYPE address AS (street text);\nALTER TYPE address ADD ATTRIBUTE zip text;", {}),
    ("BC14", "ALTER PUBLICATION cdc ADD TABLE orders;", {}),
    ("BC18", "ALTER EXTENSION hstore ADD FUNCTION f();", {}),
    ("LK03", "REINDEX SYSTEM;", NONTX),
    ("BC16", "ALTER TABLE orders ALTER CONSTRAINT orders_fk DEFERRABLE INITIALLY DEFERRED;", {}),
    ("TX02", "BEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nCOMMIT;", NONTX),
    ("DL06", "UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'orders_a'::regclass;", {}),
    ("DL06", "UPDATE pg_catalog.pg_index SET indisvalid = true;", {}),
    ("DL08", "ALTER TABLE t ALTER COLUMN c TYPE varchar(36);", {"prelude": "CREATE TABLE t (c char(36));"}),
    ("DL08", "ALTER TABLE t ALTER COLUMN c TYPE text;", {"prelude": "CREATE TABLE t (c char(36));"}),
    # One statement, one data-loss finding: DL07 only where no DL01/DL02/DL03 covers it.
    ("DL07", "DROP SCHEMA legacy CASCADE;", {}),
    ("DL07", "ALTER TABLE orders DROP COLUMN note CASCADE;", {}),
    ("DL07", "DROP TABLE orders CASCADE;", {}),
    ("DL07", "CREATE TYPE mood AS ENUM ('ok');\nDROP TYPE mood CASCADE;", {}),
]


def _id(case: tuple[str, str, dict]) -> str:
    return f"{case[0]}-{' '.join(case[1].split())[:50]}"


@pytest.mark.parametrize("case", FIRES, ids=[_id(c) for c in FIRES])
def test_fires(case: tuple[str, str, dict]) -> None:
    rule, sql, opts = case
    report = run(sql, **opts)
    assert rule in rules_fired(report), [(f.rule, f.message) for f in report.findings]


@pytest.mark.parametrize("case", QUIET, ids=[_id(c) for c in QUIET])
def test_stays_quiet(case: tuple[str, str, dict]) -> None:
    rule, sql, opts = case
    report = run(sql, **opts)
    assert rule not in rules_fired(report), [(f.rule, f.message) for f in report.findings if f.rule == rule]


def test_cascade_is_said_once_in_the_finding_that_covers_the_statement() -> None:
    report = run("ALTER TABLE orders DROP COLUMN note CASCADE;")
    (dl02,) = [f for f in report.findings if f.category == "data-loss"]
    assert dl02.rule == "DL02" and "CASCADE" in dl02.message
    report = run("DROP SCHEMA legacy CASCADE;")
    assert [f.rule for f in report.findings if f.category == "data-loss"] == ["DL03"]


_NODE_NAMES = re.compile(
    r"\b(AT_\w+|OBJECT_\w+|CONSTR_\w+|TRANS_STMT_\w+|\w+Stmt)\b|DropColumn|DropConstraint|SetNotNull|"
    r"EnableTrig|DisableTrig|AddIdentity|SetIdentity|DropIdentity|DropExpression|SetExpression|"
    r"RowSecurity|TABCONSTRAINT|MATVIEW")

_EVERYTHING = "\n".join([
    "ALTER TABLE orders DROP COLUMN note CASCADE;",
    "ALTER TABLE orders DROP CONSTRAINT c CASCADE;",
    "ALTER TABLE orders ALTER COLUMN id DROP IDENTITY;",
    "ALTER TABLE orders ALTER COLUMN id SET INCREMENT BY 2;",
    "ALTER TABLE orders ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;",
    "ALTER TABLE orders ALTER COLUMN g DROP EXPRESSION;",
    "ALTER TABLE orders DISABLE TRIGGER audit;",
    "ALTER TABLE orders ENABLE ALWAYS TRIGGER audit;",
    "ALTER TABLE orders DISABLE TRIGGER ALL;",
    "ALTER TABLE orders ENABLE ROW LEVEL SECURITY;",
    "ALTER TABLE orders ADD CONSTRAINT u UNIQUE (a);",
    "ALTER TABLE orders ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES x (id);",
    "ALTER TABLE orders RENAME CONSTRAINT c1 TO c2;",
    "ALTER MATERIALIZED VIEW mv RENAME TO mv2;",
    "ALTER INDEX i RENAME TO j;",
    "DROP MATERIALIZED VIEW mv CASCADE;",
    "DROP FUNCTION f() CASCADE;",
    "ALTER FUNCTION f() SET SCHEMA archive;",
    "CREATE OR REPLACE VIEW v AS SELECT 1;",
    "CREATE OR REPLACE TRIGGER t BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION f();",
    "ALTER TABLE orders VALIDATE CONSTRAINT c;",
    "CREATE POLICY p ON orders USING (true);",
    "INSERT INTO archive SELECT * FROM orders;",
])


def test_messages_speak_sql_not_parse_tree_node_names() -> None:
    report = run(_EVERYTHING)
    bad = [(f.rule, f.message) for f in report.findings if _NODE_NAMES.search(f.message)]
    assert bad == []
    assert any("DROP IDENTITY on orders.id" in f.message for f in report.findings)


def test_findings_from_whole_file_rules_carry_their_statement() -> None:
    report = run("ALTER TABLE orders ADD COLUMN b bigint;\nUPDATE orders SET b = a WHERE b IS NULL;")
    (lk19,) = [f for f in report.findings if f.rule == "LK19"]
    assert lk19.statement.startswith("UPDATE orders SET b = a") and lk19.line == 2


def test_catalog_write_is_a_warning_not_a_blocking_data_migration() -> None:
    report = run("UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'orders_a'::regclass;")
    assert report.blocking() == []
    (an07,) = [f for f in report.findings if f.rule == "AN07"]
    assert an07.severity == "warning" and "pg_index" in an07.message


def test_transaction_control_in_a_transactional_migration_blocks() -> None:
    report = run("CREATE TABLE a (id bigint);\nCOMMIT;\nCREATE TABLE b (id bigint);")
    (tx02,) = report.blocking()
    assert tx02.rule == "TX02" and tx02.line == 2 and "COMMIT" in tx02.message
    # In a non-transactional file the migration manages its own transactions: no block.
    report = run("BEGIN;\nCREATE TABLE a (id bigint);\nCOMMIT;", transactional=False)
    assert report.blocking() == []


def test_lk17_and_lk18_stay_quiet_under_the_jobs_own_timeouts() -> None:
    from job.safety import SafetyConfig, SqlFile, analyze

    files = [SqlFile(f"{i}", f"{i}.sql", f"ALTER TABLE t{i} ADD COLUMN b bigint;", True) for i in range(5)]
    covered = analyze(files, server_version_num=180001, stats=None, config=SafetyConfig(),
                      lock_timeout=5.0, statement_timeout=60.0)
    assert not {"LK17", "LK18"} & {f.rule for f in covered.findings}
    bare = analyze(files, server_version_num=180001, stats=None, config=SafetyConfig())
    assert [f.rule for f in bare.findings if f.rule in ("LK17", "LK18")] == ["LK17", "LK18"]  # once per run
    no_statement_timeout = analyze(files, server_version_num=180001, stats=None,
                                   config=SafetyConfig(), lock_timeout=5.0)
    assert [f.rule for f in no_statement_timeout.findings if f.rule in ("LK17", "LK18")] == ["LK18"]
