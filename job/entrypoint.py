"""Entrypoint mode: `migrate-job exec [--phase pre] -- CMD ARG...`.

The ``run`` pipeline first; only when it exits 0 does this process *become* CMD
(``os.execvp``): same PID, so under tini/dumb-init the application receives signals directly
and no wrapper shell lingers. By then the runtime has written the summary, released the
migration lock and closed every connection. On any failure CMD never starts and the exit code
is the job's. Replicas starting together wait on the lock; the ones that find nothing pending
exec at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Sequence

USAGE = "usage: migrate-job exec [--phase pre|post|all] -- CMD ARG..."
# The shell's codes for a command that cannot run, so a container's exit code reads the same.
NOT_FOUND, NOT_EXECUTABLE = 127, 126


def target_command(cmd: Sequence[str]) -> list[str]:
    """CMD from the command line, checked before any database is touched (exit 2): a typo in
    a Dockerfile must not surface only after the migrations ran."""
    args = list(cmd)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        _usage_error("give the command to start after the migrations")
    program = args[0]
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            _usage_error(f"{program}: not an executable file")
    elif shutil.which(program) is None:
        _usage_error(f"{program}: not found on PATH")
    return args


def _usage_error(message: str) -> None:
    print(f"migrate-job exec: {message}\n{USAGE}", file=sys.stderr)
    raise SystemExit(2)


def replace_process(exit_code: int, cmd: Sequence[str]) -> int:
    """Become ``cmd`` when the pipeline succeeded; otherwise return its exit code."""
    if exit_code != 0:
        return exit_code
    # The job's handlers raise into Python code that no longer exists after exec; the kernel
    # resets caught signals anyway, this only closes the window until execvp.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], list(cmd))
    except OSError as exc:
        code = NOT_FOUND if isinstance(exc, FileNotFoundError) else NOT_EXECUTABLE
        print(f"migrate-job exec: the migrations succeeded but {cmd[0]} could not start: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return code
    return 0  # not reached: execvp replaced this process
