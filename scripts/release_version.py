#!/usr/bin/env python3
"""The release's version check (release.yml runs it first; tests/release runs it too).

The version is written once, in the package (`job/__init__.py` `__version__`, which pyproject.toml
declares as the project's dynamic version). A tag does not choose the version, it claims it:
`v1.4.2` may only be pushed on a commit whose package says 1.4.2. Everything that repeats the
version must agree before anything is published:

- the tag (`--tag`, default `$GITHUB_REF_NAME`) is `v` + the version;
- helm/migrate-job/Chart.yaml `version` and `appVersion` equal it (a chart installed from this
  checkout pulls the image of the same version; the published chart is packaged with both set
  from the checked version anyway);
- CHANGELOG.md has a `## [X.Y.Z] - YYYY-MM-DD` section (its text becomes the release notes);
- the docs' install lines pin this release: the action at its moving tag (`@v0.2` before 1.0,
  `@v1` after), the image at `MAJOR.MINOR`, the chart and pre-commit `rev` at the exact version.

Any disagreement exits 1 naming every file that disagrees and what to do; nothing is published.

    python3 scripts/release_version.py --tag v0.2.0 [--github-output] [--notes notes.md]
    python3 scripts/release_version.py --bump 0.2.0   # writes the version everywhere it repeats

Standard library only: it runs on a bare runner before anything is installed.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import os
import re
import sys
import tomllib
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = Path("helm/migrate-job/Chart.yaml")
CHANGELOG = Path("CHANGELOG.md")
# Where install lines live (the changelog is history: it pins nothing).
DOCS = ("README.md", "docs/*.md", "helm/migrate-job/README.md", ".github/workflows/*.yml")
# Releases are plain X.Y.Z: the same string is a valid PEP 440 version (PyPI) and SemVer 2
# (Helm chart versions), so no translation between the two can go wrong.
VERSION_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class ReleaseError(Exception):
    pass


def owner(root: Path) -> str:
    """The registry owner, from pyproject's Repository URL (the one place it is defined), lower
    case as GHCR requires: the image is ghcr.io/<owner>/migrate-job, the chart
    oci://ghcr.io/<owner>/charts/migrate-job, the action <owner>/migrate-job."""
    urls = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    m = re.match(r"^https://github\.com/([^/]+)/([^/]+?)/?$", urls["Repository"])
    if not m:
        raise ReleaseError(f"pyproject.toml: Repository URL {urls['Repository']!r} is not "
                           "https://github.com/<owner>/<name>")
    return m.group(1).lower()


def doc_pins(root: Path, version: str) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, expected) for every versioned install reference in the docs; group 1 of each
    pattern is the version as written."""
    o = re.escape(owner(root))
    major, minor, _ = version.split(".")
    action = github_outputs(version)["action-tag"]
    return [
        (re.compile(rf"\b{o}/migrate-job@(v[0-9][0-9.]*)"), action),
        (re.compile(rf"ghcr\.io/{o}/migrate-job:([0-9][0-9.]*[0-9])"), f"{major}.{minor}"),
        (re.compile(rf"oci://ghcr\.io/{o}/charts/migrate-job\s+--version\s+([0-9][0-9.]*[0-9])"),
         version),
        (re.compile(rf"repo:\s*https://github\.com/{o}/migrate-job\s+rev:\s*v([0-9][0-9.]*[0-9])"),
         version),
    ]


def _replace_group(m: re.Match[str], *, value: str) -> str:
    start, end = m.start(1) - m.start(), m.end(1) - m.start()
    return m.group(0)[:start] + value + m.group(0)[end:]


def doc_files(root: Path) -> list[Path]:
    return sorted({p for pattern in DOCS for p in root.glob(pattern)})


def stale_pins(root: Path, version: str) -> list[str]:
    problems = []
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        for pattern, expected in doc_pins(root, version):
            for m in pattern.finditer(text):
                if m.group(1) != expected:
                    line = text.count("\n", 0, m.start()) + 1
                    problems.append(f"{path.relative_to(root)}:{line}: {m.group(0)!r} pins "
                                    f"{m.group(1)}, release {version} needs {expected}")
    return problems


def project_version(root: Path) -> str:
    """The version as the build backend sees it: static `[project] version`, or the dynamic
    `attr` pyproject.toml points at, read without importing the package."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject.get("project", {})
    if "version" in project:
        return str(project["version"])
    if "version" not in project.get("dynamic", []):
        raise ReleaseError("pyproject.toml: [project] has neither `version` nor dynamic version")
    attr = (pyproject.get("tool", {}).get("setuptools", {}).get("dynamic", {})
            .get("version", {}).get("attr"))
    if not attr:
        raise ReleaseError("pyproject.toml: dynamic version without [tool.setuptools.dynamic] attr")
    module, _, name = attr.rpartition(".")
    path = root / Path(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    raise ReleaseError(f"{source.relative_to(root)}: no `{name} = \"X.Y.Z\"` assignment")


def version_source(root: Path) -> Path:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    attr = (pyproject.get("tool", {}).get("setuptools", {}).get("dynamic", {})
            .get("version", {}).get("attr", ""))
    if not attr:
        return Path("pyproject.toml")
    module = attr.rpartition(".")[0]
    path = Path(*module.split("."))
    return path / "__init__.py" if (root / path).is_dir() else path.with_suffix(".py")


def chart_versions(root: Path) -> dict[str, str]:
    """Top-level `version` and `appVersion` of Chart.yaml (plain scalars, quoted or not)."""
    out: dict[str, str] = {}
    for line in (root / CHART).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(version|appVersion):\s*['\"]?([^'\"#\s]+)['\"]?\s*(#.*)?$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def changelog_section(root: Path, version: str) -> str | None:
    """The body of `## [version] - date`, or None when the changelog has no such section."""
    text = (root / CHANGELOG).read_text(encoding="utf-8")
    m = re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}[^\n]*\n(.*?)(?=^## |\Z)",
                  text, flags=re.M | re.S)
    if not m:
        return None
    # Link reference definitions at the end of the file are not part of the section.
    body = re.sub(r"^\[[^\]]+\]:\s*\S+\s*$", "", m.group(1), flags=re.M)
    return body.strip() + "\n"


def check(root: Path, tag: str | None) -> str:
    version = project_version(root)
    source = version_source(root)
    problems: list[str] = []
    if not VERSION_RE.match(version):
        problems.append(f"{source}: version {version!r} is not X.Y.Z (releases are plain "
                        "MAJOR.MINOR.PATCH: valid for PyPI and for Helm alike)")
    if tag is not None:
        name = tag.removeprefix("refs/tags/")
        if name != f"v{version}":
            problems.append(f"tag {name!r} does not match the package version {version!r} "
                            f"({source}): tag v{version}, or bump the version first "
                            f"(scripts/release_version.py --bump X.Y.Z) and tag that commit")
    chart = chart_versions(root)
    for key in ("version", "appVersion"):
        if chart.get(key) != version:
            problems.append(f"{CHART}: {key} is {chart.get(key)!r}, expected {version!r} "
                            "(scripts/release_version.py --bump writes it)")
    if changelog_section(root, version) is None:
        problems.append(f"{CHANGELOG}: no '## [{version}] - YYYY-MM-DD' section (move the "
                        "[Unreleased] entries under it)")
    if VERSION_RE.match(version):
        problems += [p + " (scripts/release_version.py --bump rewrites it)"
                     for p in stale_pins(root, version)]
    if problems:
        raise ReleaseError("\n".join(problems))
    return version


def bump(root: Path, version: str, today: dt.date) -> list[Path]:
    """Write `version` into the one source and into every copy the check compares, and open its
    changelog section from [Unreleased]. Returns the files changed."""
    if not VERSION_RE.match(version):
        raise ReleaseError(f"{version!r} is not X.Y.Z")
    old = project_version(root)
    source = version_source(root)
    changed = []
    text = (root / source).read_text(encoding="utf-8")
    new = re.sub(r'^(__version__\s*=\s*)["\'][^"\']*["\']', rf'\g<1>"{version}"', text,
                 count=1, flags=re.M)
    if new != text:
        (root / source).write_text(new, encoding="utf-8")
        changed.append(source)
    chart = (root / CHART).read_text(encoding="utf-8")
    new = re.sub(r"^version:.*$", f"version: {version}", chart, count=1, flags=re.M)
    new = re.sub(r"^appVersion:.*$", f'appVersion: "{version}"', new, count=1, flags=re.M)
    if new != chart:
        (root / CHART).write_text(new, encoding="utf-8")
        changed.append(CHART)
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        new = text
        for pattern, expected in doc_pins(root, version):
            new = pattern.sub(partial(_replace_group, value=expected), new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path.relative_to(root))
    log = (root / CHANGELOG).read_text(encoding="utf-8")
    if changelog_section(root, version) is None:
        heading = f"## [Unreleased]\n\n## [{version}] - {today.isoformat()}\n"
        new = re.sub(r"^## \[Unreleased\][^\n]*\n", heading, log, count=1, flags=re.M)
        if new == log:
            raise ReleaseError(f"{CHANGELOG}: no '## [Unreleased]' section to release")
        new = _bump_links(new, old, version)
        (root / CHANGELOG).write_text(new, encoding="utf-8")
        changed.append(CHANGELOG)
    return changed


def _bump_links(text: str, old: str, version: str) -> str:
    m = re.search(r"^\[Unreleased\]:\s*(\S+)/compare/v\S+\.\.\.HEAD\s*$", text, flags=re.M)
    if not m:
        return text
    base = m.group(1)
    links = (f"[Unreleased]: {base}/compare/v{version}...HEAD\n"
             f"[{version}]: {base}/compare/v{old}...v{version}")
    return text[:m.start()] + links + text[m.end():]


def github_outputs(version: str) -> dict[str, str]:
    major, minor, _ = (int(x) for x in version.split("."))
    return {
        "version": version,
        "tag": f"v{version}",
        # The action's moving tag: v1 from 1.0.0 on; before 1.0, a minor may break (SemVer
        # item 4), so users follow v0.MINOR.
        "action-tag": f"v{major}" if major >= 1 else f"v0.{minor}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument("--tag", default=None,
                        help="the release tag (default: $GITHUB_REF_NAME when it is a tag push)")
    parser.add_argument("--github-output", action="store_true",
                        help="append version, tag, action-tag to $GITHUB_OUTPUT")
    parser.add_argument("--notes", type=Path, default=None,
                        help="write this version's CHANGELOG section to the file")
    parser.add_argument("--bump", metavar="X.Y.Z", default=None,
                        help="write a new version everywhere it repeats, then check it")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    tag = args.tag
    if tag is None and os.environ.get("GITHUB_REF_TYPE") == "tag":
        tag = os.environ.get("GITHUB_REF_NAME")
    try:
        if args.bump:
            for path in bump(root, args.bump, dt.date.today()):
                print(f"wrote {path}")
        version = check(root, tag)
    except (ReleaseError, OSError) as exc:
        for line in str(exc).splitlines():
            print(f"release_version: {line}", file=sys.stderr)
            if os.environ.get("GITHUB_ACTIONS") == "true":
                print(f"::error title=release version::{line}")
        return 1
    if args.notes:
        args.notes.write_text(changelog_section(root, version) or "", encoding="utf-8")
    if args.github_output:
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            for key, value in github_outputs(version).items():
                out.write(f"{key}={value}\n")
    print(f"release version {version}" + (f" (tag {tag})" if tag else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
