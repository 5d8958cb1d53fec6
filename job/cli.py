"""Command line: parse flags into Settings, call one function per command. Nothing else."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from job import __version__

# Flags shared by every command; each has its CONTRACT environment variable (flags win).
_COMMON = [
    ("--database-url", "database_url", "PostgreSQL URL (MIGRATE_DATABASE_URL / DATABASE_URL)"),
    ("--migrations-dir", "migrations_dir", "yoyo-format migrations (MIGRATE_MIGRATIONS_DIR)"),
    ("--secret-source", "secret_source", "env|file|aws|azure (MIGRATE_SECRET_SOURCE)"),
    ("--db-wait", "db_wait", "how long to wait for the database (MIGRATE_DB_WAIT)"),
    ("--lock-wait", "lock_wait", "how long to wait for the migration lock (MIGRATE_LOCK_WAIT)"),
    ("--lock-timeout", "lock_timeout", "lock_timeout of migration statements"),
    ("--lock-retries", "lock_retries", "retries after lock_timeout (MIGRATE_LOCK_RETRIES)"),
    ("--statement-timeout", "statement_timeout", "statement_timeout of migration statements"),
    ("--tx-mode", "tx_mode", "each|all (MIGRATE_TX_MODE)"),
    ("--backup", "backup", "none|file:///path|s3://bucket/prefix|azblob://account/container/prefix"),
    ("--on-unknown", "on_unknown", "warn|fail (MIGRATE_ON_UNKNOWN)"),
    ("--log-format", "log_format", "json|console (MIGRATE_LOG_FORMAT)"),
    ("--log-level", "log_level", "debug|info|warning|error (MIGRATE_LOG_LEVEL)"),
    ("--termination-log", "termination_log", "summary file (MIGRATE_TERMINATION_LOG)"),
    ("--config-dir", "config_dir", "where migrate-job.toml / pyproject.toml live"),
]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    for flag, dest, help_text in _COMMON:
        common.add_argument(flag, dest=dest, default=None, help=help_text)
    common.add_argument("--allow-destructive", dest="allow_destructive", action="store_const",
                        const="true", default=None,
                        help="approve every destructive finding (MIGRATE_ALLOW_DESTRUCTIVE)")

    parser = argparse.ArgumentParser(
        prog="migrate-job", description="Deploy-time PostgreSQL migrations.", parents=[common])
    parser.add_argument("--version", action="version", version=f"migrate-job {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="the deploy pipeline (default)")
    _phase_flag(p)
    p = sub.add_parser("exec", parents=[common],
                       help="entrypoint mode: run, then replace this process with CMD "
                            "(exec [--phase pre] -- CMD ARG...)")
    _phase_flag(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARG...")
    p = sub.add_parser("status", parents=[common],
                       help="applied/pending/changed; exit 10 if pending")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("history", parents=[common], help="the recorded runs, newest first")
    p.add_argument("--json", action="store_true", help="JSON even on a terminal")
    p.add_argument("--limit", type=int, default=None, help="how many runs (default 20)")
    p = sub.add_parser("plan", parents=[common], help="what run would do (read-only)")
    _phase_flag(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json")
    fmt.add_argument("--markdown", dest="fmt", action="store_const", const="markdown")
    p = sub.add_parser("lint", parents=[common], help="offline safety analysis of files")
    p.add_argument("paths", nargs="+")
    p.add_argument("--format", dest="fmt", choices=["text", "json", "markdown", "github", "sarif"],
                   default="text")
    p.add_argument("--json", dest="fmt", action="store_const", const="json")
    p.add_argument("--markdown", dest="fmt", action="store_const", const="markdown")
    p.add_argument("--pg-version", type=int, default=None, help="server major version, e.g. 16")
    p.add_argument("--assume-applied", default=None, metavar="ID",
                   help="treat the migrations up to ID (run order) as applied already")
    p = sub.add_parser("new", parents=[common], help="create a migration and its rollback")
    p.add_argument("name")
    p = sub.add_parser("rollback", parents=[common], help="roll back the last applied migrations")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--count", type=int, default=None)
    grp.add_argument("--to", default=None, help="roll back until ID is the newest applied")
    p.add_argument("--yes", action="store_true")
    p = sub.add_parser("undo", parents=[common],
                       help="revert what one run applied (default: the last run that applied "
                            "something)")
    p.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID",
                   help="a run id or a unique prefix of it (see `history`)")
    p.add_argument("--restore", action="store_true",
                   help="restore the backup that run took instead of its rollback scripts")
    p.add_argument("--yes", action="store_true")
    for name, help_text in (("mark", "record migrations as applied without running them"),
                            ("unmark", "forget applied migrations without rolling back"),
                            ("accept-changes", "re-record checksums of reviewed edits")):
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("ids", nargs="+", metavar="ID")
        p.add_argument("--yes", action="store_true")
    _adopt_parsers(sub, common)
    sub.add_parser("backup", parents=[common], help="take and verify a backup now")
    p = sub.add_parser("restore", parents=[common], help="restore a backup")
    p.add_argument("uri")
    p.add_argument("--yes", action="store_true")
    sub.add_parser("demo", parents=[common], help="run against an embedded PostgreSQL")
    # Its own flags are parsed by job.ecs, imported only when this command runs.
    p = sub.add_parser("ecs-run", add_help=False,
                       help="run the migration ECS task and wait for it (ecs-run --help)")
    p.add_argument("ecs_args", nargs=argparse.REMAINDER)
    return parser


def _adopt_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    from job.adopt import IMPORTERS

    def shared(p: argparse.ArgumentParser) -> None:
        p.add_argument("--schema", dest="schemas", action="append", default=[],
                       metavar="SCHEMA", help="schema to baseline (repeatable; default: the "
                       "current schema)")
        p.add_argument("--dry-run", action="store_true", help="print, change nothing")
        p.add_argument("--yes", action="store_true")

    p = sub.add_parser("baseline", parents=[common],
                       help="write the current schema as a migration and mark it applied")
    p.add_argument("--name", default="baseline", help="migration name (default: baseline)")
    p.add_argument("--force", action="store_true",
                   help="even though migrations are applied or files exist")
    shared(p)
    p = sub.add_parser("import", parents=[common],
                       help="convert another tool's history and mark what it applied")
    p.add_argument("--from", dest="tool", required=True, choices=list(IMPORTERS))
    p.add_argument("--source", default=None, help="the tool's migrations directory")
    p.add_argument("--table", default=None, help="its history table, [SCHEMA.]NAME")
    shared(p)


def _phase_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--phase", dest="phase", choices=["pre", "post", "all"], default=None,
                   help="pre: before the new version starts; post: after it is live; all "
                        "(MIGRATE_PHASE, default all)")


def _ecs_run(argv: Sequence[str]) -> int:
    from job import ecs

    parser = argparse.ArgumentParser(prog="migrate-job ecs-run",
                                     description="Run the migration ECS task and wait for it.")
    ecs.add_arguments(parser)
    return ecs.main(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ecs-run"]:
        return _ecs_run(argv[1:])
    args = build_parser().parse_args(argv)
    command = args.command or "run"

    from job import log, runtime
    from job.errors import ConfigError
    from job.settings import load

    flags = {dest: getattr(args, dest, None) for _, dest, _ in _COMMON}
    flags["allow_destructive"] = getattr(args, "allow_destructive", None)
    flags["phase"] = getattr(args, "phase", None)
    if command == "exec":
        from job import entrypoint

        cmd = entrypoint.target_command(getattr(args, "cmd", []))  # exit 2 before connecting
    try:
        settings = load(os.environ, flags)
    except ConfigError as exc:
        log.configure(os.environ.get("MIGRATE_LOG_FORMAT"), "info")
        log.get_logger().error("config.invalid", error=exc.message, problems=exc.details.get(
            "problems"))
        print(f"migrate-job: {exc.message}", file=sys.stderr)
        return exc.exit_code
    log.configure(settings.log_format, settings.log_level)
    if command == "demo":
        return _demo(settings)
    if command == "exec":
        code = runtime.execute(settings, command, _body("run", args, settings))
        return entrypoint.replace_process(code, cmd)
    return runtime.execute(settings, command, _body(command, args, settings))


def _body(command: str, args: argparse.Namespace, settings: Any) -> Any:
    from job import commands, pipeline, runtime

    tty = sys.stdin.isatty()

    def confirmed(what: str, action: Any) -> Any:
        def body(ctx: Any) -> None:
            runtime.require_confirmation(getattr(args, "yes", False), what, tty)
            action(ctx)
        return body

    ids = " ".join(getattr(args, "ids", []) or [])
    confirm = runtime.Confirm(bool(getattr(args, "yes", False)), tty)
    bodies = {
        "run": pipeline.run,
        "status": lambda ctx: pipeline.status(ctx, args.json),
        "history": lambda ctx: _history(ctx, args),
        "undo": lambda ctx: _undo(ctx, args, confirm),
        "plan": lambda ctx: pipeline.plan_command(ctx, args.fmt or "text"),
        "lint": lambda ctx: _lint(ctx, args),
        "new": lambda ctx: _new(ctx, args.name),
        "rollback": lambda ctx: commands.rollback(ctx, args.count, args.to, confirm),
        "mark": confirmed(f"mark {ids}", lambda ctx: commands.mark(ctx, args.ids)),
        "unmark": confirmed(f"unmark {ids}", lambda ctx: commands.unmark(ctx, args.ids)),
        "accept-changes": confirmed(f"accept-changes {ids}",
                                    lambda ctx: commands.accept_changes(ctx, args.ids)),
        "baseline": lambda ctx: _adopt(ctx, args, confirm),
        "import": lambda ctx: _adopt(ctx, args, confirm),
        "backup": commands.backup,
        "restore": confirmed(f"restore {getattr(args, 'uri', '')}",
                             lambda ctx: commands.restore(ctx, args.uri)),
    }
    return bodies[command]


def _adopt(ctx: Any, args: argparse.Namespace, confirm: Any) -> None:
    from job.adopt import commands as adopt

    if args.command == "baseline":
        adopt.baseline(ctx, name=args.name, schemas=args.schemas, force=args.force,
                       dry_run=args.dry_run, confirm=confirm)
    else:
        adopt.import_history(ctx, tool=args.tool, source=args.source, table=args.table,
                             schemas=args.schemas, dry_run=args.dry_run, confirm=confirm)


def _history(ctx: Any, args: argparse.Namespace) -> None:
    from job.history import history

    history(ctx, args.json, args.limit)


def _undo(ctx: Any, args: argparse.Namespace, confirm: Any) -> None:
    from job.undo import undo

    undo(ctx, args.run_id, args.restore, confirm)


def _new(ctx: Any, name: str) -> None:
    from job import commands

    for path in commands.new(ctx.settings, name):
        print(path)


def _lint(ctx: Any, args: argparse.Namespace) -> None:
    from job.errors import ConfigError, SafetyRefusal
    from job.safety import lint_main

    code = lint_main(args.paths, fmt=args.fmt, pg_version=args.pg_version,
                     config_dir=ctx.settings.config_dir, lock_timeout=ctx.settings.lock_timeout,
                     statement_timeout=ctx.settings.statement_timeout,
                     assume_applied=args.assume_applied)
    if code == 6:
        raise SafetyRefusal("lint: unapproved dangerous findings")
    if code == 2:
        raise ConfigError("lint: bad input (see above)")


def _demo(settings: Any) -> int:
    from job.demo import demo
    from job.errors import ConfigError

    try:
        return demo(settings)
    except ConfigError as exc:
        print(f"migrate-job demo: {exc.message}", file=sys.stderr)
        return exc.exit_code
