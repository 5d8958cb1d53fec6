"""Runs every enabled rule over every statement of every migration, then decides: which findings
block, which are approved, which approvals are stale. Formatting is report.py's job."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .context import Context, Schema
from .directives import ApprovalLine
from .directives import approvals as read_approvals
from .model import Approval, Finding, Report, SafetyConfig, SqlFile, StatsProvider, TableStats
from .parser import Statement, parse_file
from .rules.base import Hit, Rule

# lint without --pg-version: the oldest PostgreSQL major still supported by the community.
ASSUMED_VERSION = 140000
DESTRUCTIVE_SWITCH = "MIGRATE_ALLOW_DESTRUCTIVE=true"
Raw = list[tuple[str, str, int, str, str | None]]  # rule, message, line, statement, table


def normalize_version(v: int | None) -> int | None:
    """15 -> 150000; 150004 stays; 90600 (9.6) stays."""
    if v is None:
        return None
    if v <= 0:
        raise ValueError(f"invalid PostgreSQL version {v}")
    return v * 10000 if v < 100 else v


def expand_ids(items: Iterable[str]) -> set[str]:
    """Rule ids and category names -> rule ids."""
    from .rules import RULES

    out: set[str] = set()
    for item in items:
        matched = [r.id for r in RULES if r.id == item.upper() or r.category == item.lower()]
        out.update(matched)
    return out


def analyze(
    files: Sequence[SqlFile],
    *,
    server_version_num: int | None,
    stats: StatsProvider | None,
    config: SafetyConfig,
    allow_destructive: bool = False,
) -> Report:
    from .rules import RULES

    if server_version_num is not None:
        version, source = normalize_version(server_version_num) or ASSUMED_VERSION, "server"
    elif config.pg_version is not None:
        version, source = normalize_version(config.pg_version) or ASSUMED_VERSION, "setting"
    else:
        version, source = ASSUMED_VERSION, "assumed"
    ignored = expand_ids(config.ignore)
    promoted = expand_ids(config.block)
    opted_in = expand_ids(config.enable)
    enabled = [r for r in RULES if (r.default_enabled or r.id in opted_in) and r.id not in ignored]
    by_kind: dict[str, list[Rule]] = {}
    every: list[Rule] = []
    for r in enabled:
        if r.statement_kinds is None:
            every.append(r)
        else:
            for k in r.statement_kinds:
                by_kind.setdefault(k, []).append(r)
    meta = {r.id: r for r in RULES}
    known_ids = set(meta)

    report = Report(
        findings=[],
        pg_version=version,
        pg_version_source=source,
        allow_destructive=allow_destructive,
    )
    schema = Schema()
    for f in files:
        report.files += 1
        ctx = Context(
            migration=f.id,
            path=f.path,
            transactional=f.transactional,
            version=version,
            version_known=source != "assumed",
            version_exact=source == "server",
            config=config,
            schema=schema,
        )
        raw: Raw = []  # rule, message, line, statement, table
        parsed = parse_file(f.text)
        report.statements += len(parsed.statements)
        for p in parsed.problems:
            raw.append((p.rule, p.message, p.line, "", None))
        for st in parsed.statements:
            for rule in (*by_kind.get(st.kind, ()), *every):
                _run(raw, rule.id, rule.check, (st, ctx), st)
            try:
                ctx.observe(st)
            except Exception as exc:  # a bug must not take the deploy down with it
                raw.append(
                    (
                        "AN05",
                        f"context update failed ({type(exc).__name__}: {exc})",
                        st.line,
                        st.short(),
                        None,
                    )
                )
        for rule in enabled:
            _run(raw, rule.id, rule.finish, (ctx,), None)

        approved, bad = read_approvals(f.text, known_ids)
        for b in bad:
            raw.append(("AN04", b.message, b.line, "", None))
        reasons: dict[str, ApprovalLine] = {}
        for a in approved:
            reasons.setdefault(a.rule, a)
        fired: set[str] = set()
        for rule_id, message, line, snippet, table in raw:
            if rule_id in ignored:
                continue
            r = meta[rule_id]
            fired.add(rule_id)
            blocking = r.blocking or rule_id in promoted
            approved_by = None
            if rule_id in reasons:
                approved_by, blocking = reasons[rule_id].reason, False
            elif allow_destructive and r.category == "data-loss":
                approved_by, blocking = DESTRUCTIVE_SWITCH, False
            report.findings.append(
                Finding(
                    rule=rule_id,
                    name=r.name,
                    category=r.category,
                    severity=r.severity,
                    migration=f.id,
                    path=f.path,
                    line=line,
                    message=message,
                    safe_alternative=r.safe_alternative,
                    blocking=blocking,
                    approved_by=approved_by,
                    table=table,
                    lock=r.lock or None,
                    statement=snippet,
                )
            )
        for rule_id, a in reasons.items():
            record = Approval(f.id, f.path, a.line, rule_id, a.reason)
            (report.approvals if rule_id in fired else report.stale_approvals).append(record)
        for a in approved:
            if reasons[a.rule] is not a:  # a second approval of the same rule is stale by itself
                report.stale_approvals.append(Approval(f.id, f.path, a.line, a.rule, a.reason))
    position = {f.id: i for i, f in reversed(list(enumerate(files)))}
    report.findings.sort(key=lambda x: (position.get(x.migration, len(files)), x.line, x.rule))
    if stats is not None:
        _add_sizes(report, stats)
    return report


def _run(
    raw: Raw,
    rule_id: str,
    fn: Callable[..., Iterable[Hit]],
    args: tuple[Any, ...],
    st: Statement | None,
) -> None:
    try:
        for hit in fn(*args):
            line = hit.line or (st.line if st else 1)
            raw.append((rule_id, hit.message, line, st.short() if st else "", hit.table))
    except Exception as exc:  # a rule bug becomes a visible finding, never a crashed deploy
        line = st.line if st else 1
        raw.append(
            (
                "AN05",
                f"rule {rule_id} failed: {type(exc).__name__}: {exc}",
                line,
                st.short() if st else "",
                None,
            )
        )


def _add_sizes(report: Report, stats: StatsProvider) -> None:
    names = sorted({f.table for f in report.findings if f.table})
    if not names:
        return
    sizes = stats.table_stats(names)
    report.findings = [_with_size(f, sizes.get(f.table)) if f.table else f for f in report.findings]


def _with_size(f: Finding, s: TableStats | None) -> Finding:
    if s is None:
        return f
    rows = s.rows if s.rows >= 0 else None
    suffix = (
        f" [{f.lock or 'lock'} on {f.table} ({format_rows(rows)}, {format_bytes(s.total_bytes)})]"
    )
    return dataclasses.replace(f, rows=rows, total_bytes=s.total_bytes, message=f.message + suffix)


def format_rows(rows: float | None) -> str:
    if rows is None:
        return "rows unknown (never analysed)"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rows >= div:
            return f"{rows / div:.1f} {unit} rows"
    return f"{int(rows)} rows"


def format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
