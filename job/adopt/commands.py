"""``baseline`` and ``import``: adopt a database built by something else, top to bottom.

Both follow the same steps: connect -> take our migration lock (and the old tool's) -> read
what is there (schema, old files, old history, our tracking tables) -> decide what to write and
what to mark -> print it -> confirm (``--yes``, or a prompt on a TTY) -> write the files -> mark
them applied in one transaction -> ``_schema_adopted``. ``--dry-run`` stops after printing and
takes no lock. Written files are deterministic, so running the same command against a second
environment finds identical files and only marks (and refuses when they differ).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from job import migrations, tracking
from job.adopt.common import slug
from job.errors import ConfigError, IntegrityRefusal

if TYPE_CHECKING:
    import psycopg

    from job.adopt.convert import Converted
    from job.adopt.model import History, Importer, SourceMigration, TableName
    from job.runtime import Context

Confirm = Callable[[str], None]

_BASELINE_NOTE = (
    "-- Applied to an empty database it recreates that schema; on the database it was taken\n"
    "-- from (and others with the same schema) it is marked as applied, never run.\n"
)


@dataclass
class Output:
    """A file to write (or found already written, identical) and whether to mark it."""

    id: str
    text: str
    rollback: str | None
    mark: bool
    source: str = ""  # the old tool's key for it
    origin: str = ""  # what it came from, for the mapping
    flags: list[str] = field(default_factory=list)
    exists: bool = False  # identical file already in the directory


# -- baseline ----------------------------------------------------------------------------------
def baseline(ctx: Context, *, name: str, schemas: Sequence[str], force: bool, dry_run: bool,
             confirm: Confirm) -> None:
    from job.adopt import schema_dump

    directory = Path(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=dry_run)
    if not dry_run:
        ctx.take_lock()
    with ctx.lock_mutex:
        state = tracking.read_state(conn)
        # Only the same baseline, marked by an earlier run of this command, may be there.
        others = [r for r in state.applied if r.id.partition("_")[2] != slug(name)]
        if others and not force:
            raise ConfigError(
                f"{len(others)} migration(s) already applied on this database (newest "
                f"{others[-1].id}): a baseline adopts a database this job did not "
                "build. Nothing was written. Pass --force to write one anyway (it then "
                "replaces the earlier migrations: see docs/adopting.md).")
        managed = schema_dump.managed_schemas(conn, schemas)
        assert ctx.params is not None
        dump = schema_dump.take(conn, ctx.settings, ctx.params, managed)
    existing = _existing(directory)
    out = _baseline_output(dump, slug(name), existing, force, conn, kind="baseline")
    _print_baseline(ctx, out, dump, directory)
    if dry_run:
        print(f"\n-- {out.id}.sql (dry run: nothing written or marked) --\n{out.text}", end="")
        return
    confirm(f"baseline: write {directory / (out.id + '.sql')} and mark it applied on "
            f"{ctx.summary.database}")
    written, marked = _write_and_mark(ctx, directory, [out], how="baseline",
                                      comment=f"baseline of {', '.join(dump.schemas)}")
    ctx.summary.extra["baseline"] = {"id": out.id, "written": bool(written),
                                     "marked": bool(marked), "schemas": list(dump.schemas)}
    _schema_adopted(ctx, marked)
    print("\nDone. Commit " + str(directory / f"{out.id}.sql") + "; fresh databases get this "
          "schema from it, this one is marked. `migrate-job new NAME` now builds on it.")
    if force and existing:
        print(f"--force: the {len(existing)} migration file(s) already in {directory} would run "
              "on a fresh database as well; delete the ones this baseline replaces.")


def _existing(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        return {}
    return migrations.read(str(directory)).by_id()


def _baseline_output(dump: Any, name_slug: str, existing: dict[str, Any], force: bool,
                     conn: psycopg.Connection[Any], *, kind: str,
                     header: str = "") -> Output:
    from job.adopt.convert import analyse

    body = analyse(dump.sql, True, conn.info.server_version)
    schemas = ", ".join(dump.schemas)
    head = [f"-- {kind}: the schema of {schemas}, as pg_dump --schema-only saw it"]
    if header:
        head.append(header)
    text = "\n".join(head) + "\n" + _BASELINE_NOTE
    if not body.transactional:
        text += "-- transactional: false\n" + "".join(f"--   {r}\n" for r in body.reasons)
    text += "\n" + body.body
    same = [mid for mid in existing if mid.partition("_")[2] == name_slug]
    if same:
        mid = same[0]
        current = Path(existing[mid].path).read_text(encoding="utf-8")
        if current != text:
            diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(),
                                             existing[mid].path, "this database", n=1,
                                             lineterm=""))
            shown = "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else "")
            print(shown)
            raise IntegrityRefusal(
                f"this database's schema differs from the committed baseline {existing[mid].path}"
                f" (diff above, {len(diff)} line(s)): it was not built like the database the "
                "baseline came from. Nothing was marked. Bring the schema in line, or take this "
                "environment's differences into a new migration first.", file=existing[mid].path)
        return Output(mid, text, None, mark=True, source="schema", exists=True)
    if existing and not force:
        raise ConfigError(
            f"the migrations directory already has {len(existing)} migration(s) (e.g. "
            f"{sorted(existing)[0]}): a {kind} must be the first migration. Nothing was "
            "written. Move them aside, or pass --force.")
    # Next to existing files (--force) it must sort after them, as `new` names them.
    mid = f"{datetime.now(UTC):%Y%m%d%H%M%S}_{name_slug}" if existing else f"0001_{name_slug}"
    return Output(mid, text, None, mark=True, source="schema")


def _print_baseline(ctx: Context, out: Output, dump: Any, directory: Path) -> None:
    lines = [f"baseline of {ctx.summary.database}: schema(s) {', '.join(dump.schemas)}, "
             f"{dump.statements} statement(s)"]
    if dump.extensions:
        lines.append(f"  extensions (created if missing): {', '.join(dump.extensions)}")
    if dump.excluded:
        lines.append(f"  left out (tracking tables): {', '.join(dump.excluded)}")
    where = directory / f"{out.id}.sql"
    lines.append(f"  {'already written, identical' if out.exists else 'write'}: {where}")
    lines.append(f"  mark applied here: {out.id}")
    print("\n".join(lines))


# -- import ------------------------------------------------------------------------------------
def import_history(ctx: Context, *, tool: str, source: str | None, table: str | None,
                   schemas: Sequence[str], dry_run: bool, confirm: Confirm) -> None:
    from job.adopt import importer, oldlock

    imp = importer(tool)
    root = Path(source or imp.default_source)
    files: list[SourceMigration] = []
    if source is not None or not imp.code_only or root.is_dir():
        files = imp.read_files(root)
    directory = Path(ctx.settings.migrations_dir)
    conn = ctx.connect_admin(read_only=dry_run)
    if not dry_run:
        ctx.take_lock()
    target = _table_name(conn, table or imp.default_table)
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    with ctx.lock_mutex, oldlock.hold(conn, imp.lock(target, str(row[0])), tool):
        history = imp.read_history(conn, target, files)
        if not history.exists:
            raise ConfigError(f"{target} does not exist: this database has no {tool} history "
                              "(wrong database, or pass --table SCHEMA.NAME)")
        state = tracking.read_state(conn)
        existing = _existing(directory)
        if imp.code_only or any(f.up is None for f in files) or any(
                r.code for r in history.recorded):
            outputs = _by_baseline(ctx, conn, imp, history, files, target, schemas, existing)
        else:
            outputs = _by_conversion(conn, imp, history, files, root, existing)
    _refuse_other_applied(state, outputs)
    _print_mapping(ctx, imp, root, target, history, files, outputs, directory)
    ctx.summary.extra["import"] = {
        "tool": tool, "table": str(target), "files": len(outputs),
        "marked": sum(o.mark for o in outputs), "pending": sum(not o.mark for o in outputs)}
    if dry_run:
        print("(dry run: nothing written or marked)")
        return
    write = [o for o in outputs if not o.exists]
    confirm(f"import from {tool}: write {len(write)} file(s) to {directory} and mark "
            f"{sum(o.mark for o in outputs)} applied on {ctx.summary.database}")
    written, marked = _write_and_mark(ctx, directory, outputs, how="imported",
                                      comment=f"imported from {tool} ({target})")
    ctx.summary.extra["import"].update(written=len(written), newly_marked=len(marked))
    _schema_adopted(ctx, marked)
    print(_next_steps(imp, directory, outputs))


def _table_name(conn: psycopg.Connection[Any], text: str) -> TableName:
    from job.adopt.model import TableName

    schema, dot, name = text.rpartition(".")
    if not dot:
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = str(row[0]) if row and row[0] else "public"
    if not name:
        raise ConfigError(f"--table {text!r}: expected NAME or SCHEMA.NAME")
    return TableName(schema, name)


def _by_conversion(conn: psycopg.Connection[Any], imp: Importer, history: History,
                   files: Sequence[SourceMigration], root: Path,
                   existing: dict[str, Any]) -> list[Output]:
    from job.adopt.convert import convert

    recorded = {r.key for r in history.recorded}
    width = max(4, len(str(len(files))))
    outputs: list[Output] = []
    previous: str | None = None
    for i, src in enumerate(files, start=1):
        mid = f"{i:0{width}d}_{slug(src.name)}"
        c = convert(src, mid, previous, tool=imp.tool, root=str(root),
                    server_version=conn.info.server_version)
        outputs.append(_output(c, src.key in recorded, existing))
        outputs[-1].origin = f"{os.path.relpath(src.path, root)} ({src.key})"
        previous = mid
    # Mark in the order the old tool applied them, so `status` reads like its history did.
    rank = {r.key: i for i, r in enumerate(history.recorded)}
    ordered = sorted((o for o in outputs if o.mark), key=lambda o: rank.get(o.source, 0))
    return ordered + [o for o in outputs if not o.mark]


def _output(c: Converted, mark: bool, existing: dict[str, Any]) -> Output:
    flags = []
    if not c.transactional:
        flags.append("transactional: false")
    if c.rollback:
        flags.append("+rollback")
    flags.extend(c.notes)
    out = Output(c.id, c.text, c.rollback, mark, source=c.source.key, flags=flags)
    prefix = c.id.split("_", 1)[0]
    for mid, m in existing.items():
        if mid.split("_", 1)[0] != prefix:
            continue
        rollback_path = Path(m.rollback_path)
        same = (mid == c.id and Path(m.path).read_text(encoding="utf-8") == c.text and (
            (rollback_path.read_text(encoding="utf-8") if rollback_path.exists() else None)
            == c.rollback))
        if not same:
            raise ConfigError(
                f"{m.path} already exists and is not what importing "
                f"{os.path.basename(c.source.path)} writes ({c.id}.sql): the migrations "
                "directory already has migrations that clash. Nothing was written or marked. "
                "Import into an empty directory (MIGRATE_MIGRATIONS_DIR / --migrations-dir).",
                file=m.path)
        out.exists = True
    return out


def _by_baseline(ctx: Context, conn: psycopg.Connection[Any], imp: Importer, history: History,
                 files: Sequence[SourceMigration], target: TableName, schemas: Sequence[str],
                 existing: dict[str, Any]) -> list[Output]:
    from job.adopt import schema_dump

    recorded = {r.key for r in history.recorded}
    unapplied = [f for f in files if f.key not in recorded]
    if unapplied:
        names = ", ".join(os.path.basename(f.path) for f in unapplied[:10])
        raise ConfigError(
            f"{len(unapplied)} {imp.tool} migration(s) are not applied on this database: "
            f"{names}. A baseline of this schema would leave them out for good. Apply them with "
            f"`{imp.deploy_command}` first (or delete them if they are abandoned), then import. "
            "Nothing was written or marked.")
    managed = schema_dump.managed_schemas(conn, schemas)
    extra = [target.name, target.name + "_lock"]
    assert ctx.params is not None
    dump = schema_dump.take(conn, ctx.settings, ctx.params, managed, extra_tables=extra)
    why = ("its migrations are code" if imp.code_only
           else "its history includes migrations written in code")
    header = (f"-- imported from {imp.tool} ({why}: they cannot be converted to SQL, so the "
              f"schema they built is the baseline)")
    out = _baseline_output(dump, slug(f"{imp.tool} baseline"), existing, False, conn,
                           kind="baseline", header=header)
    out.origin = f"the current schema ({len(history.recorded)} {imp.tool} migration(s) applied)"
    return [out]


def _refuse_other_applied(state: tracking.State, outputs: Sequence[Output]) -> None:
    ours = {o.id for o in outputs}
    other = [r.id for r in state.applied if r.id not in ours]
    if other:
        raise ConfigError(
            f"this database already has {len(other)} migrate-job migration(s) applied that are "
            f"not part of this import (e.g. {other[0]}): it was adopted already. Nothing was "
            "written or marked.")


def _print_mapping(ctx: Context, imp: Importer, root: Path, target: TableName, history: History,
                   files: Sequence[SourceMigration], outputs: Sequence[Output],
                   directory: Path) -> None:
    lines = [f"import from {imp.tool}: {len(files)} file(s) in {root}, history {target} "
             f"({len(history.recorded)} recorded as applied) -> {directory}"]
    for o in outputs:
        state = "mark   " if o.mark else "pending"
        written = " (already written, identical)" if o.exists else ""
        lines.append(f"  {state} {o.id}.sql <- {o.origin or o.source}{written}")
        for flag in o.flags:
            lines.append(f"            {flag}")
    keys = {f.key for f in files}
    lacking = [r for r in history.recorded if r.key not in keys and not r.code]
    if lacking and not any(f.up is None for f in files) and not imp.code_only:
        lines.append(f"recorded in {target} but no file in {root} ({len(lacking)}): a fresh "
                     "database will not get them; consider `baseline` instead:")
        lines.extend(f"  {r.label}" for r in lacking)
    pending = [o for o in outputs if not o.mark]
    if pending:
        lines.append(f"{len(pending)} file(s) not recorded as applied: `migrate-job run` will "
                     "apply them")
    lines.extend(f"note: {n}" for n in history.notes)
    if lacking:
        ctx.log.warning("import.recorded_without_file", tool=imp.tool,
                        migrations=[r.label for r in lacking[:50]], count=len(lacking))
    print("\n".join(lines))


def _next_steps(imp: Importer, directory: Path, outputs: Sequence[Output]) -> str:
    steps = [
        f"Commit {directory}/ ({len(outputs)} migration(s)).",
        f"Deploy with `migrate-job run` (Helm hook, ECS task or CI step) instead of "
        f"`{imp.deploy_command}`; see docs/adopting.md.",
        f"Every other database built by {imp.tool}: run the same `migrate-job import --from "
        f"{imp.tool} --yes` against it; it finds these files and only marks what that "
        "database's history says.",
        "New migrations: `migrate-job new NAME`. The old tool's files and history table are "
        "left untouched; remove them once no environment needs them.",
    ]
    return "\nNext steps:\n" + "\n".join(f"  {i}. {s}" for i, s in enumerate(steps, 1))


# -- shared ------------------------------------------------------------------------------------
def _write_and_mark(ctx: Context, directory: Path, outputs: Sequence[Output], *, how: str,
                    comment: str) -> tuple[list[str], list[str]]:
    """Write what is missing, then mark, in one transaction, what is not marked yet."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for o in outputs:
        if o.exists:
            continue
        _write_atomic(directory / f"{o.id}.sql", o.text)
        if o.rollback is not None:
            _write_atomic(directory / f"{o.id}.rollback.sql", o.rollback)
        written.append(o.id)
    ctx.log.info("adopt.written", directory=str(directory), count=len(written))
    known = migrations.read(str(directory)).by_id()
    conn = ctx.lock_conn
    assert conn is not None
    with ctx.lock_mutex:
        tracking.ensure_tables(conn)
        applied = tracking.read_state(conn).ids()
        todo = [known[o.id] for o in outputs if o.mark and o.id not in applied]
        base = tracking.now_utc()
        with conn.transaction():
            for i, m in enumerate(todo):
                params = tracking.record_params(ctx.settings, m, operation="mark", how=how,
                                                comment=comment)
                # Distinct, increasing times keep the marking order in `status`.
                params["now"] = base + timedelta(microseconds=i)
                conn.execute(tracking.RECORD_SQL, params)
    ctx.log.info("adopt.marked", how=how, count=len(todo),
                 first=todo[0].id if todo else None, last=todo[-1].id if todo else None)
    return written, [m.id for m in todo]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _schema_adopted(ctx: Context, marked: Sequence[str]) -> None:
    """THE single place where "the schema was adopted" completes, for baseline and import:
    the current schema becomes the expected one (job/drift), so the next ``run`` compares
    against what was adopted rather than reporting it as drift."""
    from job import drift

    if ctx.lock_conn is not None:
        with ctx.lock_mutex:
            drift.record(ctx.lock_conn, ctx.settings, ctx.log,
                         f"{ctx.command}: adopted {len(marked)} migration(s)", run_id=ctx.run_id)
    ctx.log.info("adopt.schema_adopted", marked=len(marked), command=ctx.command)
