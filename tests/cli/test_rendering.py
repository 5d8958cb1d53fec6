"""Rendering without a database: the console view of events, the bound on JSON lines, the
summary block. (The terminal tests show the same through a real pty.)"""

from __future__ import annotations

import io
import json

import pytest
import structlog

from job import report
from job.console import Console, error_block, summary_block


def _render(*events: dict, live: bool = False, width: int = 160) -> str:
    out = io.StringIO()
    c = Console(out, live=live, color=False, width=width)
    for e in events:
        with pytest.raises(structlog.DropEvent):
            c(None, e.get("level", "info"), dict(e))
    return out.getvalue()


def test_heartbeats_rewrite_the_migration_line_on_a_terminal():
    raw = _render(
        {"event": "migration.start", "migration": "0004_idx", "transactional": False},
        {"event": "migration.heartbeat", "migration": "0004_idx", "elapsed_s": 10.2,
         "progress": {"command": "CREATE INDEX CONCURRENTLY",
                      "phase": "building index: scanning table", "percent": 45.0,
                      "done": 1234, "total": 2742, "unit": "blocks"}},
        {"event": "migration.applied", "migration": "0004_idx", "duration_s": 21.5},
        live=True)
    assert raw == (
        "applying 0004_idx (non-transactional) ..."
        "\r\x1b[Kapplying 0004_idx ... 10.2 s, building index: scanning table 45% "
        "(1,234 of 2,742 blocks)"
        "\r\x1b[Kapplying 0004_idx ... ok (21.5 s)\n")


def test_heartbeats_are_lines_of_their_own_when_not_on_a_terminal():
    raw = _render(
        {"event": "migration.start", "migration": "0001_sleep"},
        {"event": "migration.heartbeat", "migration": "0001_sleep", "elapsed_s": 10.0,
         "wait_event": "Lock:relation",
         "blocked_by": [{"pid": 42, "application_name": "psql", "state": "idle in transaction",
                         "xact_age_s": 95.0}]},
        {"event": "migration.applied", "migration": "0001_sleep", "duration_s": 12.0})
    assert raw.splitlines() == [
        "applying 0001_sleep ...",
        "  0001_sleep still running: 10.0 s, waiting on Lock:relation, blocked by pid 42 (psql,"
        " idle in transaction, transaction open 1 min 35 s)",
        "applying 0001_sleep ... ok (12.0 s)",
    ]


def test_non_transactional_failure_says_what_stayed_applied():
    lines = error_block({
        "event": "run.failed", "reason": "migration_failed", "exit_code": 8,
        "error": "migration 0005_x failed at m/0005_x.sql:3: [42P01] relation \"t\" does not "
                 "exist (2 earlier statement(s) of this non-transactional migration stayed "
                 "applied; INVALID index(es) left behind: public.i (DROP INDEX CONCURRENTLY "
                 "before retrying))",
        "migration": "0005_x", "file": "m/0005_x.sql", "line": 3, "sqlstate": "42P01",
        "statement": "CREATE INDEX CONCURRENTLY i2 ON t (a)",
        "executed_statements": ["CREATE INDEX CONCURRENTLY i ON u (a)", "SELECT 1"],
        "invalid_indexes": ["public.i"]})
    assert lines[0] == "✗ run: migration 0005_x failed (exit 8)"
    assert lines[1].startswith("  next:    fix m/0005_x.sql:3, then run again: 2 earlier")
    text = "\n".join(lines)
    assert '  error:   [42P01] relation "t" does not exist' in text
    assert "  ran:     2 statement(s) stayed applied: CREATE INDEX CONCURRENTLY i ON u (a)" in text
    assert "  invalid: public.i (DROP INDEX CONCURRENTLY before retrying)" in text


def test_lock_timeout_failure_names_the_blocker_and_what_to_do():
    lines = error_block({
        "event": "run.failed", "reason": "migration_failed", "exit_code": 8,
        "error": "migration 0002 failed at f.sql:1: [55P03] canceling statement due to lock "
                 "timeout", "migration": "0002", "file": "f.sql", "line": 1, "sqlstate": "55P03",
        "blockers": [{"pid": 7, "application_name": "report", "state": "idle in transaction",
                      "xact_age_s": 30.0, "query": "SELECT"}]})
    text = "\n".join(lines)
    assert "another transaction held a lock 0002 needs" in lines[1]
    assert "  blocked: pid 7 (report, idle in transaction, transaction open 30.0 s)" in text


def test_every_error_block_starts_with_what_to_do_next():
    for reason in ("config_error", "database_unavailable", "lock_timeout", "integrity_refused",
                   "safety_refused", "backup_failed", "verification_failed"):
        lines = error_block({"event": "run.failed", "reason": reason, "exit_code": 2,
                             "error": "something went wrong"})
        assert lines[1].startswith("  next:    "), (reason, lines)
        assert "see the message below" not in lines[1], reason


def test_summary_block_has_what_was_applied_how_long_and_the_backup():
    text = summary_block({
        "command": "run", "outcome": "applied", "exit_code": 0, "duration_s": 3.21,
        "database": "app@db:5432/app",
        "applied": [{"id": "0001_a", "duration_s": 0.012}, {"id": "0002_longer", "duration_s": 2.5}],
        "pending": [],
        "backup": {"uri": "s3://b/app/app-1.dump", "bytes": 1234567, "sha256": "ab" * 32}})
    assert text.splitlines() == [
        "run: applied 2 migrations in 3.2 s (exit 0)",
        "  database  app@db:5432/app",
        "  applied   0001_a          12 ms",
        "            0002_longer     2.5 s",
        "  pending   none",
        "  backup    s3://b/app/app-1.dump",
        "            1.2 MB, sha256 abababababababab…",
    ]


def test_summary_block_outside_a_repository_never_says_none():
    text = summary_block({"command": "run", "outcome": "config_error", "exit_code": 2,
                          "duration_s": 0.01, "database": None, "applied": [], "pending": [],
                          "backup": None, "message": "migrations directory ./migrations: not "
                                                     "found"}, with_message=True)
    assert "None" not in text
    assert "  database  not reached" in text
    assert "message   migrations directory ./migrations: not found" in text


def test_unknown_events_are_shown_compactly_without_reprs():
    raw = _render({"event": "drift.detected", "level": "warning", "objects": ["a", "b"],
                   "detail": {"table": "t", "column": None}, "hint": None})
    assert raw == "warning: drift.detected: objects a, b; detail table t\n"


def test_bound_keeps_a_line_under_the_limit_and_says_what_was_cut():
    data = {"event": "migrate.summary", "outcome": "applied", "exit_code": 0,
            "applied": [{"id": f"{i:04d}_" + "x" * 40, "duration_s": 0.01} for i in range(2000)],
            "message": "m" * 50_000}
    out = report.bound(data, 16 * 1024)
    assert len(json.dumps(out).encode()) <= 16 * 1024
    assert out["outcome"] == "applied" and out["exit_code"] == 0
    assert any(t.startswith("applied: 2000 items, first ") for t in out["truncated"])
    assert any(t.startswith("message: 50000 chars") for t in out["truncated"])
    assert report.bound({"event": "x", "a": 1}, 100) == {"event": "x", "a": 1}


def test_termination_message_fits_in_4_kib():
    big = {"outcome": "safety_refused", "exit_code": 6, "command": "run", "message": "m" * 9000,
           "error": {"blocking": [{"rule": "DL02", "message": "x" * 500}] * 50}}
    text = report.termination_json(big)
    assert len(text.encode()) <= 4000
    data = json.loads(text)
    assert data["exit_code"] == 6 and data["truncated"]


def test_dedupe_keeps_each_fact_once():
    message, details = report.dedupe_error(
        'migration 1 failed at f:2: [23505] duplicate key DETAIL: Key (id)=(1) already exists. '
        'HINT: fix it', {"server_message": "duplicate key", "detail": "Key (id)=(1) already "
                         "exists.", "hint": "fix it", "statement": None, "sqlstate": "23505"})
    assert message == "migration 1 failed at f:2: [23505] duplicate key"
    assert details == {"detail": "Key (id)=(1) already exists.", "hint": "fix it",
                       "sqlstate": "23505"}
