"""Every entry that looks like a migration is read or refused (exit 2 naming it), never skipped.

yoyo's reader keeps only ``is_file()`` entries: before, each of these vanished from the plan and
``run`` said "nothing pending" with exit 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, job_env
from tests.core.helpers import applied_ids, env_for, summary, write


def _dir_with_one_applied(parent: Path) -> Path:
    mdir = parent / "m"
    write(mdir, "0001_a.sql", "CREATE TABLE a (id int);\n")
    return mdir


@pytest.mark.parametrize("kind", ["symlink_loop", "dangling_symlink", "directory", "fifo"])
def test_entry_named_like_a_migration_that_cannot_be_read_exits_2_naming_it(
        database_url, run_job, tmp_path, kind):
    mdir = _dir_with_one_applied(tmp_path)
    entry = mdir / "0005_x.sql"
    if kind == "symlink_loop":
        os.symlink("0005_x.sql", entry)  # points at itself
        expected = "symbolic link loop"
    elif kind == "dangling_symlink":
        os.symlink("gone/0005_x.sql", entry)
        expected = "broken symbolic link to 'gone/0005_x.sql'"
    elif kind == "directory":
        entry.mkdir()
        expected = "is a directory, not a migration file"
    else:
        os.mkfifo(entry)
        expected = "not a regular file"
    for command in ("run", "status", "plan"):
        res = run_job(command, env=env_for(database_url, mdir))
        assert res.returncode == 2, (command, res.stderr[-2000:])
        message = summary(res.stderr)["message"]
        assert str(entry) in message and expected in message, message
    assert applied_ids(database_url) == []  # refused before touching the database


def test_unreadable_migration_file_exits_2_naming_it(database_url, tmp_path):
    """chmod 000 does not stop root (CAP_DAC_OVERRIDE). As root the job runs without the two
    capabilities that bypass file permissions (setpriv), so the file really is unreadable to
    it, as it is to the non-root user of the image."""
    mdir = _dir_with_one_applied(tmp_path)
    secret = write(mdir, "0002_b.sql", "CREATE TABLE b (id int);\n")
    os.chmod(secret, 0o000)
    cmd = [sys.executable, "-m", "job", "run"]
    if os.geteuid() == 0:
        assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop root's bypass"
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
               "--inh-caps=-dac_override,-dac_read_search", "--", *cmd]
        # Proof that the file is unreadable for the process the job runs as.
        probe = subprocess.run([*cmd[:4], "cat", str(secret)], capture_output=True, text=True)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr
    env = job_env(**env_for(database_url, mdir))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                         cwd=str(REPO))
    assert res.returncode == 2, res.stderr[-2000:]
    message = summary(res.stderr)["message"]
    assert f"{secret}: unreadable: Permission denied" in message, message
    assert applied_ids(database_url) == []


def test_yoyo_drafts_and_other_files_are_ignored_as_before(database_url, run_job, tmp_path):
    mdir = _dir_with_one_applied(tmp_path)
    os.symlink("nowhere", mdir / ".#0001_a.sql")  # an editor's lock link
    (mdir / "_tmp_yoyonew_draft.sql").write_text("garbage")
    (mdir / "README.md").write_text("notes")
    os.symlink("nowhere", mdir / "notes.txt")
    res = run_job("run", env=env_for(database_url, mdir))
    assert res.returncode == 0, res.stderr[-2000:]
    assert applied_ids(database_url) == ["0001_a"]
