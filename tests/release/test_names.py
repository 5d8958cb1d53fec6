"""The public names are defined once (pyproject.toml [project.urls]) and every doc, the chart, the
workflows and the README use them: no placeholder owner left, the README shows the real install
lines, and the release workflow derives the same paths from the repository owner."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
URLS = PYPROJECT["project"]["urls"]
OWNER = re.match(r"https://github\.com/([^/]+)/migrate-job$", URLS["Repository"]).group(1)  # type: ignore[union-attr]
IMAGE = f"ghcr.io/{OWNER.lower()}/migrate-job"
CHART = f"oci://ghcr.io/{OWNER.lower()}/charts/migrate-job"
ACTION = f"{OWNER.lower()}/migrate-job"
# Placeholders a copy-paste would carry into someone's pipeline.
PLACEHOLDERS = re.compile(r"\bOWNER\b|your-org|YOUR_ORG|<owner>|<org>|\bmy-org\b|example-org")


def public_files() -> list[Path]:
    patterns = ("README.md", "CHANGELOG.md", "docs/*.md", "helm/migrate-job/*.md",
                "helm/migrate-job/Chart.yaml", "helm/migrate-job/values.yaml",
                "helm/migrate-job/values.schema.json", ".github/workflows/*.yml", "action.yml",
                ".pre-commit-hooks.yaml", "pyproject.toml", "Dockerfile", "ecs/*.json",
                "docker-compose.yml")
    files = sorted({p for pattern in patterns for p in REPO.glob(pattern)})
    assert len(files) > 15
    return files


def test_the_names_are_defined_once_in_pyproject() -> None:
    assert OWNER == "migrate-job"
    assert URLS["Homepage"] == URLS["Repository"] == "https://github.com/migrate-job/migrate-job"
    assert URLS["Changelog"].endswith("/CHANGELOG.md")


def test_no_placeholder_owner_is_left_anywhere_users_copy_from() -> None:
    hits = []
    for path in public_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if PLACEHOLDERS.search(line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_the_placeholder_check_catches_a_placeholder() -> None:
    for line in ("image: ghcr.io/OWNER/migrate-job", "FROM ghcr.io/your-org/migrate-job:0.1",
                 "uses: <owner>/migrate-job@v1"):
        assert PLACEHOLDERS.search(line), line
    assert not PLACEHOLDERS.search("owner of the lock")  # prose is fine


def test_every_registry_reference_uses_the_canonical_owner() -> None:
    wrong = []
    refs = re.compile(r"ghcr\.io/([A-Za-z0-9_.${}:-]+)/(?:charts/)?migrate-job\b"
                      r"|\b([A-Za-z0-9_.-]+)/migrate-job@")
    for path in public_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for m in refs.finditer(line):
                owner = m.group(1) or m.group(2)
                # The release workflow derives the owner at run time.
                if owner in (OWNER, "${GITHUB_REPOSITORY_OWNER,,}", "$owner"):
                    continue
                wrong.append(f"{path.relative_to(REPO)}:{n}: {m.group(0)}")
    assert not wrong, "\n".join(wrong)


def test_chart_metadata_and_default_image_point_at_the_project() -> None:
    chart = yaml.safe_load((REPO / "helm/migrate-job/Chart.yaml").read_text())
    assert chart["home"] == URLS["Repository"]
    assert chart["sources"] == [URLS["Repository"]]
    values = yaml.safe_load((REPO / "helm/migrate-job/values.yaml").read_text())
    assert values["image"]["repository"] == IMAGE


def test_readme_shows_the_real_install_lines() -> None:
    from job import __version__

    readme = (REPO / "README.md").read_text()
    major, minor, _ = __version__.split(".")
    assert "pip install 'migrate-job[aws,azure]'" in readme
    assert f"docker pull {IMAGE}:{major}.{minor}" in readme
    assert re.search(rf"helm install \S+ {re.escape(CHART)} --version {re.escape(__version__)}",
                     readme)
    action_tag = f"v{major}" if int(major) >= 1 else f"v0.{minor}"
    assert f"uses: {ACTION}@{action_tag}" in readme
    assert "## Compatibility" in readme
    for interface in ("exit codes", "environment variables", "tables", "migrate.summary",
                      "chart's values"):
        assert interface in readme.split("## Compatibility", 1)[1].split("\n## ", 1)[0], interface


def test_release_workflow_derives_the_same_paths_from_the_owner() -> None:
    text = (REPO / ".github/workflows/release.yml").read_text()
    assert 'image=ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/migrate-job' in text
    assert 'owner="${GITHUB_REPOSITORY_OWNER,,}"' in text
    assert 'charts=oci://ghcr.io/$owner/charts' in text


def test_changelog_follows_keep_a_changelog() -> None:
    from job import __version__

    text = (REPO / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, flags=re.M)
    assert headings[0] == ("Unreleased", "")
    assert (__version__, headings[1][1]) == headings[1] and headings[1][1]
    for section in re.findall(r"^### (.+)$", text, flags=re.M):
        assert section in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    for name, _ in headings:
        assert re.search(rf"^\[{re.escape(name)}\]: https://github\.com/{OWNER}/", text,
                         flags=re.M), name


def test_release_points_a_forks_chart_at_the_forks_image(tmp_path: Path) -> None:
    # Runs the release's own shell step on a copy of the chart, then renders it with the real
    # Helm engine: a fork publishing under its owner gets a chart that pulls its own image.
    import shutil
    import subprocess

    from tests.helm.helmchart import EXISTING_SECRET, render

    release = yaml.safe_load((REPO / ".github/workflows/release.yml").read_text())
    step = next(s for s in release["jobs"]["chart"]["steps"]
                if s.get("name") == "Default image of the chart = this owner's image")
    shutil.copytree(REPO / "helm/migrate-job", tmp_path / "helm/migrate-job")
    fork = "ghcr.io/some-fork/migrate-job"
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "IMAGE": fork})
    assert proc.returncode == 0, proc.stderr
    from job import __version__

    rendered = render(EXISTING_SECRET, chart_dir=tmp_path / "helm/migrate-job")
    assert rendered.container["image"] == f"{fork}:{__version__}"
    # The canonical repository's run leaves the values exactly as they are.
    canonical = tmp_path / "canonical"
    shutil.copytree(REPO / "helm/migrate-job", canonical / "helm/migrate-job")
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=canonical, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "IMAGE": IMAGE})
    assert proc.returncode == 0, proc.stderr
    assert (canonical / "helm/migrate-job/values.yaml").read_text() == (
        REPO / "helm/migrate-job/values.yaml").read_text()
