"""Run the CLI on a pseudo-terminal, as a person would, and answer its prompt."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from tests.conftest import REPO, job_env


def run_on_tty(*args: str, env: dict[str, str], answer: str | None = None,
               until: str = "Type 'yes'",
               timeout: float = 60.0) -> tuple[int, str]:
    """Start `python -m job ARGS` with stdin/stdout/stderr on a pty; when ``until`` appears,
    type ``answer``. Returns (exit code, everything the terminal showed)."""
    master, slave = os.openpty()
    # A terminal as wide as a common one: lines are judged at 160 characters, not wrapped.
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "job", *args], env=job_env(**env),
                            cwd=str(REPO), stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if answer is not None and not answered and until.encode() in seen:
                os.write(master, (answer + "\n").encode())
                answered = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, seen.decode(errors="replace").replace("\r\n", "\n")
