"""Run the real CLI on a pseudo-terminal and read what a person would see.

stdin, stdout and stderr are the pty's slave side (so ``isatty()`` is true everywhere, as in
a shell), with ``TERM`` and a window size set. ``lines`` is the screen text: ANSI colours
removed and, for a line rewritten in place with ``\\r``, only its final state.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass

from tests.conftest import REPO, job_env

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Screen:
    code: int
    raw: str

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def lines(self) -> list[str]:
        out = []
        for line in self.raw.replace("\r\n", "\n").split("\n"):
            # What stays on screen after carriage returns and clear-to-end-of-line.
            out.append(ANSI.sub("", line.split("\r")[-1]).rstrip())
        while out and not out[-1]:
            out.pop()
        return out


def run_in_pty(*args: str, env: dict[str, str] | None = None, cols: int = 200, rows: int = 50,
               timeout: float = 120, stdin_text: str | None = None) -> Screen:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    full_env = job_env(**(env or {}))
    full_env.pop("MIGRATE_LOG_FORMAT", None)  # let the job see the terminal and choose
    full_env.pop("COLUMNS", None)
    full_env.pop("NO_COLOR", None)
    full_env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "job", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=full_env, cwd=str(REPO), close_fds=True,
                            start_new_session=True)
    os.close(slave)
    if stdin_text is not None:
        os.write(master, stdin_text.encode())
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{args} did not finish within {timeout}s:\n"
                                     + b"".join(chunks).decode(errors="replace"))
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:  # EIO: the child closed the terminal
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                # Drain what is left, then stop.
                continue
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return Screen(code, b"".join(chunks).decode(errors="replace"))
