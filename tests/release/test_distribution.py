"""The Python distribution as PyPI will receive it: `python -m build` makes an sdist and a wheel,
`twine check --strict` accepts them, the metadata is complete (SPDX licence, URLs, version), the
wheel holds the package and nothing else, and installed into a fresh virtualenv — from the wheel
alone, outside this checkout — `migrate-job --version` and `migrate-job lint` work."""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def version() -> str:
    from job import __version__

    return __version__


def clean_env() -> dict[str, str]:
    # No PYTHONPATH: the installed wheel must work without this checkout on the path.
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("MIGRATE_")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600, env=clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    return dist / f"migrate_job-{version()}-py3-none-any.whl"


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed (its dependencies resolved by pip)."""
    env_dir = tmp_path_factory.mktemp("fresh") / "venv"
    venv.create(env_dir, with_pip=True)
    proc = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=900, env=clean_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return env_dir


def test_build_makes_an_sdist_and_a_wheel_named_for_the_version(dist: Path) -> None:
    assert sorted(p.name for p in dist.iterdir()) == [
        f"migrate_job-{version()}-py3-none-any.whl", f"migrate_job-{version()}.tar.gz"]


def test_twine_check_strict_passes(dist: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                           *map(str, sorted(dist.iterdir()))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_wheel_holds_the_package_and_its_licence_but_no_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"migrate_job-{version()}.dist-info/"
    tops = {n.split("/", 1)[0] + "/" for n in names}
    assert tops == {"job/", dist_info}, tops
    assert not [n for n in names if "test" in n.split("/")[0] or "/tests/" in n]
    assert not [n for n in names if n.endswith((".pyc", "/__pycache__/"))]
    for module in ("job/cli.py", "job/safety/sarif.py", "job/safety/rules/base.py"):
        assert module in names, module
    assert f"{dist_info}licenses/LICENSE" in names
    assert f"{dist_info}entry_points.txt" in names


def test_metadata_has_the_spdx_licence_urls_and_classifiers(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta = email.message_from_bytes(z.read(f"migrate_job-{version()}.dist-info/METADATA"))
        entry_points = z.read(f"migrate_job-{version()}.dist-info/entry_points.txt").decode()
    assert meta["Name"] == "migrate-job"
    assert meta["Version"] == version()
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    # The deprecated licence classifiers must not come back next to the SPDX expression.
    assert not [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    assert "Topic :: Database" in meta.get_all("Classifier")
    assert meta["Requires-Python"] == ">=3.11"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert urls["Repository"] == "https://github.com/migrate-job/migrate-job"
    assert urls["Changelog"].endswith("/CHANGELOG.md")
    assert "postgresql" in meta["Keywords"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "migrate-job = job.cli:main" in entry_points


def test_sdist_builds_the_same_version(dist: Path) -> None:
    with tarfile.open(dist / f"migrate_job-{version()}.tar.gz") as tar:
        names = tar.getnames()
        root = f"migrate_job-{version()}/"
        for rel in ("pyproject.toml", "README.md", "LICENSE", "job/__init__.py", "PKG-INFO"):
            assert root + rel in names, rel
        pkg_info = email.message_from_bytes(tar.extractfile(root + "PKG-INFO").read())  # type: ignore[union-attr]
    assert pkg_info["Version"] == version()


def test_installed_wheel_runs_version_and_lint_outside_the_checkout(
        installed: Path, tmp_path: Path) -> None:
    exe = installed / "bin" / "migrate-job"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"migrate-job {version()}"

    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import job; print(job.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path,
                           env=clean_env())
    assert str(installed) in where.stdout, "imported from the checkout, not the wheel"

    lint = subprocess.run([str(exe), "lint", str(REPO / "migrations")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=clean_env())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # the 3 example migrations, their 3 rollback scripts and the post-apply hook
    assert "7 files" in lint.stdout


def test_installed_wheel_reports_a_blocking_finding_with_exit_6(
        installed: Path, tmp_path: Path) -> None:
    (tmp_path / "0001_drop.sql").write_text("DROP TABLE legacy;\n")
    proc = subprocess.run([str(installed / "bin" / "migrate-job"), "lint", "--format", "sarif",
                           "0001_drop.sql"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=clean_env())
    assert proc.returncode == 6
    import json

    log = json.loads(proc.stdout)
    # The installed metadata's URLs reach the SARIF rule help.
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert rules[0]["helpUri"].startswith("https://github.com/migrate-job/migrate-job/blob/v")
