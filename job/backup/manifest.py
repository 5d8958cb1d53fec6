"""The JSON manifest written beside every dump, naming, and retention.

The manifest is what makes a dump ours: retention deletes only dumps whose manifest says
``"tool": "migrate-job"`` and names the same database, so foreign objects under the same prefix
are never touched. It never holds a password (the database is shown as ``user@host:port/db``).
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from job.backup.target import Target
from job.db import ConnParams

TOOL = "migrate-job"
DUMP_SUFFIX = ".dump"
MANIFEST_SUFFIX = ".manifest.json"


def database_key(params: ConnParams) -> str:
    """Identity of a database for retention: host:port/dbname (the user may change)."""
    p = params.params
    host = p.get("host") or p.get("hostaddr") or "localhost"
    return f"{host}:{p.get('port', '5432')}/{p.get('dbname') or p.get('user') or '?'}"


def new_base_name(params: ConnParams, now: datetime) -> str:
    db = params.params.get("dbname") or "db"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", db).strip("._") or "db"
    return f"{slug[:60]}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def manifest_name_for(dump_name: str) -> str:
    if dump_name.endswith(MANIFEST_SUFFIX):
        return dump_name
    if dump_name.endswith(DUMP_SUFFIX):
        return dump_name[: -len(DUMP_SUFFIX)] + MANIFEST_SUFFIX
    return dump_name + MANIFEST_SUFFIX


def utc_iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def load(target: Target, name: str) -> dict[str, Any] | None:
    """The manifest ``name`` if it is one of ours, else None (foreign or unreadable JSON)."""
    data = b"".join(target.read(name))
    try:
        manifest = json.loads(data)
    except ValueError:
        return None
    if not isinstance(manifest, dict) or manifest.get("tool") != TOOL:
        return None
    return manifest


def apply_retention(target: Target, key: str, keep: int, log: Any) -> list[str]:
    """Delete all but the newest ``keep`` dumps of database ``key``; returns deleted names."""
    if keep <= 0:
        return []
    ours: list[tuple[str, str, dict[str, Any]]] = []
    for name in target.list():
        if not name.endswith(MANIFEST_SUFFIX):
            continue
        manifest = load(target, name)
        if manifest is None or manifest.get("database_key") != key:
            continue
        ours.append((str(manifest.get("started_at", "")), name, manifest))
    ours.sort(reverse=True)
    deleted: list[str] = []
    for _, name, manifest in ours[keep:]:
        dump = manifest.get("dump")
        # The manifest may only point at a sibling dump of ours, never elsewhere.
        if isinstance(dump, str) and "/" not in dump and dump.endswith(DUMP_SUFFIX):
            target.delete(dump)
            deleted.append(dump)
        target.delete(name)
        deleted.append(name)
        log.info("backup.retention_deleted", uri=target.uri_for(name), dump=dump)
    return deleted
