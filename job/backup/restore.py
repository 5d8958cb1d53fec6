"""Restore a dump taken by ``backup``/``run``: verify it against its manifest, then load it.

The sha256 is checked BEFORE pg_restore sees a byte: pg_restore may commit before it has read
the last bytes of its input, so checking while restoring would be too late. For S3/Azure the
dump is therefore spooled to a private temporary file when there is room (one download), and
otherwise read twice (hash pass, then restore pass, hashed again). ``--clean --if-exists
--no-owner --no-privileges --single-transaction`` works on managed PostgreSQL without a
superuser, and a failure leaves the database as it was.

Objects created after the backup and not in it (e.g. a table added by the failed migration) are
not dropped by ``--clean``; they are reported as ``extra_tables`` and logged as a warning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from job.backup import manifest as mf
from job.backup.file_target import FileTarget
from job.backup.stream import Progress, ProgressHook, hash_stream
from job.backup.target import CHUNK, Target, split_object_uri
from job.backup.targets import open_target
from job.backup.tools import PgTools, find_tool, tool_version
from job.backup.verify import list_file, restore_stream
from job.db import ConnParams
from job.errors import BackupError

if TYPE_CHECKING:
    from job.settings import Settings


def _read_file(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _restore_tools(environ: dict[str, str], manifest: dict[str, Any]) -> PgTools:
    restore = find_tool("pg_restore", environ)
    version = tool_version(restore)
    dumped = str(manifest.get("pg_dump_version", "0"))
    if int(version.split(".")[0]) < int(dumped.split(".")[0] or 0):
        raise BackupError(
            f"pg_restore {version} ({restore}) cannot read a dump made by pg_dump {dumped}; "
            "use pg_restore of that version or newer"
        )
    return PgTools(pg_dump="", pg_restore=restore, dump_version=dumped, restore_version=version)


def _check(uri: str, n: int, sha: str, manifest: dict[str, Any]) -> None:
    if n != manifest.get("bytes") or sha != manifest.get("sha256"):
        raise BackupError(
            f"backup {uri} does not match its manifest (got {n} bytes sha256 {sha}, manifest "
            f"says {manifest.get('bytes')} bytes sha256 {manifest.get('sha256')}); refusing to "
            "restore",
        )


@contextlib.contextmanager
def _verified_local_copy(target: Target, name: str, uri: str, manifest: dict[str, Any],
                         environ: dict[str, str], log: Any, every: float | None = None
                         ) -> Iterator[str | None]:
    """A verified local path for the dump, or None when there is no room to spool it."""
    if isinstance(target, FileTarget):
        path = str(target.path(name))
        n, sha = hash_stream(_read_file(path))
        _check(uri, n, sha, manifest)
        yield path
        return
    tmpdir = environ.get("TMPDIR") or tempfile.gettempdir()
    size = int(manifest.get("bytes") or 0)
    if shutil.disk_usage(tmpdir).free < size + 64 * 1024 * 1024:
        log.info("restore.streaming_twice", uri=uri, bytes=size, tmpdir=tmpdir,
                 reason="not enough free space to spool the dump")
        yield None
        return
    fd, path = tempfile.mkstemp(prefix="migrate-job-restore-", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as f:
            n, sha = hash_stream(target.read(name), [f.write],
                                 Progress(log, "restore.download_progress", every=every,
                                          total=size, uri=uri))
        _check(uri, n, sha, manifest)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def restore(settings: Settings, params: ConnParams, uri: str, *, log: Any,
            progress_hook: ProgressHook | None = None) -> dict[str, Any]:
    environ = dict(settings.environ)
    started = time.monotonic()
    base, name = split_object_uri(uri)
    target = open_target(base, environ)
    manifest_name = mf.manifest_name_for(name)
    try:
        manifest = mf.load(target, manifest_name)
    except BackupError as exc:
        raise BackupError(f"no manifest for {uri} ({exc.message}); refusing to restore a dump "
                          "that cannot be verified") from None
    if manifest is None:
        raise BackupError(f"{target.uri_for(manifest_name)} is not a migrate-job manifest")
    dump_name = str(manifest.get("dump") or "")
    if "/" in dump_name or not dump_name.endswith(mf.DUMP_SUFFIX):
        raise BackupError(f"manifest {manifest_name} names an invalid dump {dump_name!r}")
    dump_uri = target.uri_for(dump_name)
    tools = _restore_tools(environ, manifest)
    log.info("restore.started", uri=dump_uri, database=params.display(),
             backup_database=manifest.get("database"), bytes=manifest.get("bytes"),
             taken_at=manifest.get("started_at"))

    every = settings.heartbeat
    total = int(manifest.get("bytes") or 0) or None
    with _verified_local_copy(target, dump_name, dump_uri, manifest, environ, log,
                              every) as path:
        if path is None:  # no room to spool: hash pass, then a hashed restore pass
            n, sha = hash_stream(target.read(dump_name),
                                 progress=Progress(log, "restore.verify_progress", every=every,
                                                   total=total, uri=dump_uri))
            _check(dump_uri, n, sha, manifest)
            chunks: Any = target.read(dump_name)
            toc: list[str] = []
        else:
            chunks = _read_file(path)
            toc = list_file(tools, path)
        log.info("restore.verified", uri=dump_uri, sha256=manifest.get("sha256"))
        n, sha = restore_stream(chunks, tools, params, environ, log, event="restore.progress",
                                hook=progress_hook, total=total, every=every)
    if path is None:
        _check(dump_uri, n, sha, manifest)  # the second read must have seen the same bytes
    extra = _extra_tables(params, toc)
    if extra:
        log.warning("restore.extra_tables", tables=extra,
                    hint="tables not in the backup were left in place; drop them if a failed "
                         "migration created them")
    duration = time.monotonic() - started
    summary = {
        "uri": dump_uri,
        "bytes": n,
        "sha256": sha,
        "database": params.display(),
        "backup_database": manifest.get("database"),
        "taken_at": manifest.get("started_at"),
        "applied_at_backup": manifest.get("applied", []),
        "extra_tables": extra,
        "duration_s": round(duration, 3),
    }
    log.info("restore.completed", **{k: v for k, v in summary.items()
                                     if k != "applied_at_backup"})
    return summary


def _extra_tables(params: ConnParams, toc: list[str]) -> list[str]:
    """Tables in the database that the archive does not contain (left by ``--clean``)."""
    if not toc:
        return []
    in_archive = set()
    for line in toc:
        # "123; 1259 16390 TABLE public accounts postgres"
        parts = line.split(";", 1)[-1].split()
        if len(parts) >= 5 and parts[2] == "TABLE":
            in_archive.add(f"{parts[3]}.{parts[4]}")
    from job.db import connect

    with connect(params, autocommit=True, purpose="restore") as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog',"
            " 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows if r[0] not in in_archive]

