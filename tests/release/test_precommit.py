"""The pre-commit hook: `.pre-commit-hooks.yaml` passes pre-commit's own manifest validation, and
`pre-commit try-repo` — pre-commit building the hook's virtualenv from this repository with pip,
as it does for a user's `rev:` — lints the staged migrations of an application repository:
a blocking finding fails the commit, clean migrations pass, rollback scripts are left alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow
MANIFEST = REPO / ".pre-commit-hooks.yaml"


def pre_commit() -> str:
    exe = Path(sys.executable).parent / "pre-commit"
    if not exe.is_file():
        pytest.fail("pre-commit not found: pip install pre-commit (test extra)")
    return str(exe)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t",
                    "-c", "commit.gpgsign=false", *args],
                   cwd=cwd, check=True, capture_output=True, timeout=60)


def hook() -> dict[str, object]:
    (only,) = yaml.safe_load(MANIFEST.read_text())
    return only  # type: ignore[no-any-return]


def test_manifest_passes_pre_commit_validation() -> None:
    proc = subprocess.run([pre_commit(), "validate-manifest", str(MANIFEST)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_validation_rejects_a_hook_without_entry(tmp_path: Path) -> None:
    bad = tmp_path / ".pre-commit-hooks.yaml"
    bad.write_text("- id: x\n  name: x\n  language: python\n")
    proc = subprocess.run([pre_commit(), "validate-manifest", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "entry" in proc.stdout + proc.stderr


def test_hook_runs_lint_on_migration_files_only() -> None:
    h = hook()
    for key in ("id", "name", "entry", "language"):
        assert h.get(key), key
    assert h["id"] == "migrate-job-lint"
    assert str(h["entry"]).startswith("migrate-job lint")
    assert h["language"] == "python"
    assert h["pass_filenames"] is True
    files, exclude = re.compile(str(h["files"])), re.compile(str(h["exclude"]))

    def selected(path: str) -> bool:  # pre-commit uses re.search for both
        return bool(files.search(path)) and not exclude.search(path)

    assert selected("migrations/0001_create.sql")
    assert selected("db/migrations/20261126_add_index.sql")
    assert not selected("migrations/0001_create.rollback.sql")
    assert not selected("migrations/README.md")
    assert not selected("src/app.py")
    assert not selected("mymigrations/0001.sql")


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository as pre-commit clones it: the hook manifest and what pip needs to install
    the package, committed (uncommitted work in the checkout included, so the test sees it)."""
    root = tmp_path_factory.mktemp("hook-repo")
    for rel in (".pre-commit-hooks.yaml", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / rel, root / rel)
    shutil.copytree(REPO / "job", root / "job",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "hook repo")
    return root


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


def app_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "app"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    return root


def try_repo(hook_repo: Path, app: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # The caller's pip configuration and cache (the hook's virtualenv installs with pip), no
    # PYTHONPATH: the hook must run from its own virtualenv.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("MIGRATE_", "GIT_"))}
    env["PRE_COMMIT_HOME"] = str(home)
    return subprocess.run([pre_commit(), "try-repo", str(hook_repo), "migrate-job-lint",
                           "--color", "never"],
                          cwd=app, capture_output=True, text=True, timeout=900, env=env)


def test_hook_blocks_a_commit_with_an_unapproved_drop(
        hook_repo: Path, pre_commit_home: Path, tmp_path: Path) -> None:
    app = app_repo(tmp_path, {
        "migrations/0001_create.sql": "CREATE TABLE t (id bigint PRIMARY KEY);\n",
        "migrations/0001_create.rollback.sql": "DROP TABLE t;\n",
        "migrations/0002_drop.sql": "-- depends: 0001_create\nDROP TABLE legacy;\n",
        "src/app.py": "print('not a migration')\n",
    })
    proc = try_repo(hook_repo, app, pre_commit_home)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "migrate-job lint" in out and "Failed" in out
    assert "exit code: 6" in out
    assert "migrations/0002_drop.sql:2: error DL01 drop-table [BLOCKING]" in out
    assert "rollback.sql" not in out  # rollback scripts are not linted
    assert "2 files" in out


def test_hook_passes_clean_migrations(
        hook_repo: Path, pre_commit_home: Path, tmp_path: Path) -> None:
    app = app_repo(tmp_path, {
        "db/migrations/0001_create.sql": "CREATE TABLE t (id bigint PRIMARY KEY);\n",
    })
    proc = try_repo(hook_repo, app, pre_commit_home)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"migrate-job lint\.+Passed", out), out
