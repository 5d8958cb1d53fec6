"""The password never leaks: every command, success and failure paths, every output channel,
and the command lines of child processes (pg_dump) caught in /proc while they run (a fast dump
may finish between two looks; tests/secrets/test_secrets_childenv.py checks a live child
deterministically)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.core.helpers import env_for, write
from tests.secrets.secrets_leak import assert_not_leaked

PASSWORD = "Leak-Canary p@ss/w#rd% ?:é"


@pytest.fixture
def role_url(pg_server, database_url) -> str:
    name = database_url.rsplit("/", 1)[1]
    role = "r_" + name[2:]
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s'.replace("%s", "'" +
                     PASSWORD.replace("'", "''") + "'"))
        conn.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'ALTER SCHEMA public OWNER TO "{role}"')
    return database_url.replace("postgres:" + quote("pg-admin-secret", safe=""),
                                f"{role}:{quote(PASSWORD, safe='')}")


def _cmdlines() -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                           .decode("utf-8", "replace"))
            except OSError:
                continue
    return out


def test_no_command_leaks_the_password(role_url, pg_server, run_job, tmp_path):
    mdir = tmp_path / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    write(mdir, "0001_a.rollback.sql", "DROP TABLE a;\n")
    backups = tmp_path / "b"
    term, gh = tmp_path / "term", tmp_path / "gh"
    wrong = role_url.replace(quote(PASSWORD, safe=""), quote(PASSWORD + "x", safe=""))
    base = {"MIGRATE_TERMINATION_LOG": str(term), "GITHUB_STEP_SUMMARY": str(gh),
            "MIGRATE_LOG_LEVEL": "debug", "MIGRATE_PG_BIN_DIR": str(pg_server.bin_dir),
            "MIGRATE_BACKUP": f"file://{backups}"}
    seen_cmdlines: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen_cmdlines.extend(c for c in _cmdlines() if "pg_dump" in c or "pg_restore" in c)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    outputs: list[str] = []
    try:
        runs = [
            (role_url, ["run"]), (role_url, ["run"]), (role_url, ["status", "--json"]),
            (role_url, ["plan", "--json"]), (role_url, ["backup"]),
            (role_url, ["rollback", "--yes"]), (role_url, ["mark", "0001_a", "--yes"]),
            (role_url, ["unmark", "0001_a", "--yes"]), (role_url, ["accept-changes", "0001_a",
                                                                  "--yes"]),
            (role_url, ["restore", "file:///nope.dump", "--yes"]),
            (wrong, ["run"]), (wrong, ["status"]), (wrong, ["plan"]), (wrong, ["backup"]),
            (wrong, ["rollback", "--yes"]),
            (role_url.replace("127.0.0.1", "127.0.0.1:1"), ["run"]),  # malformed URL
        ]
        for url, args in runs:
            res = run_job(*args, env={**env_for(url, mdir, MIGRATE_DB_WAIT="2s"), **base})
            outputs += [res.stdout, res.stderr]
            for f in (term, gh):
                if f.exists():
                    outputs.append(f.read_text())
        dumps = list(backups.glob("*"))
        assert dumps, "the backup command did not run pg_dump"
        outputs += [p.read_text(errors="replace") for p in dumps if p.suffix == ".json"]
    finally:
        stop.set()
        watcher.join()
    assert_not_leaked(PASSWORD, *outputs, *seen_cmdlines)
    assert any("0001_a" in o for o in outputs)  # the runs did real work
