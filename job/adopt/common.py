"""Small helpers the importers share: reading files and looking at a history table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

    from job.adopt.model import TableName


def read_text(path: Path) -> str:
    """A migration file as text with LF line endings, or a ConfigError naming it."""
    try:
        return path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                          file=str(path)) from None


def source_dir(source: Path, tool: str) -> Path:
    if not source.is_dir():
        raise ConfigError(f"{tool} migrations directory {str(source)!r} does not exist or is not "
                          "a directory (pass --source DIR)")
    return source


def columns(conn: psycopg.Connection[Any], table: TableName) -> list[str] | None:
    """The table's column names, or None when it does not exist."""
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", (table.schema, table.name)).fetchall()
    return [r[0] for r in rows] if rows else None


def require_columns(conn: psycopg.Connection[Any], table: TableName, tool: str,
                    needed: set[str]) -> bool:
    """True when the table exists with the tool's columns; False when it does not exist.

    A table of that name with other columns belongs to something else (golang-migrate and dbmate
    both call theirs schema_migrations): refuse rather than misread it."""
    cols = columns(conn, table)
    if cols is None:
        return False
    missing = needed - set(cols)
    if missing:
        raise ConfigError(
            f"{table} does not look like {tool}'s history table (no column(s) "
            f"{', '.join(sorted(missing))}; it has {', '.join(cols)}): check --from and --table")
    return True


def slug(text: str, limit: int = 60) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:limit].rstrip("_") or "migration"


def numeric_prefix(name: str) -> int | None:
    m = re.match(r"(\d+)", name)
    return int(m.group(1)) if m else None
