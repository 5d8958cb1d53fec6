"""Runs every enabled rule over every statement of every migration, then decides: which findings
block, which are approved, which approvals are stale. Formatting is report.py's job."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .catalog import EXISTING, NEW, Catalog, CatalogSource
from .context import Context, RunState
from .directives import (
    ApprovalLine,
    declared_line,
    declared_transactional,
    rollback_mode_message,
)
from .directives import approvals as read_approvals
from .model import (
    Approval,
    DataProbe,
    DataSubject,
    Finding,
    Report,
    SafetyConfig,
    SqlFile,
    StatsProvider,
    TableStats,
)
from .parser import Statement, parse_file
from .rules.base import Hit, Rule

# lint without --pg-version: the oldest PostgreSQL major still supported by the community.
ASSUMED_VERSION = 140000
DESTRUCTIVE_SWITCH = "MIGRATE_ALLOW_DESTRUCTIVE=true"


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


@dataclass
class _Raw:
    rule: str
    message: str
    line: int
    statement: str
    table: str | None = None
    subject: DataSubject | None = None
    blocking: bool | None = None


def analyze(
    files: Sequence[SqlFile],
    *,
    server_version_num: int | None,
    stats: StatsProvider | None,
    config: SafetyConfig,
    allow_destructive: bool = False,
    catalog: CatalogSource | None = None,
    probe: DataProbe | None = None,
    lock_timeout: float = 0.0,
    statement_timeout: float = 0.0,
    applied: Sequence[SqlFile] = (),
) -> Report:
    """Analyse `files` as ONE run, in the order given (the order `run` applies them).

    `catalog` seeds the model of the target (connected: objects not in it are absent); without
    it an object no file creates is unknown (it may exist and hold data). `probe` decides
    whether a data-loss finding can lose data. `lock_timeout`/`statement_timeout` are the
    job's own session settings (seconds, 0 = none) under which it runs every statement.
    Rollback scripts (`SqlFile.rollback`) are analysed after every up, newest first, as a full
    `rollback` would run them. `applied` migrations are assumed to be in the target already:
    they seed the model (their objects exist and may hold data) and are not reported.
    """
    from .rules import RULES

    started = time.perf_counter()
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
    # Rules that keep the base class's empty check() or finish() are not called for it
    # (two thirds of the calls were those no-ops).
    checking = [r for r in enabled if type(r).check is not Rule.check]
    finishing = [r for r in enabled if type(r).finish is not Rule.finish]
    for r in checking:
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
    run = RunState(Catalog(catalog), lock_timeout=lock_timeout,
                   statement_timeout=statement_timeout)
    _seed(run.model, applied)
    ups = [f for f in files if not f.rollback]
    rollbacks = [f for f in files if f.rollback]
    order = ups + list(reversed(rollbacks))
    for f in order:
        report.files += 1
        parsed = f.parsed if f.parsed is not None else parse_file(f.text)
        if not f.rollback:
            report.statements_by_migration[f.id] = len(parsed.statements)
        report.statements += len(parsed.statements)
        ctx = Context(
            migration=f.id,
            path=f.path,
            transactional=f.transactional,
            version=version,
            version_known=source != "assumed",
            version_exact=source == "server",
            config=config,
            run=run,
            rollback_script=f.rollback,
            undo=_can_roll_back(parsed.statements),
        )
        raw: list[_Raw] = []
        for p in parsed.problems:
            raw.append(_Raw(p.rule, p.message, p.line, ""))
        if f.rollback:
            declared = declared_transactional(f.text)
            if declared is not None and declared != f.transactional:
                raw.append(_Raw("AN06", rollback_mode_message(declared, f.transactional),
                                declared_line(f.text), ""))
        for st in parsed.statements:
            for rule in (*by_kind.get(st.kind, ()), *every):
                _run(raw, rule.id, rule.check, (st, ctx), st)
            try:
                ctx.observe(st)
            except Exception as exc:  # a bug must not take the deploy down with it
                raw.append(_Raw("AN05", f"context update failed ({type(exc).__name__}: {exc})",
                                st.line, st.short()))
        for rule in finishing:
            _run(raw, rule.id, rule.finish, (ctx,), None)
        ctx.finish()
        _decide(report, f, raw, meta, known_ids, ignored, promoted, allow_destructive)
    position = {f.id + (".rollback" if f.rollback else ""): i
                for i, f in reversed(list(enumerate(order)))}
    report.findings.sort(key=lambda x: (position.get(_key(x), len(order)), x.line, x.rule))
    if probe is not None:
        _probe(report, probe)
    if stats is not None:
        _add_sizes(report, stats)
    report.duration_s = time.perf_counter() - started
    return report


def _seed(model: Catalog, applied: Sequence[SqlFile]) -> None:
    from . import effects

    model.new_origin = EXISTING
    try:
        for f in applied:
            if f.rollback:
                continue
            for st in parse_file(f.text).statements:
                try:
                    effects.apply(model, st)
                except Exception:  # noqa: S112 - a seed we cannot read only makes it less exact
                    continue
    finally:
        model.new_origin = NEW


def _key(f: Finding) -> str:
    return f.migration + (".rollback" if f.path.endswith(".rollback.sql") else "")


def _can_roll_back(statements: Sequence[Statement]) -> bool:
    return any(st.kind == "TransactionStmt" and st.node.get("kind") in (
        "TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO") for st in statements)


def _decide(report: Report, f: SqlFile, raw: list[_Raw], meta: dict[str, Rule],
            known_ids: set[str], ignored: set[str], promoted: set[str],
            allow_destructive: bool) -> None:
    approved, bad = read_approvals(f.text, known_ids)
    for b in bad:
        raw.append(_Raw("AN04", b.message, b.line, ""))
    reasons: dict[str, ApprovalLine] = {}
    for a in approved:
        reasons.setdefault(a.rule, a)
    fired: set[str] = set()
    for h in raw:
        if h.rule in ignored:
            continue
        r = meta[h.rule]
        fired.add(h.rule)
        blocking = (r.blocking if h.blocking is None else h.blocking) or h.rule in promoted
        approved_by = None
        if h.rule in reasons:
            approved_by, blocking = reasons[h.rule].reason, False
        elif allow_destructive and r.category == "data-loss":
            approved_by, blocking = DESTRUCTIVE_SWITCH, False
        report.findings.append(
            Finding(
                rule=h.rule,
                name=r.name,
                category=r.category,
                severity=r.severity,
                migration=f.id,
                path=f.path,
                line=h.line,
                message=h.message,
                safe_alternative=r.safe_alternative,
                blocking=blocking,
                approved_by=approved_by,
                table=h.table,
                lock=r.lock or None,
                statement=h.statement,
                data=None if h.subject is None else "unknown",
                subject=h.subject,
            )
        )
    for rule_id, a in reasons.items():
        record = Approval(f.id, f.path, a.line, rule_id, a.reason)
        (report.approvals if rule_id in fired else report.stale_approvals).append(record)
    for a in approved:
        if reasons[a.rule] is not a:  # a second approval of the same rule is stale by itself
            report.stale_approvals.append(Approval(f.id, f.path, a.line, a.rule, a.reason))


def _run(
    raw: list[_Raw],
    rule_id: str,
    fn: Callable[..., Iterable[Hit]],
    args: tuple[Any, ...],
    st: Statement | None,
) -> None:
    try:
        for hit in fn(*args):
            line = hit.line or (st.line if st else 1)
            text = hit.statement if hit.statement is not None else (st.short() if st else "")
            raw.append(_Raw(rule_id, hit.message, line, text, hit.table, hit.subject,
                            hit.blocking))
    except Exception as exc:  # a rule bug becomes a visible finding, never a crashed deploy
        line = st.line if st else 1
        raw.append(_Raw("AN05", f"rule {rule_id} failed: {type(exc).__name__}: {exc}", line,
                        st.short() if st else ""))


def _probe(report: Report, probe: DataProbe) -> None:
    """Data-aware blocking: a data-loss finding blocks only when there is data to lose.

    Only unapproved blocking findings with a subject are probed (the subject exists in the
    database); a probe that cannot tell leaves the finding blocking, as without a database."""
    answers: dict[DataSubject, tuple[bool | None, str]] = {}
    out = []
    for f in report.findings:
        if f.subject is None or not f.blocking or f.category != "data-loss":
            out.append(f)
            continue
        if f.subject not in answers:
            answers[f.subject] = probe.has_data(f.subject)
        has, detail = answers[f.subject]
        if has is False:
            out.append(dataclasses.replace(f, blocking=False, data="empty",
                                           message=f"{f.message}; {detail}: not blocking"))
        elif has is True:
            out.append(dataclasses.replace(f, data="rows", message=f"{f.message}; {detail}"))
        else:
            out.append(dataclasses.replace(
                f, data="unknown", message=f"{f.message}; {detail}: blocking to be safe"))
    report.findings = out


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
