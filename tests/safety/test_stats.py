# ruff: noqa: E501  (SQL cases read best on one line each)
"""PgStats against a real server: sizes in the findings, read-only, ACCESS SHARE at most."""

from __future__ import annotations

import psycopg

from job.safety import SafetyConfig, SqlFile, analyze
from job.safety.stats import PgStats


def test_impact_report_shows_rows_and_size(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id bigint, note text)")
        conn.execute(
            "INSERT INTO orders SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"
        )
        conn.execute('CREATE SCHEMA "Sales"')
        conn.execute('CREATE TABLE "Sales"."Lines" (id bigint)')
        conn.execute("ANALYZE")
        files = [
            SqlFile(
                "0002",
                "m/0002.sql",
                'ALTER TABLE orders ALTER COLUMN id TYPE int;\nDROP TABLE "Sales"."Lines";\nDROP TABLE missing;',
                True,
            )
        ]
        report = analyze(
            files,
            server_version_num=conn.info.server_version,
            stats=PgStats(conn),
            config=SafetyConfig(),
        )
    rw01 = next(f for f in report.findings if f.rule == "RW01")
    assert (
        rw01.table == "orders"
        and rw01.rows == 20000
        and rw01.total_bytes
        and rw01.total_bytes > 1_000_000
    )
    assert "on orders (20.0 k rows, " in rw01.message and " MB)]" in rw01.message
    assert rw01.message.split("[")[1].startswith(
        "ACCESS EXCLUSIVE + table rewrite + index rebuild on orders"
    )
    lines = next(f for f in report.findings if f.rule == "DL01" and f.table == "Sales.Lines")
    assert lines.rows == 0 and lines.total_bytes is not None
    missing = next(f for f in report.findings if f.table == "missing")
    assert missing.rows is None and "[" not in missing.message
    assert report.pg_version_source == "server"


def test_stats_queries_are_read_only_and_take_at_most_access_share(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE orders (id bigint)")
        setup.execute("CREATE TABLE events (at date) PARTITION BY RANGE (at)")
        setup.execute(
            "CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM ('2020-01-01') TO ('2030-01-01')"
        )
        setup.execute("INSERT INTO events SELECT '2021-01-01' FROM generate_series(1, 500)")
        setup.execute("ANALYZE")
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        sizes = PgStats(conn).table_stats(["orders", "events", "public.orders", "nope"])
        modes = {
            r[0]
            for r in conn.execute(
                "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation'"
            ).fetchall()
        }
        conn.rollback()
    assert set(sizes) == {"orders", "events", "public.orders"}
    assert sizes["events"].rows == 500 and sizes["events"].total_bytes > 0
    assert modes <= {"AccessShareLock"}, modes
