"""Reporters: they only format a Report (text, json, markdown, github annotations, sarif)."""

from __future__ import annotations

import json

from .model import Finding, Report

FORMATS = ("text", "json", "markdown", "github", "sarif")


def render(report: Report, fmt: str) -> str:
    if fmt == "text":
        return _text(report)
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return _markdown(report)
    if fmt == "github":
        return _github(report)
    if fmt == "sarif":
        from .sarif import render_sarif  # SARIF 2.1.0 for code scanning, its own module

        return render_sarif(report)
    raise ValueError(f"unknown report format {fmt!r} (expected one of {', '.join(FORMATS)})")


def summary_line(report: Report) -> str:
    counts = {
        s: sum(1 for f in report.findings if f.severity == s) for s in ("error", "warning", "info")
    }
    version = "unknown"
    if report.pg_version:
        version = f"PostgreSQL {report.pg_version // 10000}"
        if report.pg_version_source == "assumed":
            version += " (assumed; set --pg-version)"
    approved = sum(1 for f in report.findings if f.approved_by)
    return (
        f"{len(report.findings)} findings ({counts['error']} error, {counts['warning']} warning, "
        f"{counts['info']} info), {len(report.blocking())} blocking, {approved} approved, "
        f"{len(report.stale_approvals)} stale approvals; {report.files} files, "
        f"{report.statements} statements; rules for {version}"
    )


def _status(f: Finding) -> str:
    if f.blocking:
        return "BLOCKING"
    if f.approved_by:
        return "approved"
    return ""


def _text(report: Report) -> str:
    out: list[str] = []
    for f in report.findings:
        status = f" [{_status(f)}]" if _status(f) else ""
        out.append(f"{f.path}:{f.line}: {f.severity} {f.rule} {f.name}{status}: {f.message}")
        if f.approved_by:
            out.append(f"    approved: {f.approved_by}")
        if f.severity != "info" or f.blocking:
            out.append(f"    safe alternative: {f.safe_alternative}")
    for a in report.stale_approvals:
        out.append(
            f'{a.path}:{a.line}: stale approval of {a.rule} "{a.reason}": '
            "the rule no longer fires here; remove it"
        )
    if report.allow_destructive:
        out.append(
            "MIGRATE_ALLOW_DESTRUCTIVE=true: every data-loss finding is approved deploy-wide"
        )
    out.append(summary_line(report))
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _markdown(report: Report) -> str:
    out = ["### migrate-job safety report", "", summary_line(report), ""]
    blocking = report.blocking()
    if blocking:
        out += [
            f"**{len(blocking)} blocking finding(s): `run` refuses (exit 6) until they are "
            f"fixed or approved "
            'with `-- migrate-job: approve RULE "reason"`.**',
            "",
        ]
    if report.findings:
        out += [
            "| | Rule | Severity | Location | Finding | Safe alternative |",
            "|---|---|---|---|---|---|",
        ]
        for f in report.findings:
            mark = (
                "⛔"
                if f.blocking
                else (
                    "✅" if f.approved_by else {"error": "❗", "warning": "⚠️"}.get(f.severity, "ℹ️")
                )
            )
            finding = _cell(f.message) + (
                f"<br>approved: {_cell(f.approved_by)}" if f.approved_by else ""
            )
            out.append(
                f"| {mark} | `{f.rule}` {_cell(f.name)} | {f.severity} | "
                f"`{_cell(f.path)}:{f.line}` | "
                f"{finding} | {_cell(f.safe_alternative)} |"
            )
        out.append("")
    else:
        out += ["No findings.", ""]
    if report.approvals:
        out += ["**Approvals**", ""]
        out += [
            f"- `{a.rule}` in `{_cell(a.path)}:{a.line}`: {_cell(a.reason)}"
            for a in report.approvals
        ]
        out.append("")
    if report.stale_approvals:
        out += ["**Stale approvals** (the rule no longer fires; remove them)", ""]
        out += [
            f"- `{a.rule}` in `{_cell(a.path)}:{a.line}`: {_cell(a.reason)}"
            for a in report.stale_approvals
        ]
        out.append("")
    return "\n".join(out)


def _esc_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _esc_prop(s: str) -> str:
    return _esc_data(s).replace(":", "%3A").replace(",", "%2C")


def _github(report: Report) -> str:
    out = []
    for f in report.findings:
        level = (
            "error"
            if f.blocking or f.severity == "error"
            else ("warning" if f.severity == "warning" else "notice")
        )
        title = f"{f.rule} {f.name}" + (" (blocking)" if f.blocking else "")
        body = (
            f.message
            + (f"\nApproved: {f.approved_by}" if f.approved_by else "")
            + f"\nSafe alternative: {f.safe_alternative}"
        )
        out.append(
            f"::{level} "
            f"file={_esc_prop(f.path)},line={f.line},title={_esc_prop(title)}::{_esc_data(body)}"
        )
    for a in report.stale_approvals:
        out.append(
            f"::warning "
            f"file={_esc_prop(a.path)},line={a.line},"
            f"title={_esc_prop('stale approval ' + a.rule)}::"
            f"{_esc_data(f'{a.rule} no longer fires here; remove the approval')}"
        )
    out.append(summary_line(report))
    return "\n".join(out) + "\n"
