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
    ("--environment", "environment", "this run's environment name (MIGRATE_ENVIRONMENT)"),
    ("--on-schema-drift", "on_schema_drift", "fail|warn (MIGRATE_ON_SCHEMA_DRIFT)"),
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

    sub.add_parser("run", parents=[common], help="the deploy pipeline (default)")
    p = sub.add_parser("status", parents=[common],
                       help="applied/pending/changed; exit 10 if pending")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("plan", parents=[common], help="what run would do (read-only)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json")
    fmt.add_argument("--markdown", dest="fmt", action="store_const", const="markdown")
    p = sub.add_parser("lint", parents=[common], help="offline safety analysis of files")
    p.add_argument("paths", nargs="+")
    p.add_argument("--format", dest="fmt", choices=["text", "json", "markdown", "github"],
                   default="text")
    p.add_argument("--json", dest="fmt", action="store_const", const="json")
    p.add_argument("--markdown", dest="fmt", action="store_const", const="markdown")
    p.add_argument("--pg-version", type=int, default=None, help="server major version, e.g. 16")
    p = sub.add_parser("new", parents=[common], help="create a migration and its rollback")
    p.add_argument("name")
    p.add_argument("--verify", action="store_true",
                   help="also create NNNN_name.verify.sql (assertions run after the migration)")
    p = sub.add_parser("rollback", parents=[common], help="roll back the last applied migrations")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--count", type=int, default=None)
    grp.add_argument("--to", default=None, help="roll back until ID is the newest applied")
    p.add_argument("--yes", action="store_true")
    for name, help_text in (("mark", "record migrations as applied without running them"),
                            ("unmark", "forget applied migrations without rolling back"),
                            ("accept-changes", "re-record checksums of reviewed edits")):
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("ids", nargs="+", metavar="ID")
        p.add_argument("--yes", action="store_true")
    p = sub.add_parser("accept-schema", parents=[common],
                       help="record the current schema as expected after a reviewed change")
    p.add_argument("--yes", action="store_true")
    p = sub.add_parser("stamp-environment", parents=[common],
                       help="set the database's environment stamp (MIGRATE_ENVIRONMENT guard)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--yes", action="store_true")
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
    return runtime.execute(settings, command, _body(command, args, settings))


def _body(command: str, args: argparse.Namespace, settings: Any) -> Any:
    from job import commands, pipeline, runtime

    tty = sys.stdin.isatty()

    def confirmed(what: str, action: Any) -> Any:
        def body(ctx: Any) -> None:
            runtime.require_confirmation(getattr(args, "yes", False), what, tty)
            action(ctx)
        return body

    def asked(what: str) -> None:
        runtime.require_confirmation(getattr(args, "yes", False), what, tty)

    def confirmed_after_review(action: Any) -> Any:
        """For commands whose prompt lists what they found: refuse early without --yes when
        there is no terminal to ask on, else ask once the list is known."""
        def body(ctx: Any) -> None:
            if not getattr(args, "yes", False) and not tty:
                runtime.require_confirmation(False, command, tty)
            action(ctx)
        return body

    ids = " ".join(getattr(args, "ids", []) or [])
    bodies = {
        "run": pipeline.run,
        "status": lambda ctx: pipeline.status(ctx, args.json),
        "plan": lambda ctx: pipeline.plan_command(ctx, args.fmt or "text"),
        "lint": lambda ctx: _lint(ctx, args),
        "new": lambda ctx: _new(ctx, args.name, args.verify),
        "rollback": confirmed("rollback", lambda ctx: commands.rollback(ctx, args.count, args.to)),
        "mark": confirmed(f"mark {ids}", lambda ctx: commands.mark(ctx, args.ids)),
        "unmark": confirmed(f"unmark {ids}", lambda ctx: commands.unmark(ctx, args.ids)),
        "accept-changes": confirmed(f"accept-changes {ids}",
                                    lambda ctx: commands.accept_changes(ctx, args.ids)),
        "accept-schema": confirmed_after_review(
            lambda ctx: commands.accept_schema(ctx, asked)),
        "stamp-environment": confirmed_after_review(
            lambda ctx: commands.stamp_environment(ctx, _environment(args.name), asked)),
        "backup": commands.backup,
        "restore": confirmed(f"restore {getattr(args, 'uri', '')}",
                             lambda ctx: commands.restore(ctx, args.uri)),
    }
    return bodies[command]


def _new(ctx: Any, name: str, verify: bool) -> None:
    from job import commands

    for path in commands.new(ctx.settings, name, verify=verify):
        print(path)


def _environment(name: str) -> str:
    from job.errors import ConfigError
    from job.settings import environment_name

    try:
        return environment_name(name, "stamp-environment NAME")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _lint(ctx: Any, args: argparse.Namespace) -> None:
    from job.errors import ConfigError, SafetyRefusal
    from job.safety import lint_main

    code = lint_main(args.paths, fmt=args.fmt, pg_version=args.pg_version,
                     config_dir=ctx.settings.config_dir)
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
