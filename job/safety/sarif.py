"""`lint --format sarif`: the safety report as SARIF 2.1.0, for GitHub code scanning and any
other SARIF viewer.

One run, one tool (`migrate-job`), one reporting rule per catalogue rule (whether or not it
fired, so a viewer can show the help of every rule) plus `stale-approval`. Each finding is a
result with its rule, level, message and location (file as a URI relative to the working
directory when it lies below it, and line). An approved finding is kept as a *suppressed* result
(`inSource` for `-- migrate-job: approve`, `external` for MIGRATE_ALLOW_DESTRUCTIVE), so code
scanning shows it as dismissed with the approval's reason instead of losing it.

Only formats a Report; it decides nothing (the gate and the exit code are lint's).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .model import Approval, Finding, Report

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
STALE_APPROVAL = "stale-approval"
SRCROOT = "%SRCROOT%"
# SARIF levels; GitHub's rule property `problem.severity` uses "recommendation" for notes.
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
_PROBLEM_SEVERITY = {"error": "error", "warning": "warning", "info": "recommendation"}


def render_sarif(report: Report, cwd: str | None = None) -> str:
    return json.dumps(sarif_log(report, cwd), indent=2, ensure_ascii=False) + "\n"


def sarif_log(report: Report, cwd: str | None = None) -> dict[str, Any]:
    from . import rules as catalogue  # importing the package registers every rule

    cwd = os.path.abspath(cwd or os.getcwd())
    urls = _project_urls()
    rules = [_rule(r, urls) for r in catalogue.RULES] + [_stale_rule(urls)]
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = [_result(f, index, cwd) for f in report.findings]
    results += [_stale_result(a, index, cwd) for a in report.stale_approvals]
    driver: dict[str, Any] = {
        "name": "migrate-job",
        "version": _version(),
        "semanticVersion": _version(),
        "rules": rules,
    }
    if urls.get("homepage"):
        driver["informationUri"] = urls["homepage"]
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": driver},
            "originalUriBaseIds": {SRCROOT: {"uri": _dir_uri(cwd)}},
            "invocations": [{"executionSuccessful": True}],
            "results": results,
            "properties": {
                "pgVersion": report.pg_version,
                "pgVersionSource": report.pg_version_source,
                "files": report.files,
                "statements": report.statements,
                "blocking": len(report.blocking()),
                "allowDestructive": report.allow_destructive,
            },
        }],
    }


def _rule(r: Any, urls: dict[str, str]) -> dict[str, Any]:
    severity = str(r.severity)
    blocking = bool(getattr(r, "blocking", False))
    summary = str(getattr(r, "summary", "") or r.name)
    docs = str(getattr(r, "docs", "") or "")
    lock = str(getattr(r, "lock", "") or "")
    help_text = [summary, "", f"Safe alternative: {r.safe_alternative}"]
    help_md = [summary, "", f"**Safe alternative:** {r.safe_alternative}"]
    if lock and lock != "n/a":
        help_text += ["", f"Lock: {lock}"]
        help_md += ["", f"**Lock:** {lock}"]
    if docs:
        help_text += ["", docs]
        help_md += ["", docs]
    if blocking:
        note = ('Blocking: `run` refuses (exit 6) until the statement is changed or approved in '
                'the file with `-- migrate-job: approve ' + r.id + ' "reason"`.')
        help_text += ["", note]
        help_md += ["", note]
    entry: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": f"{summary} {docs}".strip()},
        "help": {"text": "\n".join(help_text), "markdown": "\n".join(help_md)},
        "defaultConfiguration": {
            "level": "error" if blocking else _LEVEL.get(severity, "warning"),
            "enabled": bool(getattr(r, "default_enabled", True)),
        },
        "properties": {
            "tags": ["migration-safety", str(r.category)],
            "category": str(r.category),
            "blocking": blocking,
            "problem.severity": "error" if blocking else _PROBLEM_SEVERITY.get(severity, "warning"),
        },
    }
    if urls.get("safety_docs"):
        entry["helpUri"] = urls["safety_docs"]
    return entry


def _stale_rule(urls: dict[str, str]) -> dict[str, Any]:
    text = ("An in-file approval (`-- migrate-job: approve RULE \"reason\"`) whose rule no longer "
            "fires on that migration.")
    entry: dict[str, Any] = {
        "id": STALE_APPROVAL,
        "name": STALE_APPROVAL,
        "shortDescription": {"text": text},
        "fullDescription": {"text": text},
        "help": {"text": text + "\n\nRemove the approval so it cannot approve a later change by "
                                "accident.",
                 "markdown": text + "\n\nRemove the approval so it cannot approve a later change "
                                    "by accident."},
        "defaultConfiguration": {"level": "warning", "enabled": True},
        "properties": {"tags": ["migration-safety", "approval"], "category": "approval",
                       "blocking": False, "problem.severity": "warning"},
    }
    if urls.get("safety_docs"):
        entry["helpUri"] = urls["safety_docs"]
    return entry


def _result(f: Finding, index: dict[str, int], cwd: str) -> dict[str, Any]:
    level = "error" if f.blocking else _LEVEL.get(f.severity, "warning")
    text = f.message
    if f.blocking:
        text += " (blocking: `run` refuses until it is fixed or approved)"
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "level": level,
        "message": {"text": text},
        "locations": [_location(f.path, f.line, cwd)],
        "partialFingerprints": {"migrateJob/v1": _fingerprint(f.rule, f.path, f.statement)},
        "properties": {
            "migration": f.migration,
            "category": f.category,
            "severity": f.severity,
            "blocking": f.blocking,
            "table": f.table,
            "lock": f.lock,
        },
    }
    if f.rule in index:
        result["ruleIndex"] = index[f.rule]
    if f.approved_by:
        external = f.approved_by.startswith("MIGRATE_ALLOW_DESTRUCTIVE")
        result["suppressions"] = [{
            "kind": "external" if external else "inSource",
            "status": "accepted",
            "justification": f.approved_by,
        }]
    return result


def _stale_result(a: Approval, index: dict[str, int], cwd: str) -> dict[str, Any]:
    return {
        "ruleId": STALE_APPROVAL,
        "ruleIndex": index[STALE_APPROVAL],
        "level": "warning",
        "message": {"text": f'stale approval of {a.rule} "{a.reason}": the rule no longer fires '
                            "here; remove it"},
        "locations": [_location(a.path, a.line, cwd)],
        "partialFingerprints": {"migrateJob/v1": _fingerprint(STALE_APPROVAL, a.path, a.rule)},
        "properties": {"migration": a.migration, "approvedRule": a.rule},
    }


def _location(path: str, line: int, cwd: str) -> dict[str, Any]:
    artifact: dict[str, Any]
    absolute = os.path.abspath(path)
    rel = os.path.relpath(absolute, cwd)
    if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
        # Relative to the checkout, as code scanning matches results to repository files.
        artifact = {"uri": quote(rel.replace(os.sep, "/")), "uriBaseId": SRCROOT}
    else:
        artifact = {"uri": _file_uri(absolute)}
    return {"physicalLocation": {"artifactLocation": artifact,
                                 "region": {"startLine": max(1, int(line or 1))}}}


def _file_uri(path: str) -> str:
    return Path(path).as_uri()


def _dir_uri(path: str) -> str:
    uri = _file_uri(path)
    return uri if uri.endswith("/") else uri + "/"


def _fingerprint(*parts: str) -> str:
    # Stable across line moves, so an alert survives an unrelated edit above it.
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _version() -> str:
    from job import __version__

    return __version__


def _project_urls() -> dict[str, str]:
    """Links from the installed package's metadata (pyproject [project.urls], the one place they
    are defined); empty when running from a source tree that is not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, metadata
    except ImportError:  # pragma: no cover - stdlib since 3.8
        return {}
    try:
        meta = metadata("migrate-job")
    except PackageNotFoundError:
        return {}
    urls: dict[str, str] = {}
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    out = {}
    if urls.get("homepage"):
        out["homepage"] = urls["homepage"]
    if urls.get("repository"):
        out["safety_docs"] = f"{urls['repository']}/blob/v{_version()}/docs/safety.md#rules"
    return out
