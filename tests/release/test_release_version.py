"""scripts/release_version.py, the release's first job: a tag is published only when it equals
the package version and everything that repeats the version agrees (Chart.yaml, the CHANGELOG,
the docs' install pins); `--bump` writes a new version everywhere it repeats."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "release_version.py"


def version() -> str:
    from job import __version__

    return __version__


def script(*args: str, root: Path | None = None, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    # -I -S: no site-packages, no PYTHONPATH — it must run on a bare runner's Python.
    argv = [sys.executable, "-I", "-S", str(SCRIPT), *args]
    if root is not None:
        argv += ["--root", str(root)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the files the check reads."""
    root = tmp_path / "repo"
    for rel in ("pyproject.toml", "job/__init__.py", "helm/migrate-job/Chart.yaml",
                "CHANGELOG.md", "README.md", "helm/migrate-job/README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    for pattern in ("docs/*.md", ".github/workflows/*.yml"):
        for src in REPO.glob(pattern):
            dst = root / src.relative_to(REPO)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return root


def test_this_checkout_is_releasable_as_its_own_version(tmp_path: Path) -> None:
    out, notes = tmp_path / "github_output", tmp_path / "notes.md"
    out.touch()
    proc = script("--tag", f"refs/tags/v{version()}", "--github-output", "--notes", str(notes),
                  env={"GITHUB_OUTPUT": str(out)})
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert lines["version"] == version()
    assert lines["tag"] == f"v{version()}"
    major, minor = version().split(".")[:2]
    assert lines["action-tag"] == (f"v{major}" if int(major) >= 1 else f"v0.{minor}")
    assert notes.read_text().strip(), "the CHANGELOG section is the release notes"
    assert "## [" not in notes.read_text()  # the section body only


def test_tag_that_differs_from_the_package_version_fails_the_release(repo: Path) -> None:
    proc = script("--tag", "v9.9.9", root=repo)
    assert proc.returncode == 1
    assert "tag 'v9.9.9' does not match the package version" in proc.stderr
    assert "job/__init__.py" in proc.stderr


def test_a_branch_is_not_a_release(repo: Path) -> None:
    proc = script("--tag", "refs/heads/main", root=repo)
    assert proc.returncode == 1
    assert "refs/heads/main" in proc.stderr


def test_in_github_actions_the_refusal_is_an_error_annotation(repo: Path) -> None:
    proc = script("--tag", "v9.9.9", root=repo, env={"GITHUB_ACTIONS": "true"})
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error title=release version::tag 'v9.9.9'")


def test_chart_app_version_must_match(repo: Path) -> None:
    chart = repo / "helm/migrate-job/Chart.yaml"
    chart.write_text(re.sub(r"(?m)^appVersion:.*$", 'appVersion: "0.0.1"', chart.read_text()))
    proc = script("--tag", f"v{version()}", root=repo)
    assert proc.returncode == 1
    assert "Chart.yaml: appVersion is '0.0.1'" in proc.stderr


def test_a_version_without_changelog_section_is_not_released(repo: Path) -> None:
    log = repo / "CHANGELOG.md"
    log.write_text(log.read_text().replace(f"## [{version()}]", "## [0.0.0]"))
    proc = script("--tag", f"v{version()}", root=repo)
    assert proc.returncode == 1
    assert f"no '## [{version()}] - YYYY-MM-DD' section" in proc.stderr


def test_a_stale_install_pin_in_the_docs_fails_with_its_line(repo: Path) -> None:
    readme = repo / "README.md"
    readme.write_text(readme.read_text() + "\n```yaml\n- uses: migrate-job/migrate-job@v0.0\n```\n")
    line = readme.read_text().splitlines().index("- uses: migrate-job/migrate-job@v0.0") + 1
    proc = script("--tag", f"v{version()}", root=repo)
    assert proc.returncode == 1
    assert f"README.md:{line}: 'migrate-job/migrate-job@v0.0' pins v0.0" in proc.stderr


def test_pre_release_versions_are_refused(repo: Path) -> None:
    init = repo / "job/__init__.py"
    init.write_text(init.read_text().replace(f'"{version()}"', '"1.0.0rc1"'))
    proc = script(root=repo)
    assert proc.returncode == 1
    assert "is not X.Y.Z" in proc.stderr


@pytest.mark.parametrize("new, action_tag, image", [("0.2.0", "v0.2", "0.2"),
                                                     ("1.0.0", "v1", "1.0")])
def test_bump_writes_every_copy_and_the_result_is_releasable(
        repo: Path, new: str, action_tag: str, image: str) -> None:
    before = (repo / "CHANGELOG.md").read_text()
    unreleased = before.split("## [Unreleased]", 1)[1].split("\n## [", 1)[0].strip()
    proc = script("--bump", new, root=repo)
    assert proc.returncode == 0, proc.stderr
    assert f'__version__ = "{new}"' in (repo / "job/__init__.py").read_text()
    chart = (repo / "helm/migrate-job/Chart.yaml").read_text()
    assert f"\nversion: {new}\n" in chart and f'\nappVersion: "{new}"\n' in chart
    log = (repo / "CHANGELOG.md").read_text()
    today = dt.date.today().isoformat()
    assert f"## [Unreleased]\n\n## [{new}] - {today}\n" in log
    assert log.split(f"## [{new}] - {today}\n", 1)[1].strip().startswith(unreleased[:40])
    assert f"[{new}]: https://github.com/migrate-job/migrate-job/compare/v{version()}...v{new}" in log
    assert f"[Unreleased]: https://github.com/migrate-job/migrate-job/compare/v{new}...HEAD" in log
    readme = (repo / "README.md").read_text()
    assert f"migrate-job/migrate-job@{action_tag}" in readme
    assert f"ghcr.io/migrate-job/migrate-job:{image}" in readme
    assert f"oci://ghcr.io/migrate-job/charts/migrate-job --version {new}" in readme
    assert script("--tag", f"v{new}", root=repo).returncode == 0
    assert script("--tag", f"v{version()}", root=repo).returncode == 1  # the old tag no longer
