# ruff: noqa: E501  (SQL cases read best on one line each)
"""Benchmark: `lint` over 2,000 generated migration files. Prints files/second.

Target (issue 5): well under 1 s per 100 files on the 2-core CI machine.
Run: .venv/bin/python bench/lint.py [--files 2000]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from job.safety import lint_main  # noqa: E402

TEMPLATES = [
    "CREATE TABLE t{i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,\n"
    "  created timestamptz NOT NULL DEFAULT now(), payload jsonb);\n"
    "CREATE INDEX t{i}_created ON t{i} (created);\n",
    "ALTER TABLE t{j} ADD COLUMN c{i} text;\nALTER TABLE t{j} ALTER COLUMN c{i} SET DEFAULT 'x';\n",
    "-- transactional: false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t{j}_name_{i} ON t{j} (name);\n",
    "SET lock_timeout = '2s';\nALTER TABLE t{j} ADD CONSTRAINT t{j}_ck{i} CHECK (length(name) < 200) NOT VALID;\n",
    "ALTER TABLE t{j} VALIDATE CONSTRAINT t{j}_ck{i};\n",
    '-- migrate-job: approve DL02 "unused since v{i}"\nALTER TABLE t{j} DROP COLUMN IF EXISTS c{i};\n',
    "UPDATE t{j} SET name = lower(name) WHERE id < {i};\nALTER TABLE t{j} ALTER COLUMN name TYPE varchar(100);\n",
    "CREATE OR REPLACE VIEW v{i} AS SELECT id, name FROM t{j} WHERE created > now() - interval '1 day';\n"
    "CREATE FUNCTION f{i}(x int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT x + {i} $$;\n",
    "INSERT INTO t{j} (name) VALUES ('a'), ('b'), ('c');\nCOMMENT ON TABLE t{j} IS 'bench {i}';\n",
    "DO $$ BEGIN RAISE NOTICE 'hello {i}'; END $$;\nSELEC broken {i};\n",
]


def generate(directory: str, count: int) -> None:
    for i in range(count):
        body = "".join(TEMPLATES[(i + k) % len(TEMPLATES)].format(i=i, j=i % 50) for k in range(3))
        with open(os.path.join(directory, f"{i:05d}_bench.sql"), "w", encoding="utf-8") as fh:
            fh.write(body)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        generate(d, args.files)
        out, err = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        code = lint_main([d], fmt="json", pg_version=16, config_dir=d, out=out, err=err)
        elapsed = time.perf_counter() - start
    findings = out.getvalue().count('"rule":')
    rate = args.files / elapsed
    print(
        f"lint: {args.files} files, {findings} findings, exit {code}, {elapsed:.2f} s, "
        f"{rate:.0f} files/s, {100 * elapsed / args.files * 1000:.0f} ms per 100 files"
    )
    return 0 if elapsed / args.files * 100 < 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
