"""`history`: the runs recorded in ``_migrate_job_run``, newest first; and keeping that history
through a restore.

Rows are read with ``to_jsonb`` so a database whose table predates a column still reads (the
column is simply absent). On a terminal the runs are a table; otherwise one JSON document on
stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from job.errors import ConfigError

if TYPE_CHECKING:
    import threading

    import psycopg

    from job.runtime import Context

DEFAULT_LIMIT = 20
MAX_LINE = 160


def history(ctx: Context, as_json: bool, limit: int | None, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    limit = DEFAULT_LIMIT if limit is None else limit
    if limit < 1:
        raise ConfigError(f"--limit {limit}: must be at least 1")
    conn = ctx.connect_admin(read_only=True)
    runs = read_runs(conn, limit)
    ctx.summary.extra["runs"] = len(runs)
    if as_json or not out.isatty():
        out.write(json.dumps({"database": ctx.summary.database,
                              "runs": [as_json_run(r) for r in runs]}, indent=2) + "\n")
    else:
        out.write(table(runs, ctx.summary.database) + "\n")


def read_runs(conn: psycopg.Connection[Any], limit: int | None = None) -> list[dict[str, Any]]:
    """Runs newest first, each a dict of its columns with ``started``/``finished`` datetimes."""
    exists = conn.execute("SELECT to_regclass('_migrate_job_run') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(
        "SELECT to_jsonb(r) FROM _migrate_job_run r "
        "ORDER BY r.started_at_utc DESC, r.finished_at_utc DESC NULLS LAST LIMIT %s",
        (limit,)).fetchall()
    runs = []
    for (row,) in rows:
        row["started"] = _ts(row.get("started_at_utc"))
        row["finished"] = _ts(row.get("finished_at_utc"))
        runs.append(row)
    return runs


def _ts(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def applied_ids(run: dict[str, Any]) -> list[str]:
    return [a["id"] if isinstance(a, dict) else str(a) for a in run.get("applied") or []]


def as_json_run(run: dict[str, Any]) -> dict[str, Any]:
    backup = None
    if run.get("backup_uri"):
        backup = {"uri": run["backup_uri"], "sha256": run.get("backup_sha256"),
                  "bytes": run.get("backup_bytes")}
    return {
        "id": run["id"],
        "started_at_utc": _iso(run["started"]),
        "finished_at_utc": _iso(run["finished"]),
        "command": run.get("command"),
        "phase": run.get("phase"),
        "outcome": run.get("outcome"),
        "exit_code": run.get("exit_code"),
        "applied": run.get("applied") or [],
        "reverted": run.get("reverted"),
        "undoes": run.get("undoes"),
        "duration_s": (run["duration_ms"] / 1000) if run.get("duration_ms") is not None else None,
        "user": run.get("username"),
        "host": run.get("hostname"),
        "image": run.get("image"),
        "job_version": run.get("job_version"),
        "backup": backup,
        "message": run.get("message"),
    }


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat(timespec="milliseconds") + "Z" if ts is not None else None


def describe(run: dict[str, Any]) -> str:
    """One line naming a run for prompts and messages: id, when, what, who, image."""
    when = run["started"].strftime("%Y-%m-%d %H:%M:%S UTC") if run.get("started") else "?"
    phase = f" --phase {run['phase']}" if run.get("phase") not in (None, "all") else ""
    image = f", image {run['image']}" if run.get("image") else ""
    return (f"run {short(run['id'])} ({run.get('command')}{phase}, {when}, by "
            f"{run.get('username')}@{run.get('hostname')}{image}, {run.get('outcome')})")


def short(run_id: str) -> str:
    return run_id[:8]


# -- the table -----------------------------------------------------------------------------------
_COLUMNS = ("RUN", "WHEN (UTC)", "COMMAND", "PHASE", "OUTCOME", "EXIT", "TOOK", "USER", "IMAGE",
            "CHANGES")


def table(runs: Sequence[dict[str, Any]], database: str | None) -> str:
    head = f"run history of {database or '?'}, newest first"
    if not runs:
        return head + "\nno runs recorded yet"
    rows = [_cells(r) for r in runs]
    fixed = len(_COLUMNS) - 1
    widths = [max(len(_COLUMNS[i]), *(len(row[i]) for row in rows)) for i in range(fixed)]
    room = max(20, MAX_LINE - sum(widths) - 2 * fixed)
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, [*widths, 0], strict=True))
             .rstrip()]
    for row in rows:
        changes = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        lines.append("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)),
                                changes]).rstrip())
    return "\n".join(lines)


def _cells(run: dict[str, Any]) -> list[str]:
    when = run["started"].strftime("%Y-%m-%d %H:%M:%S") if run.get("started") else "?"
    took = run.get("duration_ms")
    image = str(run.get("image") or "-")
    if len(image) > 28:  # the tag is the end that tells releases apart
        image = "…" + image[-27:]
    changes = []
    applied = applied_ids(run)
    if applied:
        changes.append("+" + ", +".join(applied))
    if run.get("reverted"):
        changes.append("-" + ", -".join(run["reverted"]))
    if run.get("undoes"):
        changes.append(f"(undoes {short(run['undoes'])})")
    return [short(run["id"]), when, str(run.get("command") or "?"), str(run.get("phase") or "-"),
            str(run.get("outcome") or "?"), str(run.get("exit_code") if run.get("exit_code")
                                                 is not None else "-"),
            _took(took), str(run.get("username") or "-")[:16], image,
            " ".join(changes) or "-"]


def _took(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms / 60000:.1f}m"


# -- keeping the history through a restore -------------------------------------------------------
@contextlib.contextmanager
def preserved(conn: psycopg.Connection[Any], mutex: threading.Lock, log: Any) -> Iterator[None]:
    """A restore brings the tables back to backup time, ``_migrate_job_run`` included; the runs
    recorded since are an audit trail, so they are put back afterwards."""
    from job import tracking

    with mutex:
        exists = conn.execute("SELECT to_regclass('_migrate_job_run') IS NOT NULL").fetchone()
        saved = conn.execute("SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]') FROM "
                             "_migrate_job_run r").fetchone() if exists and exists[0] else None
    yield
    if saved is None:
        return
    with mutex:
        tracking.ensure_tables(conn)
        cur = conn.execute(
            "INSERT INTO _migrate_job_run SELECT * FROM jsonb_populate_recordset("
            "NULL::_migrate_job_run, %s::jsonb) ON CONFLICT (id) DO NOTHING",
            (json.dumps(saved[0]),))
    log.info("history.preserved", runs_put_back=cur.rowcount)
