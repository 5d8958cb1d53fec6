"""Child processes (pg_dump, psql) get the password through a private passfile, never argv."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from secrets_leak import assert_not_leaked

from job.childenv import child_env
from job.db import ConnParams


def params_for(role: Any) -> ConnParams:
    return ConnParams({"host": role.host, "port": role.port, "user": role.user,
                       "password": role.password, "dbname": role.dbname})


def test_psql_connects_with_hostile_password_via_passfile(role: Any, pg_server: Any) -> None:
    with child_env(params_for(role), base={"PATH": os.environ["PATH"],
                                           "PGPASSWORD": "parent-leftover"}) as env:
        assert "PGPASSWORD" not in env
        passfile = Path(env["PGPASSFILE"])
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        out = subprocess.run([str(pg_server.bin_dir / "psql"), "-XAtc", "SELECT current_user"],
                             env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == role.user
    assert not passfile.exists()  # removed when the child is done


def test_long_token_as_password_works_through_the_passfile(role: Any, pg_server: Any) -> None:
    # RDS IAM tokens are ~1-2 kB and full of ':' and '&'; old libpq capped passfile lines.
    token = ("prod.abc.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=u&X-Amz-"
             + "Signature=" + "a1:b2\\c3" * 200)
    role.set_password(pg_server.admin_url, token)
    with child_env(params_for(role), base={"PATH": os.environ["PATH"]}) as env:
        out = subprocess.run([str(pg_server.bin_dir / "psql"), "-XAtc", "SELECT 1"], env=env,
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_password_is_not_in_child_cmdline_or_environment(role: Any) -> None:
    # A stand-in child that reports what /proc shows about itself.
    probe = ("import os,sys;pid=os.getpid();"
             "sys.stdout.write(open(f'/proc/{pid}/cmdline','rb').read().decode('utf-8','replace'));"
             "sys.stdout.write('\\n');"
             "sys.stdout.write(open(f'/proc/{pid}/environ','rb').read().decode('utf-8','replace'))")
    with child_env(params_for(role), base=dict(os.environ)) as env:
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                             text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "PGPASSFILE=" in out.stdout and f"PGUSER={role.user}" in out.stdout
    assert_not_leaked(role.password, out.stdout, out.stderr)


def test_no_password_means_no_passfile(role: Any) -> None:
    with child_env(ConnParams({"host": "h", "user": "u"}), base={}) as env:
        assert env == {"PGHOST": "h", "PGUSER": "u"}


def test_passfile_is_removed_when_the_child_fails() -> None:
    seen: list[Path] = []
    try:
        with child_env(ConnParams({"host": "h", "password": "pw-x1"}), base={}) as env:
            seen.append(Path(env["PGPASSFILE"]))
            raise RuntimeError("pg_dump failed")
    except RuntimeError:
        pass
    assert seen and not seen[0].exists()
