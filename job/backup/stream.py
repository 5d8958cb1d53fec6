"""pg_dump piped straight into a target, hashed and counted on the fly.

The rule that matters (NOTES §8): a stream that ends is not a dump that succeeded. The upload is
completed only after pg_dump has exited 0 AND a ``pg_restore --list`` fed from the same bytes
read the archive's table of contents. Any other ending (pg_dump failed or was killed, the
target failed, SIGTERM/Ctrl-C) kills the children and aborts the upload before re-raising.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from job import redact
from job.backup.target import CHUNK, Target
from job.backup.tools import PgTools
from job.childenv import child_env
from job.db import APPLICATION_NAME, ConnParams
from job.errors import BackupError

ProgressHook = Callable[[int], None]
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class StreamStats:
    bytes: int
    sha256: str
    toc_entries: int
    duration_s: float


class Progress:
    """Logs bytes, throughput, percent of ``total`` and an ETA every ``every`` seconds
    (``MIGRATE_HEARTBEAT``; 0 turns the events off); calls an optional hook on every chunk.

    ``total`` is exact for a restore (the manifest's size) and an estimate for a backup (table
    bytes, which a compressed dump usually undercuts): percent stops at 99 until the end, and the
    event says which it is (``total_is_estimate``).
    """

    def __init__(self, log: Any, event: str, every: float | None = None,
                 hook: ProgressHook | None = None, total: int | None = None,
                 estimate: bool = False, **fields: Any) -> None:
        self.log, self.event, self.hook, self.fields = log, event, hook, fields
        self.every = PROGRESS_EVERY_S if every is None else every
        self.total, self.estimate = (total or None), estimate
        self.start = self.last = time.monotonic()
        self.bytes = 0

    def add(self, n: int) -> None:
        self.bytes += n
        if self.hook is not None:
            self.hook(self.bytes)
        now = time.monotonic()
        if self.every > 0 and now - self.last >= self.every:
            self.last = now
            self.log.info(self.event, **self.snapshot(now))

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        elapsed = (now or time.monotonic()) - self.start
        rate = self.bytes / max(elapsed, 1e-6)
        data: dict[str, Any] = {"bytes": self.bytes, "elapsed_s": round(elapsed, 1),
                                "mb_per_s": round(rate / 1e6, 1)}
        if self.total:
            data["total_bytes"] = self.total
            data["total_is_estimate"] = self.estimate
            data["percent"] = round(min(99.0 if self.estimate else 100.0,
                                        100.0 * self.bytes / self.total), 1)
            if rate > 0 and self.bytes < self.total:
                data["eta_s"] = round((self.total - self.bytes) / rate, 1)
        data.update(self.fields)
        return data


@contextlib.contextmanager
def pg_env(params: ConnParams, environ: Mapping[str, str], purpose: str
           ) -> Iterator[dict[str, str]]:
    """Environment for pg_dump/pg_restore: libpq parameters and a 0600 passfile, no argv."""
    with child_env(params, base=environ) as env:
        env["PGAPPNAME"] = f"{APPLICATION_NAME} {purpose}"
        env.setdefault("LC_ALL", "C.UTF-8")
        yield env


def grow_pipe(fd: int) -> None:
    """Fewer, larger reads: ask Linux for a 1 MiB pipe buffer (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


def stderr_tail(f: IO[bytes], limit: int = 2000) -> str:
    f.seek(0)
    text = f.read().decode(errors="replace").strip()
    return redact.scrub(text[-limit:])


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a child started with ``start_new_session`` and its whole process group (a
    wrapper script's own children too), then reap it."""
    if proc is None or proc.poll() is not None:
        return  # already reaped: its pid (and group id) may belong to someone else by now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


class TocReader:
    """``pg_restore --list`` on stdin: reads the archive header and table of contents, then
    exits on its own (it does not need the data), after which feeding simply stops."""

    def __init__(self, tools: PgTools, env: dict[str, str]) -> None:
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.err = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [tools.pg_restore, "--list"], stdin=subprocess.PIPE, stdout=self.out,
            stderr=self.err, env=env, start_new_session=True,
        )
        self.open = True

    def feed(self, data: bytes) -> None:
        if not self.open or self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, ValueError):
            self.open = False

    def finish(self) -> int:
        """Close the input, wait, and return the number of TOC entries; raise if unreadable."""
        assert self.proc is not None
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self.proc.stdin.close()
        rc = self.proc.wait(timeout=300)
        self.out.seek(0)
        lines = self.out.read().splitlines()
        entries = sum(1 for line in lines if line.strip() and not line.startswith(b";"))
        # An empty database has no entries, but every readable archive has this header.
        header = any(line.startswith(b"; Archive created at") for line in lines)
        if rc != 0 or not header:
            raise BackupError(
                f"pg_restore --list could not read the archive (exit {rc}, {entries} entries): "
                f"{stderr_tail(self.err)}"
            )
        return entries

    def close(self) -> None:
        kill(self.proc)
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.out.close()
        self.err.close()


def dump_to_target(
    target: Target,
    name: str,
    *,
    tools: PgTools,
    params: ConnParams,
    environ: Mapping[str, str],
    estimate: int,
    lock_wait_s: float,
    log: Any,
    hook: ProgressHook | None = None,
    every: float | None = None,
) -> StreamStats:
    started = time.monotonic()
    digest = hashlib.sha256()
    progress = Progress(log, "backup.progress", every=every, hook=hook, total=estimate,
                        estimate=True, uri=target.uri_for(name))
    dump: subprocess.Popen[bytes] | None = None
    toc: TocReader | None = None
    writer = None
    with pg_env(params, environ, "backup") as env, tempfile.TemporaryFile() as dump_err:
        try:
            writer = target.open_writer(name, estimate)
            toc = TocReader(tools, env)
            argv = [tools.pg_dump, "--format=custom", "--no-password",
                    f"--lock-wait-timeout={max(1, int(lock_wait_s * 1000))}"]
            # Own process group: an interrupt is handled here (kill, abort the upload), and a
            # terminal's Ctrl-C must not race us by killing pg_dump first.
            dump = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=dump_err, env=env,
                                    start_new_session=True)
            assert dump.stdout is not None
            fd = dump.stdout.fileno()
            grow_pipe(fd)
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
                toc.feed(chunk)
                writer.write(chunk)
                progress.add(len(chunk))
            rc = dump.wait()
            if rc != 0:
                raise BackupError(
                    f"pg_dump exited with {_describe_rc(rc)} after {progress.bytes} bytes; "
                    f"the partial dump was discarded: {stderr_tail(dump_err)}",
                    pg_dump_exit=rc,
                )
            entries = toc.finish()
            writer.complete()
        except BaseException as exc:
            kill(dump)
            if toc is not None:
                toc.close()
            if writer is not None:
                problem = writer.abort()
                if problem:
                    log.error("backup.abort_failed", uri=target.uri_for(name), error=problem)
            if isinstance(exc, OSError):
                raise BackupError(f"backup to {target.uri_for(name)} failed: {exc}") from None
            raise
        finally:
            if dump is not None and dump.stdout is not None:
                dump.stdout.close()
        toc.close()
    return StreamStats(progress.bytes, digest.hexdigest(), entries, time.monotonic() - started)


def _describe_rc(rc: int) -> str:
    return f"signal {-rc}" if rc < 0 else f"exit code {rc}"


def hash_stream(chunks: Iterable[bytes], sinks: Iterable[Callable[[bytes], object]] = (),
                progress: Progress | None = None) -> tuple[int, str]:
    digest = hashlib.sha256()
    n = 0
    sinks = list(sinks)
    for chunk in chunks:
        digest.update(chunk)
        n += len(chunk)
        for sink in sinks:
            sink(chunk)
        if progress is not None:
            progress.add(len(chunk))
    return n, digest.hexdigest()
