"""Verification of a finished dump, read back from where it is stored.

``list`` (default): the bytes stored must hash to the sha256 computed while dumping (this proves
the target holds exactly what pg_dump produced), and ``pg_restore --list`` must read the
archive's table of contents (done on the stream while dumping, and again on the file for file
targets). ``full``: additionally the stored dump is restored into the scratch database
(``MIGRATE_SCRATCH_DATABASE_URL``) in one transaction, which proves every object and row loads.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

from job.backup.file_target import FileTarget
from job.backup.stream import Progress, hash_stream, kill, pg_env, stderr_tail
from job.backup.target import Target
from job.backup.tools import PgTools
from job.db import ConnParams
from job.errors import BackupError

RESTORE_FLAGS = ("--clean", "--if-exists", "--no-owner", "--no-privileges",
                 "--single-transaction", "--exit-on-error", "--no-password")


def dbname_arg(params: ConnParams) -> str:
    """``-d`` value: a conninfo string holding only the database name (never a password)."""
    name = params.params.get("dbname") or params.params.get("user") or "postgres"
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def list_file(tools: PgTools, path: str, env: Mapping[str, str] | None = None) -> list[str]:
    out = subprocess.run([tools.pg_restore, "--list", path], capture_output=True,
                         env=dict(env) if env is not None else None, timeout=600, check=False)
    text = out.stdout.decode(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(";")]
    if out.returncode != 0 or "; Archive created at" not in text:
        raise BackupError(f"pg_restore --list {path} failed (exit {out.returncode}): "
                          f"{out.stderr.decode(errors='replace').strip()[-2000:]}")
    return lines


def restore_stream(
    chunks: Any, tools: PgTools, params: ConnParams, environ: Mapping[str, str], log: Any,
    *, event: str, hook: Any = None, total: int | None = None, every: float | None = None,
) -> tuple[int, str]:
    """Feed an archive stream to ``pg_restore`` into ``params``'s database; (bytes, sha256)."""
    progress = Progress(log, event, every=every, hook=hook, total=total,
                        database=params.display())
    with pg_env(params, environ, "restore") as env, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [tools.pg_restore, *RESTORE_FLAGS, "-d", dbname_arg(params)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=env,
            start_new_session=True,
        )
        assert proc.stdin is not None
        stdin = proc.stdin
        broken = False

        def feed(chunk: bytes) -> None:
            nonlocal broken
            if broken:
                return
            try:
                stdin.write(chunk)
            except BrokenPipeError:
                broken = True  # pg_restore stopped; its exit status says why

        try:
            n, sha = hash_stream(chunks, [feed], progress)
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
            rc = proc.wait()
        except BaseException:
            kill(proc)
            raise
        if rc != 0:
            raise BackupError(
                f"pg_restore into {params.display()} failed (exit {rc}); the transaction was "
                f"rolled back: {stderr_tail(err)}",
                pg_restore_exit=rc,
            )
    return n, sha


def verify(
    target: Target, name: str, *, expected_bytes: int, expected_sha256: str, tools: PgTools,
    mode: str, scratch: ConnParams | None, environ: Mapping[str, str], log: Any,
    every: float | None = None,
) -> dict[str, Any]:
    uri = target.uri_for(name)
    result: dict[str, Any] = {"mode": mode}
    if isinstance(target, FileTarget):
        result["toc_entries_file"] = len(list_file(tools, str(target.path(name))))
    if mode == "full":
        if scratch is None:
            raise BackupError("MIGRATE_BACKUP_VERIFY=full needs MIGRATE_SCRATCH_DATABASE_URL")
        n, sha = restore_stream(target.read(name), tools, scratch, environ, log,
                                event="backup.verify_progress", total=expected_bytes,
                                every=every)
        result["restored_into"] = scratch.display()
    else:
        n, sha = hash_stream(target.read(name),
                             progress=Progress(log, "backup.verify_progress", every=every,
                                               total=expected_bytes, uri=uri))
    if n != expected_bytes or sha != expected_sha256:
        raise BackupError(
            f"backup {uri} does not match what pg_dump produced: stored {n} bytes sha256 {sha}, "
            f"dumped {expected_bytes} bytes sha256 {expected_sha256}"
        )
    result["readback_sha256"] = sha
    return result
