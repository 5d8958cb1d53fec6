"""Many statements in one round trip, with each answer handled as it arrives (libpq pipeline).

The applier sends a run of transactional migrations, each ``BEGIN; ...; record; COMMIT``, as
one pipeline: the server goes from one migration to the next without waiting for the client,
as a psql session reading a file does, and the client reads the answers while the server works
on the next ones. So a migration costs the server's time plus a few microseconds, instead of
two or three round trips and psycopg's per-statement Python work (measured on this project:
295 real migrations, 0.85 s with a pipeline per migration and a separate COMMIT, 0.51 s here,
about what one psql session takes).

Each answer is handed to the caller in order, as soon as it is read; a Flush after each
migration makes the server send its answers then (otherwise they wait for the Sync), so the
caller logs a migration applied the moment its COMMIT is confirmed and tells the statement
watcher which migration the server is on. After an error the server skips everything up to the Sync (those
commands answer ``PIPELINE_ABORTED``); a COMMIT that was never executed commits nothing, so a
failure stops the run at the failed migration with everything before it committed exactly once.

Signals: a SIGTERM/SIGINT while the pipeline is in flight cancels the running statement on the
server (as psycopg does for one statement) and the remaining answers are still read, so every
migration whose COMMIT went through is reported applied; the caller runs this inside
``signals.critical()`` and raises ``Interrupted`` once the answers are in.

This talks to ``psycopg.pq`` (psycopg's documented libpq wrapper) on the psycopg connection's
own socket; psycopg's state is untouched: the connection is idle again when this returns.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from job import signals

if TYPE_CHECKING:
    import psycopg

# How often a wait for the server looks whether a signal arrived (a signal inside the critical
# section does not raise; it is only recorded).
_POLL_S = 0.1
# After cancelling, how long the remaining answers may take before the connection is given up.
_DRAIN_S = 5.0


class Pipe:
    """One pipeline on ``conn``: ``send()`` commands, then ``results()`` once."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg import pq

        self.conn = conn
        self.pg = conn.pgconn
        self.pq = pq
        self.encoding = conn.info.encoding
        self.sent = 0
        self.drain_until: float | None = None  # set when a signal cancelled the work
        self.flushable = True
        self.pg.enter_pipeline_mode()

    def send(self, sql: bytes, params: Sequence[bytes | None] | None = None) -> None:
        """Queue one statement (extended protocol: exactly one statement, ``$n`` parameters
        as text, types inferred by the server)."""
        self.pg.send_query_params(sql, params)
        self.sent += 1

    def flush_request(self) -> None:
        """Ask the server to send what it has answered so far once it gets here: without it,
        the answers of an extended-protocol pipeline only leave the server at the Sync."""
        if self.flushable:
            try:
                self.pg.send_flush_request()
            except Exception:  # a libpq before 14: the answers come at the Sync
                self.flushable = False

    def results(self) -> Iterator[Any]:
        """Sync, then every command's result in order (a ``PGresult``; after an error the
        skipped ones have status ``PIPELINE_ABORTED``). Leaves pipeline mode at the end."""
        pg, status = self.pg, self.pq.ExecStatus
        try:
            pg.pipeline_sync()
            self._flush()
            while True:
                while pg.is_busy():
                    self._wait(write=False)
                    pg.consume_input()
                res = pg.get_result()
                if res is None:  # the end of one command's results
                    continue
                if res.status == status.PIPELINE_SYNC:
                    return
                yield res
        finally:
            with contextlib.suppress(Exception):
                pg.exit_pipeline_mode()

    def error(self, res: Any) -> Exception:
        """The psycopg exception for an error result (``diag``, ``sqlstate`` as usual)."""
        from psycopg import errors

        return errors.error_from_result(res, encoding=self.encoding)

    def _flush(self) -> None:
        # Nonblocking (psycopg's connections are): while the output is not all sent, read what
        # the server already answers, or both sides could wait on full socket buffers.
        while self.pg.flush():
            readable = self._wait(write=True)
            if readable:
                self.pg.consume_input()

    def _wait(self, *, write: bool) -> bool:
        """Wait until the socket is readable (or writable); True when readable."""
        sock = self.pg.socket
        while True:
            if signals.received() is not None and self.drain_until is None:
                self._cancel()
            r, w, _ = select.select([sock], [sock] if write else [], [], _POLL_S)
            if r or w:
                return bool(r)
            if self.drain_until is not None and time.monotonic() > self.drain_until:
                from psycopg import OperationalError

                self.conn.close()
                raise OperationalError("the server did not answer within "
                                       f"{_DRAIN_S:g}s of cancelling the statement")

    def _cancel(self) -> None:
        self.drain_until = time.monotonic() + _DRAIN_S
        with contextlib.suppress(Exception):
            self.conn.cancel_safe(timeout=_DRAIN_S)

    @property
    def cancelled(self) -> bool:
        return self.drain_until is not None


def result_ok(pipe: Pipe, res: Any) -> bool:
    return bool(res.status in (pipe.pq.ExecStatus.COMMAND_OK, pipe.pq.ExecStatus.TUPLES_OK,
                               pipe.pq.ExecStatus.EMPTY_QUERY))
