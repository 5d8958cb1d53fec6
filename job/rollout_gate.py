"""The rollout features' only contact with the safety gate, kept in one place.

Two uses, both through the gate's public API (``job.safety.analyze``) and post-processing of its
findings, so the gate's internals stay the gate's business:

- **Rollback scripts are gated too** (``gate_rollback_scripts``): before the first rollback
  script runs, every script of the chain is analysed as it will run (in its migration's
  transaction mode). A data-loss finding on a table that is empty or already gone cannot lose
  anything, so the database is asked before such a finding blocks a rollback (NOTES §12).
- **Phase hints** (``phase_hints``): a contract operation (DROP TABLE/COLUMN ...) in a *pre*
  migration breaks the old version that still serves traffic during the rollout; the hint
  suggests ``-- phase: post``. Info only: it never blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading

    import psycopg

    from job.migrations import Migration
    from job.settings import Settings

# Catalogue ids of operations that remove something the old application version may still use.
CONTRACT_RULES = frozenset({"DL01", "DL02", "DL03", "DL07", "DL09", "BC06"})
# Data-loss rules whose loss is confined to the finding's table: nothing is lost when it is empty.
_TABLE_CONFINED = frozenset({"DL01", "DL02", "DL05", "DL06", "DL08"})
# Findings that mean "this script cannot run as written" (exit 2) rather than "dangerous" (6).
_UNRUNNABLE_CATEGORIES = frozenset({"analysis", "transaction"})


@dataclasses.dataclass(frozen=True)
class ScriptToGate:
    migration: str  # id of the migration the script rolls back
    path: str  # the rollback script
    text: str
    transactional: bool  # its migration's mode: the rollback runs in it (as yoyo does)


@dataclasses.dataclass
class GateResult:
    findings: list[dict[str, Any]]
    unrunnable: list[dict[str, Any]]  # blocking, exit 2: syntax, transaction mode
    dangerous: list[dict[str, Any]]  # blocking, exit 6: unapproved data loss


def gate_rollback_scripts(settings: Settings, scripts: Sequence[ScriptToGate],
                          conn: psycopg.Connection[Any] | None,
                          mutex: threading.Lock | None = None) -> GateResult:
    from job import safety
    from job.errors import ConfigError

    try:
        config = safety.load_config(settings.config_dir)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    files = [safety.SqlFile(id=s.migration, path=s.path, text=s.text,
                            transactional=s.transactional) for s in scripts]
    report = safety.analyze(files, server_version_num=conn.info.server_version if conn else None,
                            stats=None, config=config,
                            allow_destructive=settings.allow_destructive)
    findings = [f.to_json() for f in report.findings]
    if conn is not None:
        _release_empty_tables(findings, conn, mutex)
    blocking = [f for f in findings if f["blocking"]]
    return GateResult(
        findings=findings,
        unrunnable=[f for f in blocking if f["category"] in _UNRUNNABLE_CATEGORIES],
        dangerous=[f for f in blocking if f["category"] not in _UNRUNNABLE_CATEGORIES])


def _release_empty_tables(findings: list[dict[str, Any]], conn: psycopg.Connection[Any],
                          mutex: threading.Lock | None) -> None:
    """A table-confined data-loss finding stops blocking when the table has no row to lose."""
    import contextlib

    tables = sorted({f["table"] for f in findings
                     if f["blocking"] and f["rule"] in _TABLE_CONFINED and f.get("table")})
    if not tables:
        return
    with mutex if mutex is not None else contextlib.nullcontext():
        state = {t: _table_state(conn, t) for t in tables}
    for f in findings:
        if not (f["blocking"] and f["rule"] in _TABLE_CONFINED and f.get("table")):
            continue
        found = state.get(f["table"])
        if found in ("empty", "absent"):
            f["blocking"] = False
            f["approved_by"] = (f"table {f['table']} is empty" if found == "empty"
                                else f"table {f['table']} does not exist")


def _table_state(conn: psycopg.Connection[Any], name: str) -> str:
    """``absent``, ``empty``, ``rows`` or ``unknown`` (no privilege, odd name: stay blocking)."""
    from psycopg import sql

    try:
        quoted = ".".join(f'"{part}"' for part in name.split("."))
        row = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE c.oid = to_regclass(%s)", (quoted,)).fetchone()
        if row is None:
            return "absent"
        probe = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.{})").format(
            sql.Identifier(row[0]), sql.Identifier(row[1]))
        has_row = conn.execute(probe).fetchone()
        return "rows" if has_row and has_row[0] else "empty"
    except Exception:
        return "unknown"


# -- phase hints -------------------------------------------------------------------------------
def phase_hints(report: dict[str, Any] | None, pending: Iterable[Migration]
                ) -> list[dict[str, Any]]:
    """Contract operations found in pending *pre* migrations, as info-level suggestions."""
    if not report:
        return []
    phase_of = {m.id: m.phase for m in pending}
    hints: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for f in report.get("findings", []):
        key = (str(f.get("migration")), int(f.get("line") or 0))
        if f.get("rule") not in CONTRACT_RULES or phase_of.get(key[0]) != "pre" or key in seen:
            continue
        seen.add(key)
        hints.append({
            "rule": f["rule"], "migration": key[0], "path": f.get("path"), "line": key[1],
            "message": f"{f.get('message')}: the old version still serves traffic while a pre "
                       "migration runs; if it still uses this, move the statement to a post-deploy "
                       "migration (`-- phase: post`, docs/rollout.md)",
        })
    return hints


def log_phase_hints(log: Any, report: dict[str, Any] | None, pending: Iterable[Migration]
                    ) -> None:
    for h in phase_hints(report, pending):
        log.info("safety.phase_hint", **h)


def render_hints(hints: Sequence[dict[str, Any]]) -> list[str]:
    return [f"  hint     {h['rule']} {h['path']}:{h['line']}: consider `-- phase: post` "
            "(contract step in a pre migration)" for h in hints]
