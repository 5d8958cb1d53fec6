"""Credentials for child processes (pg_dump, pg_restore, psql): a 0600 passfile, never argv.

The child gets its own environment built from the connection parameters; the password lives in
a private temporary passfile that is removed when the child is done. Nothing of it reaches the
parent's environment or any process's command line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from job.db import ConnParams

_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def child_env(params: ConnParams, base: Mapping[str, str] | None = None
              ) -> Iterator[dict[str, str]]:
    source = base if base is not None else os.environ
    env = {k: source[k] for k in _KEEP if k in source}
    env.update(params.libpq_env())
    password = env.pop("PGPASSWORD", None)
    if password is None:
        yield env
        return
    fd, path = tempfile.mkstemp(prefix="migrate-job-pgpass-")
    try:
        os.fchmod(fd, 0o600)
        # The passfile matches any host/port/db/user, so it works for every libpq host form.
        with os.fdopen(fd, "w") as f:
            f.write(f"*:*:*:*:{_escape(password)}\n")
        env["PGPASSFILE"] = path
        yield env
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)
