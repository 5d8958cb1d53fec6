"""Verified pre-migration backups (file, S3, Azure Blob) and restore.

``take_backup`` is called by ``run`` (after the lock and the safety gate, only when something is
pending) and by ``backup``; ``restore_backup`` by ``restore``. Order of a backup: preflight
(tools, versions, target writable, free space) -> ``pg_dump -Fc`` streamed to the target ->
completed only if pg_dump exited 0 and its table of contents reads -> read back and compared by
sha256 (or restored into a scratch database) -> manifest -> retention. Every failure is a
``BackupError`` (exit 7) raised before any migration runs.

This module stays light: cloud SDKs are imported inside their target adapters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from job import __version__, redact
from job.backup import manifest as mf
from job.backup.stream import ProgressHook, dump_to_target
from job.backup.targets import open_target
from job.backup.tools import find_tools
from job.backup.verify import verify
from job.db import ConnParams
from job.errors import BackupError

if TYPE_CHECKING:
    import psycopg

    from job.settings import Settings

__all__ = ["BackupResult", "take_backup", "restore_backup"]

FORMAT = "custom"


@dataclass(frozen=True)
class BackupResult:
    uri: str
    manifest_uri: str
    bytes: int
    sha256: str
    duration_s: float
    format: str

    def summary(self) -> dict[str, Any]:
        return {"uri": self.uri, "bytes": self.bytes, "sha256": self.sha256}


def _server_facts(conn: psycopg.Connection[Any]) -> tuple[int, str, str, int, int]:
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version'),"
        " current_database(), pg_database_size(current_database()),"
        " (SELECT coalesce(sum(pg_table_size(c.oid)), 0)::bigint FROM pg_class c"
        "  WHERE c.relkind IN ('r', 'm'))"
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4])


def take_backup(
    settings: Settings,
    params: ConnParams,
    conn: psycopg.Connection[Any],
    *,
    applied: list[str],
    pending: list[str],
    log: Any,
    progress_hook: ProgressHook | None = None,
) -> BackupResult:
    """Preflight, stream, verify, record, prune. Raises BackupError (exit 7) on any failure.

    ``progress_hook(bytes_so_far)`` is called for every chunk (tests use it to interrupt).
    """
    if settings.backup in ("", "none"):
        raise BackupError("no backup target configured (MIGRATE_BACKUP=none)")
    environ = dict(settings.environ)
    started_wall = datetime.now(UTC)
    started = time.monotonic()

    # -- preflight: nothing is dumped unless all of this holds --------------------------------
    version_num, version_text, dbname, db_size, table_bytes = _server_facts(conn)
    tools = find_tools(environ, version_num)
    target = open_target(settings.backup, environ)
    # Table data (heap + TOAST) bounds a compressed custom-format dump from above in practice;
    # indexes are not dumped, so pg_database_size would refuse too eagerly.
    estimate = table_bytes
    log.info("backup.preflight", target=target.uri, database=params.display(),
             database_size=db_size, estimate_bytes=estimate, pg_dump=tools.pg_dump,
             pg_dump_version=tools.dump_version, server_version=version_text)
    target.preflight(estimate)
    scratch = _scratch_params(settings, params)
    src = params.merged(dbname=params.params.get("dbname") or dbname)

    # -- dump ---------------------------------------------------------------------------------
    base = mf.new_base_name(src, started_wall)
    dump_name, manifest_name = base + mf.DUMP_SUFFIX, base + mf.MANIFEST_SUFFIX
    uri = target.uri_for(dump_name)
    log.info("backup.started", uri=uri, pending=len(pending))
    stats = dump_to_target(target, dump_name, tools=tools, params=src, environ=environ,
                           estimate=estimate, lock_wait_s=settings.lock_wait, log=log,
                           hook=progress_hook, every=settings.heartbeat)
    log.info("backup.uploaded", uri=uri, bytes=stats.bytes, sha256=stats.sha256,
             toc_entries=stats.toc_entries, duration_s=round(stats.duration_s, 3),
             mb_per_s=round(stats.bytes / 1e6 / max(stats.duration_s, 1e-6), 1))

    # -- verify (a dump that fails verification is deleted: it must never look usable) -------
    try:
        verification = verify(target, dump_name, expected_bytes=stats.bytes,
                              expected_sha256=stats.sha256, tools=tools,
                              mode=settings.backup_verify, scratch=scratch, environ=environ,
                              log=log, every=settings.heartbeat)
    except BaseException:
        try:
            target.delete(dump_name)
        except Exception as exc:
            log.error("backup.cleanup_failed", uri=uri, error=str(exc))
        raise
    verification["toc_entries"] = stats.toc_entries

    finished_wall = datetime.now(UTC)
    manifest = {
        "tool": mf.TOOL,
        "manifest_version": 1,
        "job_version": __version__,
        "database": src.display(),
        "database_key": mf.database_key(src),
        "server_version": version_text,
        "server_version_num": version_num,
        "pg_dump_version": tools.dump_version,
        "format": FORMAT,
        "dump": dump_name,
        "bytes": stats.bytes,
        "sha256": stats.sha256,
        "started_at": mf.utc_iso(started_wall),
        "finished_at": mf.utc_iso(finished_wall),
        "dump_duration_s": round(stats.duration_s, 3),
        "applied": list(applied),
        "pending": list(pending),
        "verification": verification,
    }
    target.put(manifest_name, mf.encode(manifest))
    duration = time.monotonic() - started
    result = BackupResult(uri=uri, manifest_uri=target.uri_for(manifest_name), bytes=stats.bytes,
                          sha256=stats.sha256, duration_s=duration, format=FORMAT)
    log.info("backup.verified", uri=uri, manifest=result.manifest_uri, bytes=stats.bytes,
             sha256=stats.sha256, verify=settings.backup_verify, duration_s=round(duration, 3))

    # -- retention: a failure here must not block the deploy the backup protects --------------
    try:
        mf.apply_retention(target, mf.database_key(src), settings.backup_keep, log)
    except Exception as exc:
        log.warning("backup.retention_failed", target=target.uri, error=str(exc))
    return result


def _scratch_params(settings: Settings, params: ConnParams) -> ConnParams | None:
    if settings.backup_verify != "full":
        return None
    if not settings.scratch_database_url:
        raise BackupError(
            "MIGRATE_BACKUP_VERIFY=full needs MIGRATE_SCRATCH_DATABASE_URL (a database the "
            "verification may overwrite)"
        )
    scratch = ConnParams.from_url(settings.scratch_database_url)
    redact.add(scratch.password)
    if mf.database_key(scratch) == mf.database_key(params):
        raise BackupError("MIGRATE_SCRATCH_DATABASE_URL must not be the database being migrated")
    return scratch


def restore_backup(settings: Settings, params: ConnParams, uri: str, *, log: Any,
                   progress_hook: ProgressHook | None = None) -> dict[str, Any]:
    from job.backup.restore import restore

    return restore(settings, params, uri, log=log, progress_hook=progress_hook)
