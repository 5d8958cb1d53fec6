"""Leaving the process once a command is done, without tearing the interpreter down.

A normal interpreter exit destroys every module object one by one (psycopg, libpg_query's
bindings, the safety rules): measured at 70-130 ms on a 2-core VM, after the summary was
written, while the rollout waits for the Job to end. Once a command has returned its exit code
there is nothing left that needs that teardown: the connections are closed, the lock released,
the summary and the termination log written. So the process flushes its output, runs the
``atexit`` handlers (logging's flush, temporary directories) and ends with ``os._exit``.

Only when no other thread is alive: a non-daemon thread (an upload still finishing, a library's
worker) would be joined by a normal exit, and ``os._exit`` would cut it off, so then the
interpreter exits the usual way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading


def exit_now(code: int) -> None:
    """End the process with ``code`` (never returns), the usual way if threads still run."""
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A reader that went away (`migrate-job plan | head`): nothing more can be said to
        # it; the exit code still tells.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
