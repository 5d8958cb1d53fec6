"""SIGTERM/SIGINT: cancel the in-flight statement, roll back, release the lock, exit 143/130.

The handler raises ``Interrupted`` (a KeyboardInterrupt) so that psycopg, interrupted while
waiting for the server, cancels the running statement server-side before re-raising. Inside a
``critical()`` section (recording a migration and committing) the signal is held back until the
section ends, so a migration is never reported unapplied after its commit went through.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from job.errors import Interrupted

_critical = 0
_received: int | None = None
_raised = False


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received, _raised
    if _received is not None:
        return  # a second signal while we clean up: the first one is already being handled
    _received = signum
    if _critical == 0:
        _raised = True
        raise Interrupted(signum)


def install() -> None:
    global _received, _raised, _critical
    _received, _raised, _critical = None, False, 0
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def received() -> int | None:
    return _received


@contextmanager
def critical() -> Iterator[None]:
    global _critical, _raised
    _critical += 1
    try:
        yield
    finally:
        _critical -= 1
    if _critical == 0 and _received is not None and not _raised:
        _raised = True
        raise Interrupted(_received)
