"""Shared helpers for the backup tests (targets by kind, object listings, pid handling)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from job.backup.target import Target
from job.backup.targets import open_target
from job.db import ConnParams
from job.settings import Settings


def backup_uri(request: pytest.FixtureRequest, kind: str, tmp_path: Path
               ) -> tuple[str, dict[str, str]]:
    prefix = "pre/" + uuid.uuid4().hex[:8]
    if kind == "file":
        return f"file://{tmp_path}/backups", request.getfixturevalue("base_env")
    if kind == "s3":
        bucket = request.getfixturevalue("bucket")
        return f"s3://{bucket}/{prefix}", request.getfixturevalue("s3_env")
    container = request.getfixturevalue("container")
    return f"azblob://devstoreaccount1/{container}/{prefix}", request.getfixturevalue("azure_env")


def everything_under(uri: str, env: dict[str, str]) -> list[str]:
    """Every object under the target, including hidden/partial files."""
    t: Any = open_target(uri, env)
    kind = uri.split("://")[0]
    if kind == "file":
        d = Path(uri[len("file://"):])
        return sorted(p.name for p in d.iterdir()) if d.exists() else []
    if kind == "s3":
        resp = t.client.list_objects_v2(Bucket=t.bucket, Prefix=t.prefix)
        return sorted(o["Key"] for o in resp.get("Contents", []))
    # Committed blobs only: staged blocks of an aborted upload are never a blob (Azure drops
    # them after seven days), which is the documented Azure behaviour.
    return sorted(b.name for b in t.client.list_blobs(name_starts_with=t.prefix))


def manifest_of(target: Target, dump_uri: str) -> dict[str, Any]:
    name = dump_uri.rsplit("/", 1)[1].replace(".dump", ".manifest.json")
    manifest: dict[str, Any] = json.loads(b"".join(target.read(name)))
    return manifest


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[1].split()[0] == "Z"


class RecordingLog:
    """A structlog-shaped logger that keeps every event for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, event: str, **kw: Any) -> None:
        self.events.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, e, kw in self.events if e == event]


def make_settings(backup: str, env: dict[str, str], **kw: Any) -> Settings:
    return Settings(backup=backup, environ=env, **kw)


def params_of(url: str) -> ConnParams:
    return ConnParams.from_url(url)


# -- a database worth backing up ----------------------------------------------------------------
SEED_SQL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, mood mood NOT NULL,
                        created timestamptz NOT NULL DEFAULT '2024-01-01');
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers(id),
                     amount numeric(12, 2) NOT NULL, note text, invoice bigint);
CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb, blob bytea);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE FUNCTION order_total(c bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = c $$;
CREATE VIEW big_spenders AS SELECT id, order_total(id) AS total FROM customers;
INSERT INTO customers (name, mood)
    SELECT 'customer ' || g, (ARRAY['sad','ok','happy']::mood[])[1 + g % 3]
    FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, amount, note, invoice)
    SELECT 1 + g % 500, (g % 997) / 7.0, CASE WHEN g % 5 = 0 THEN NULL ELSE md5(g::text) END,
           nextval('invoice_no')
    FROM generate_series(1, 5000) g;
INSERT INTO events (id, payload, blob)
    SELECT g, jsonb_build_object('n', g, 'tag', md5(g::text)), decode(md5(g::text), 'hex')
    FROM generate_series(1, {rows}) g;
"""

TABLES = ("customers", "orders", "events")


def seed(url: str, rows: int = 100_000) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED_SQL.replace("{rows}", str(rows)).encode())


def fingerprint(url: str) -> dict[str, Any]:
    """Row counts and an order-independent-of-storage checksum per table, plus the sequence,
    the enum, and the function's result: equal fingerprints mean equal contents."""
    out: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for t in TABLES:
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY id), ''))"  # noqa: S608
                f" FROM {t} t"
            ).fetchone()
            out[t] = row
        out["invoice_no"] = conn.execute(
            "SELECT last_value, is_called FROM invoice_no").fetchone()
        out["enum"] = conn.execute("SELECT enum_range(NULL::mood)::text").fetchone()
        out["function"] = conn.execute("SELECT order_total(42)::text").fetchone()
        out["view"] = conn.execute("SELECT count(*) FROM big_spenders").fetchone()
    return out
