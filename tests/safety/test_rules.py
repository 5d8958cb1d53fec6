# ruff: noqa: E501  (SQL cases read best on one line each)
"""Every catalogue rule: at least one SQL case that must fire and one close case that must not."""

from __future__ import annotations

import pytest

from job.safety.rules import RULES
from tests.safety.helpers import rules_fired, run

NONTX = {"transactional": False}
VERIFY = {"path": "migrations/0002_case.verify.sql"}
ORDERS = "CREATE TABLE orders (id bigint, note varchar(20), total numeric(10,2), a int, g int GENERATED ALWAYS AS (a * 2) VIRTUAL);"

# (rule, sql, options)
FIRES: list[tuple[str, str, dict]] = [
    ("DL01", "DROP TABLE orders;", {}),
    ("DL01", "DROP TABLE IF EXISTS app.orders, app.lines;", {}),
    ("DL02", "ALTER TABLE orders DROP COLUMN note;", {}),
    ("DL02", "ALTER TYPE address DROP ATTRIBUTE zip;", {}),
    ("DL03", "DROP SCHEMA legacy CASCADE;", {}),
    ("DL04", "DROP DATABASE legacy;", NONTX),
    ("DL05", "TRUNCATE orders;", {}),
    ("DL05", "TRUNCATE orders RESTART IDENTITY CASCADE;", {}),
    ("DL06", "DELETE FROM orders;", {}),
    ("DL06", "UPDATE orders SET a = 1 WHERE true;", {}),
    ("DL06", "DELETE FROM orders WHERE created < now() - interval '1 year';", {}),
    ("DL06", "MERGE INTO orders o USING staging s ON o.id = s.id WHEN MATCHED THEN DELETE;", {}),
    ("DL07", "DROP TYPE mood CASCADE;", {}),
    ("DL07", "ALTER TABLE orders DROP CONSTRAINT orders_fk CASCADE;", {}),
    ("DL07", "DROP OWNED BY old_role;", {}),
    ("DL08", "ALTER TABLE orders ALTER COLUMN note TYPE varchar(3) USING note::varchar(3);", {}),
    ("DL08", "ALTER TABLE orders ALTER COLUMN total TYPE numeric(10,0);", {"prelude": ORDERS}),
    ("DL08", "ALTER TABLE orders ALTER COLUMN created TYPE date;", {}),  # source type unknown
    ("DL09", "DROP SEQUENCE order_seq;", {}),
    ("DL09", "ALTER TABLE orders ALTER COLUMN id DROP IDENTITY;", {}),
    ("DL10", "ALTER TABLE orders SET UNLOGGED;", {}),
    ("LK01", "CREATE INDEX orders_a ON orders (a);", {}),
    ("LK02", "DROP INDEX orders_a;", {}),
    ("LK03", "REINDEX TABLE orders;", {}),
    ("LK04", "ALTER TABLE orders ADD CONSTRAINT orders_a_key UNIQUE (a);", {}),
    ("LK05", "ALTER TABLE orders ADD PRIMARY KEY (id);", {}),
    ("LK05", "ALTER TABLE orders ADD COLUMN id2 serial PRIMARY KEY;", {}),
    (
        "LK06",
        "ALTER TABLE orders ADD CONSTRAINT orders_c_fk FOREIGN KEY (c) REFERENCES customers (id);",
        {},
    ),
    ("LK06", "ALTER TABLE orders ADD COLUMN customer_id bigint REFERENCES customers (id);", {}),
    ("LK07", "ALTER TABLE orders ADD CONSTRAINT pos CHECK (a > 0);", {}),
    ("LK08", "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;", {}),
    ("LK08", "ALTER TABLE orders ADD CONSTRAINT a_nn NOT NULL a;", {}),
    (
        "LK08",
        "ALTER TABLE orders ADD CONSTRAINT a_nn CHECK (a IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT a_nn;\n"
        "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;",
        {"pg": 11},  # before 12 the validated CHECK does not spare the scan
    ),
    (
        "LK09",
        "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
        {},
    ),
    (
        "LK10",
        "ALTER TABLE orders ADD CONSTRAINT pos CHECK (a > 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT pos;",
        {},
    ),
    ("LK11", "ALTER TABLE events DETACH PARTITION events_2019;", {}),
    (
        "LK12",
        "ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
        {},
    ),
    ("LK13", "REFRESH MATERIALIZED VIEW daily_totals;", {}),
    ("LK14", "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;", {}),
    (
        "LK15",
        "CREATE TRIGGER audit BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit();",
        {},
    ),
    ("LK15", "ALTER TABLE orders DISABLE TRIGGER audit;", {}),
    ("LK16", "ALTER DOMAIN positive ADD CONSTRAINT gt0 CHECK (VALUE > 0);", {}),
    ("LK16", "CREATE DOMAIN positive AS int CHECK (VALUE > 0);", {}),
    ("LK17", "ALTER TABLE orders ADD COLUMN b int;", {}),
    ("LK18", "ALTER TABLE orders ADD COLUMN b int;", {}),
    ("LK19", "ALTER TABLE orders ADD COLUMN b int;\nUPDATE orders SET b = a WHERE b IS NULL;", {}),
    ("LK19", "CREATE INDEX i ON orders (a);\nINSERT INTO orders_archive SELECT * FROM orders;", {}),
    ("RW01", "ALTER TABLE orders ALTER COLUMN a TYPE bigint;", {}),
    ("RW01", "ALTER TABLE orders ALTER COLUMN note TYPE varchar(10);", {"prelude": ORDERS}),
    ("RW02", "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();", {}),
    ("RW02", "ALTER TABLE orders ADD COLUMN r float8 DEFAULT random();", {}),
    ("RW02", "ALTER TABLE orders ADD COLUMN ts timestamptz DEFAULT now();", {"pg": 10}),
    ("RW02", "ALTER TABLE orders ADD COLUMN x int DEFAULT my_func();", {}),  # undecidable: says so
    ("RW03", "ALTER TABLE orders ADD COLUMN n bigserial;", {}),
    ("RW03", "ALTER TABLE orders ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY;", {}),
    ("RW04", "ALTER TABLE orders ADD COLUMN g2 int GENERATED ALWAYS AS (a * 2) STORED;", {}),
    ("RW04", "ALTER TABLE orders ALTER COLUMN g3 SET EXPRESSION AS (a * 3);", {}),
    ("RW05", "ALTER TABLE orders SET LOGGED;", {}),
    ("RW06", "ALTER TABLE orders SET TABLESPACE fast_ssd;", {}),
    ("RW06", "ALTER TABLE orders SET ACCESS METHOD heap2;", {}),
    ("RW07", "VACUUM FULL orders;", NONTX),
    ("RW07", "CLUSTER orders USING orders_pkey;", {}),
    ("BC01", "ALTER TABLE orders RENAME COLUMN note TO remark;", {}),
    ("BC02", "ALTER TABLE orders RENAME TO purchases;", {}),
    ("BC02", "ALTER VIEW order_view RENAME TO purchase_view;", {}),
    ("BC03", "ALTER INDEX orders_a RENAME TO orders_a_idx;", {}),
    ("BC03", "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy';", {}),
    ("BC03", "ALTER TABLE orders RENAME CONSTRAINT c1 TO c2;", {}),
    ("BC04", "ALTER TABLE orders ALTER COLUMN a DROP NOT NULL;", {}),
    ("BC05", "ALTER TABLE orders ALTER COLUMN a SET DEFAULT 0;", {}),
    ("BC05", "ALTER TABLE orders ALTER COLUMN a DROP DEFAULT;", {}),
    ("BC06", "DROP VIEW order_view;", {}),
    ("BC06", "DROP FUNCTION total(int);", {}),
    ("BC06", "DROP TRIGGER audit ON orders;", {}),
    ("BC07", "ALTER TABLE orders DROP CONSTRAINT orders_a_check;", {}),
    ("BC08", "ALTER TABLE orders SET SCHEMA archive;", {}),
    ("BC08", "ALTER FUNCTION total() SET SCHEMA archive;", {}),
    ("BC09", "ALTER SEQUENCE order_seq RESTART WITH 1;", {}),
    ("BC09", "SELECT setval('order_seq', 1);", {}),
    ("BC09", "ALTER TABLE orders ALTER COLUMN id SET INCREMENT BY 2;", {}),
    ("BC10", "ALTER TABLE orders ALTER COLUMN g DROP EXPRESSION;", {}),
    ("BC11", "ALTER TABLE orders DISABLE TRIGGER ALL;", {}),
    ("BC11", "ALTER TABLE orders ENABLE REPLICA TRIGGER audit;", {}),
    ("BC12", "CREATE OR REPLACE VIEW order_view AS SELECT id FROM orders;", {}),
    ("BC12", "CREATE OR REPLACE FUNCTION total() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;", {}),
    ("BC13", "REVOKE SELECT ON orders FROM reporting;", {}),
    ("BC13", "ALTER TABLE orders ENABLE ROW LEVEL SECURITY;", {}),
    ("BC13", "CREATE POLICY own_rows ON orders USING (owner = current_user);", {}),
    ("BC13", "ALTER SYSTEM SET work_mem = '64MB';", NONTX),
    ("BC13", "ALTER ROLE app SET search_path = app;", {}),
    ("BC14", "ALTER TABLE orders REPLICA IDENTITY FULL;", {}),
    ("BC14", "DROP PUBLICATION cdc;", {}),
    ("BC14", "ALTER PUBLICATION cdc DROP TABLE orders;", {}),
    ("BC15", "ALTER TABLE orders_2019 NO INHERIT orders;", {}),
    ("BC15", "ALTER TABLE events DETACH PARTITION events_2019 CONCURRENTLY;", NONTX),
    ("BC16", "ALTER TABLE orders ADD CONSTRAINT pos CHECK (a > 0) NOT VALID;", {}),
    ("BC16", "CREATE UNIQUE INDEX CONCURRENTLY orders_note ON orders (note);", NONTX),
    ("BC17", "ALTER TABLE orders ADD COLUMN b int;", {}),
    ("BC17", "ALTER TYPE mood ADD VALUE 'meh';", {}),
    ("BC18", "ALTER EXTENSION postgis UPDATE;", {}),
    ("BC18", "ALTER EXTENSION hstore DROP FUNCTION f();", {}),
    ("BC19", "CREATE TABLE events (payload json);", {}),
    ("BC19", "ALTER TABLE orders ADD COLUMN meta json;", {}),
    ("DD01", "ALTER TABLE orders ADD COLUMN b int NOT NULL;", {}),
    ("DD02", "CREATE UNIQUE INDEX CONCURRENTLY orders_note ON orders (note);", NONTX),
    ("DD02", "ALTER TABLE orders ADD CONSTRAINT orders_note_key UNIQUE (note);", {}),
    ("DD03", "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;", {}),
    ("DD03", "ALTER TABLE orders VALIDATE CONSTRAINT pos;", {}),
    ("TX01", "CREATE INDEX CONCURRENTLY orders_a ON orders (a);", {}),
    ("TX01", "DROP INDEX CONCURRENTLY orders_a;", {}),
    ("TX01", "REINDEX INDEX CONCURRENTLY orders_a;", {}),
    ("TX01", "ALTER TABLE events DETACH PARTITION events_2019 CONCURRENTLY;", {}),
    ("TX01", "VACUUM orders;", {}),
    ("TX01", "ALTER SYSTEM SET work_mem = '64MB';", {}),
    ("TX01", "CREATE DATABASE reporting;", {}),
    ("TX01", "ALTER TYPE mood ADD VALUE 'meh';", {"pg": 11}),
    ("TX01", "BEGIN;\nCREATE INDEX CONCURRENTLY orders_a ON orders (a);\nCOMMIT;", NONTX),
    ("TX02", "BEGIN;\nALTER TABLE orders ADD COLUMN b int;\nCOMMIT;", {}),
    ("TX02", "BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;", NONTX),
    ("TX03", "BEGIN;\nALTER TABLE orders ADD COLUMN IF NOT EXISTS b int;", NONTX),
    ("TX04", "ALTER TABLE orders ADD COLUMN b int;\nALTER TABLE orders ADD COLUMN c int;", {}),
    ("TX04", "ALTER TABLE orders DROP COLUMN note;\nCREATE INDEX orders_a ON lines (a);", {}),
    ("TX05", "CREATE INDEX CONCURRENTLY orders_a ON orders (a);", NONTX),
    ("TX05", "DROP INDEX CONCURRENTLY orders_a;", NONTX),
    ("HY01", "CREATE TABLE t (id int PRIMARY KEY);", {}),
    ("HY01", "CREATE TABLE t (n smallint);", {}),
    ("HY02", "CREATE TABLE t (id serial PRIMARY KEY);", {}),
    ("HY03", "CREATE TABLE t (name varchar(40));", {}),
    ("HY04", "CREATE TABLE t (at timestamp);", {}),
    ("HY05", "CREATE TABLE t (code char(2));", {}),
    ("HY06", "CREATE TABLE " + "x" * 64 + " (a bigint);", {}),
    ("HY07", "CREATE TABLE t (a bigint);", {}),
    ("HY08", "UPDATE orders SET a = 1, a = 2 WHERE id = 1;", {}),
    ("HY08", "INSERT INTO orders (a, a) VALUES (1, 2);", {}),
    ("HY08", "CREATE TABLE t (a bigint, a text);", {}),
    ("HY09", "CREATE TYPE mood AS ENUM ('ok', 'sad');", {}),
    ("HY09", "ALTER TYPE mood ADD VALUE 'meh';", {}),
    ("HY10", "CREATE INDEX CONCURRENTLY wide ON orders (a, b, c, d);", NONTX),
    ("AN01", "SELEC 1;", {}),
    ("AN01", "SELECT 1;\nSELECT 'unterminated;\n", {}),
    ("AN02", "\\set ON_ERROR_STOP on\nSELECT 1;", {}),
    ("AN02", "SELECT 1;\n\\i other.sql\n", {}),
    ("AN03", "DO $$ BEGIN EXECUTE 'DROP TABLE orders'; END $$;", {}),
    ("AN03", "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;", {}),
    ("AN03", "CALL archive_orders();", {}),
    ("AN04", "-- migrate-job: approve DL02\nSELECT 1;", {}),
    ("AN04", '-- migrate-job: approve ZZ99 "no such rule"\nSELECT 1;', {}),
    ("AN07", "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'i'::regclass;", {}),
    ("AN07", "DELETE FROM pg_catalog.pg_description WHERE objoid = 1;", {}),
    ("VF01", "SELECT count(*) = 2 FROM t;\nINSERT INTO t VALUES (3);", VERIFY),
    ("VF01", "WITH gone AS (DELETE FROM t RETURNING 1) SELECT count(*) = 0 FROM gone;", VERIFY),
    ("VF01", "SET search_path = app;", VERIFY),
]

QUIET: list[tuple[str, str, dict]] = [
    ("DL01", "CREATE TABLE scratch (a bigint);\nDROP TABLE scratch;", {}),
    ("DL02", "CREATE TABLE t (a bigint, b bigint);\nALTER TABLE t DROP COLUMN b;", {}),
    ("DL02", "ALTER TABLE orders DROP COLUMN g;", {"prelude": ORDERS}),  # PG18 VIRTUAL: no data
    ("DL03", "CREATE SCHEMA IF NOT EXISTS app;", {}),
    ("DL04", "ALTER DATABASE app SET work_mem = '64MB';", {}),
    ("DL05", "CREATE TABLE staging (a bigint);\nTRUNCATE staging;", {}),
    ("DL06", "INSERT INTO orders (id) VALUES (1);", {}),
    ("DL06", "CREATE TABLE t (a bigint);\nUPDATE t SET a = 1;", {}),
    ("DL07", "DROP TYPE mood;", {}),
    ("DL08", "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2);", {"prelude": ORDERS}),
    ("DL08", "ALTER TABLE orders ALTER COLUMN a TYPE bigint;", {}),
    ("DL09", "CREATE SEQUENCE s2;\nDROP SEQUENCE s2;", {}),
    ("DL10", "CREATE TABLE t (a bigint);\nALTER TABLE t SET UNLOGGED;", {}),
    ("LK01", "CREATE INDEX CONCURRENTLY orders_a ON orders (a);", NONTX),
    ("LK01", "CREATE TABLE t (a bigint);\nCREATE INDEX t_a ON t (a);", {}),
    ("LK01", "CREATE INDEX orders_a ON ONLY orders (a);", {}),
    ("LK02", "DROP INDEX CONCURRENTLY IF EXISTS orders_a;", NONTX),
    ("LK03", "REINDEX (CONCURRENTLY) TABLE orders;", NONTX),
    ("LK04", "ALTER TABLE orders ADD CONSTRAINT orders_a_key UNIQUE USING INDEX orders_a_idx;", {}),
    ("LK05", "CREATE TABLE t (id bigint);\nALTER TABLE t ADD PRIMARY KEY (id);", {}),
    (
        "LK06",
        "ALTER TABLE orders ADD CONSTRAINT orders_c_fk FOREIGN KEY (c) REFERENCES customers (id) NOT VALID;",
        {},
    ),
    ("LK07", "ALTER TABLE orders ADD CONSTRAINT pos CHECK (a > 0) NOT VALID;", {}),
    (
        "LK08",
        "ALTER TABLE orders ADD CONSTRAINT a_nn CHECK (a IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT a_nn;\n"
        "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;",
        {"pg": 12},
    ),
    ("LK08", "ALTER TABLE orders ADD CONSTRAINT a_nn NOT NULL a NOT VALID;", {}),
    (
        "LK09",
        "CREATE TABLE b (room int, during tstzrange);\nALTER TABLE b ADD CONSTRAINT x EXCLUDE USING gist (room WITH =, during WITH &&);",
        {},
    ),
    ("LK10", "ALTER TABLE orders VALIDATE CONSTRAINT pos;", {}),
    ("LK11", "ALTER TABLE events DETACH PARTITION events_2019 CONCURRENTLY;", NONTX),
    (
        "LK12",
        "CREATE TABLE events_2025 (at timestamptz);\nALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
        {},
    ),
    ("LK13", "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals;", {}),
    ("LK14", "LOCK TABLE orders IN ROW EXCLUSIVE MODE;", {}),
    (
        "LK15",
        "CREATE TABLE t (a bigint);\nCREATE TRIGGER audit BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION audit();",
        {},
    ),
    ("LK16", "ALTER DOMAIN positive ADD CONSTRAINT gt0 CHECK (VALUE > 0) NOT VALID;", {}),
    ("LK16", "CREATE DOMAIN label AS text;", {}),
    ("LK17", "SET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN b int;", {}),
    (
        "LK17",
        "SELECT set_config('lock_timeout', '2s', true);\nALTER TABLE orders ADD COLUMN b int;",
        {},
    ),
    ("LK18", "SET statement_timeout = '5min';\nALTER TABLE orders ADD COLUMN b int;", {}),
    (
        "LK19",
        "ALTER TABLE orders ADD COLUMN b int;\nUPDATE orders SET b = a WHERE b IS NULL;",
        NONTX,
    ),
    ("LK19", "UPDATE orders SET b = a WHERE id < 1000;", {}),
    ("RW01", "ALTER TABLE orders ALTER COLUMN note TYPE varchar(40);", {"prelude": ORDERS}),
    ("RW01", "ALTER TABLE orders ALTER COLUMN note TYPE text;", {"prelude": ORDERS}),
    ("RW02", "ALTER TABLE orders ADD COLUMN ts timestamptz DEFAULT now();", {"pg": 11}),
    ("RW02", "ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'new';", {}),
    ("RW02", "CREATE TABLE t (a bigint);\nALTER TABLE t ADD COLUMN r float8 DEFAULT random();", {}),
    ("RW03", "ALTER TABLE orders ADD COLUMN n bigint;", {}),
    ("RW04", "ALTER TABLE orders ADD COLUMN g2 int GENERATED ALWAYS AS (a * 2) VIRTUAL;", {}),
    ("RW04", "ALTER TABLE orders ALTER COLUMN g SET EXPRESSION AS (a * 3);", {"prelude": ORDERS}),
    ("RW05", "CREATE UNLOGGED TABLE s (a bigint);\nALTER TABLE s SET LOGGED;", {}),
    ("RW06", "ALTER TABLE orders SET (fillfactor = 90);", {}),
    ("RW07", "VACUUM (ANALYZE) orders;", NONTX),
    ("BC01", "CREATE TABLE t (a bigint);\nALTER TABLE t RENAME COLUMN a TO b;", {}),
    ("BC02", "CREATE TABLE t (a bigint);\nALTER TABLE t RENAME TO u;", {}),
    ("BC03", "ALTER TABLE orders RENAME COLUMN a TO b;", {}),
    ("BC04", "ALTER TABLE orders ALTER COLUMN a SET NOT NULL;", {}),
    ("BC05", "CREATE TABLE t (a bigint);\nALTER TABLE t ALTER COLUMN a SET DEFAULT 0;", {}),
    ("BC06", "CREATE VIEW v2 AS SELECT 1;\nDROP VIEW v2;", {}),
    (
        "BC07",
        "CREATE TABLE t (a bigint CONSTRAINT pos CHECK (a > 0));\nALTER TABLE t DROP CONSTRAINT pos;",
        {},
    ),
    ("BC08", "CREATE TABLE t (a bigint);\nALTER TABLE t SET SCHEMA archive;", {}),
    ("BC09", "SELECT nextval('order_seq');", {}),
    (
        "BC10",
        "CREATE TABLE t (a int, g int GENERATED ALWAYS AS (a) STORED);\nALTER TABLE t ALTER COLUMN g DROP EXPRESSION;",
        {},
    ),
    ("BC11", "ALTER TABLE orders ENABLE TRIGGER audit;", {}),
    ("BC12", "CREATE VIEW order_view2 AS SELECT id FROM orders;", {}),
    ("BC13", "GRANT SELECT ON orders TO reporting;", {}),
    ("BC13", "CREATE TABLE t (a bigint);\nALTER TABLE t ENABLE ROW LEVEL SECURITY;", {}),
    ("BC14", "CREATE TABLE t (a bigint);\nALTER TABLE t REPLICA IDENTITY FULL;", {}),
    ("BC15", "ALTER TABLE orders_2019 INHERIT orders;", {}),
    ("BC16", "CREATE TABLE t (a bigint);\nALTER TABLE t ADD CONSTRAINT pos CHECK (a > 0);", {}),
    ("BC16", "CREATE INDEX CONCURRENTLY orders_note ON orders (note);", NONTX),
    ("BC17", "CREATE TABLE t (a bigint);\nALTER TABLE t ADD COLUMN b bigint;", {}),
    ("BC18", "CREATE EXTENSION IF NOT EXISTS pg_trgm;", {}),
    ("BC19", "CREATE TABLE events (payload jsonb);", {}),
    ("DD01", "ALTER TABLE orders ADD COLUMN b int NOT NULL DEFAULT 0;", {}),
    ("DD01", "ALTER TABLE orders ADD COLUMN b bigint GENERATED ALWAYS AS IDENTITY NOT NULL;", {}),
    ("DD02", "CREATE INDEX CONCURRENTLY orders_note ON orders (note);", NONTX),
    ("DD03", "ALTER TABLE orders ALTER COLUMN a DROP NOT NULL;", {}),
    ("TX01", "CREATE INDEX CONCURRENTLY orders_a ON orders (a);", NONTX),
    ("TX01", "ANALYZE orders;", {}),
    ("TX01", "ALTER TYPE mood ADD VALUE 'meh';", {"pg": 12}),
    ("TX02", "BEGIN;\nALTER TABLE orders ADD COLUMN IF NOT EXISTS b int;\nCOMMIT;", NONTX),
    ("TX02", "SAVEPOINT s1;\nSELECT 1;\nRELEASE SAVEPOINT s1;", {}),
    ("TX03", "BEGIN;\nALTER TABLE orders ADD COLUMN IF NOT EXISTS b int;\nCOMMIT;", NONTX),
    ("TX04", "ALTER TABLE orders ADD COLUMN b int, ADD COLUMN c int;", {}),
    ("TX04", "SET lock_timeout = '1s';\nALTER TABLE orders ADD COLUMN b int;", {}),
    ("TX05", "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_a ON orders (a);", NONTX),
    (
        "TX05",
        "CREATE INDEX orders_a ON orders (a);",
        {},
    ),  # inside the job's transaction: atomic anyway
    ("HY01", "CREATE TABLE t (id bigint PRIMARY KEY);", {}),
    ("HY02", "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY);", {}),
    ("HY03", "CREATE TABLE t (name text);", {}),
    ("HY04", "CREATE TABLE t (at timestamptz);", {}),
    ("HY05", "CREATE TABLE t (code text);", {}),
    ("HY06", "CREATE TABLE " + "x" * 63 + " (a bigint);", {}),
    ("HY07", "CREATE TABLE app.t (a bigint);", {}),
    ("HY08", "UPDATE orders SET a = 1, b = 2 WHERE id = 1;", {}),
    ("HY09", "ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok';", {}),
    ("HY10", "CREATE INDEX CONCURRENTLY narrow ON orders (a, b, c);", NONTX),
    ("AN01", "SELECT 1;", {}),
    ("AN02", "SELECT '\\set x 1';\nSELECT E'a\\\\b';", {}),
    ("AN03", "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END;", {}),
    (
        "AN04",
        '-- migrate-job: approve DL02 "column unused since v41"\nALTER TABLE orders DROP COLUMN note;',
        {},
    ),
    ("AN04", "-- an ordinary comment mentioning migrate-job\nSELECT 1;", {}),
    ("AN07", "UPDATE orders SET a = 1 WHERE id = 1;", {}),
    ("VF01", "SELECT count(*) = 2 FROM t;\nSET LOCAL lock_timeout = '1s';", VERIFY),
    ("VF01", "INSERT INTO t VALUES (3);", {}),  # a migration, not a verify script
]


def _id(case: tuple[str, str, dict]) -> str:
    return f"{case[0]}-{' '.join(case[1].split())[:40]}"


@pytest.mark.parametrize("case", FIRES, ids=[_id(c) for c in FIRES])
def test_rule_fires(case: tuple[str, str, dict]) -> None:
    rule, sql, opts = case
    report = run(sql, **opts)
    assert rule in rules_fired(report), [(f.rule, f.message) for f in report.findings]


@pytest.mark.parametrize("case", QUIET, ids=[_id(c) for c in QUIET])
def test_rule_stays_quiet_on_close_case(case: tuple[str, str, dict]) -> None:
    rule, sql, opts = case
    report = run(sql, **opts)
    assert rule not in rules_fired(report), [
        (f.rule, f.message) for f in report.findings if f.rule == rule
    ]


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    # AN05 is a rule *bug* (tested in test_engine); AN06 needs a rollback file (test_run_model)
    ids = {r.id for r in RULES} - {"AN05", "AN06"}
    assert ids - {c[0] for c in FIRES} == set()
    assert ids - {c[0] for c in QUIET} == set()


def test_catalogue_has_73_rules_in_seven_categories() -> None:
    catalogue = [r for r in RULES if r.category != "analysis"]
    assert len(catalogue) == 73
    assert len({r.category for r in catalogue}) == 7
    assert len({r.id for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.severity in ("error", "warning", "info")
        assert r.summary and r.safe_alternative and r.name
    assert {r.id for r in RULES if r.blocking} == {
        *(f"DL{i:02}" for i in range(1, 11)),
        "TX01",
        "AN01",
        "AN02",
        "VF01",
    }
