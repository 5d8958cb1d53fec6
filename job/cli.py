"""Command line: parse flags into Settings, call one function per command. Nothing else.

Global options are declared once on the main parser (default None) and again, hidden, on every
command with ``default=SUPPRESS``: a flag given after the command lands in the namespace, one
not given leaves the main parser's value alone. (With ``default=None`` on both, argparse lets
the command's defaults overwrite what was typed before the command.)

Adding a command: ``p = _command(sub, "name", "one line", examples=[...], exits=[...])``, its own
options on ``p``, and its body in ``_body``. Nothing else here needs to change.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

from job import __version__

DOCS = "https://github.com/migrate-job/migrate-job/blob/main/docs/cli.md"


class Option(NamedTuple):
    flag: str
    dest: str  # the Settings field
    env: str  # the environment variable behind it
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


# Flags shared by every command, each with its CONTRACT environment variable (flags win).
COMMON: tuple[Option, ...] = (
    Option("--database-url", "database_url", "MIGRATE_DATABASE_URL",
           "PostgreSQL URL; else DATABASE_URL, else libpq PG* variables", metavar="URL"),
    Option("--migrations-dir", "migrations_dir", "MIGRATE_MIGRATIONS_DIR",
           "directory of yoyo-format migrations [./migrations]", metavar="DIR"),
    Option("--secret-source", "secret_source", "MIGRATE_SECRET_SOURCE",
           "where the database credentials come from [env]", ("env", "file", "aws", "azure")),
    Option("--db-wait", "db_wait", "MIGRATE_DB_WAIT",
           "how long to retry connecting before exit 3 [60s]", metavar="DURATION"),
    Option("--lock-wait", "lock_wait", "MIGRATE_LOCK_WAIT",
           "how long to wait for another runner's migration lock before exit 4 [10m]",
           metavar="DURATION"),
    Option("--lock-timeout", "lock_timeout", "MIGRATE_LOCK_TIMEOUT",
           "PostgreSQL lock_timeout of migration statements [5s]", metavar="DURATION"),
    Option("--lock-retries", "lock_retries", "MIGRATE_LOCK_RETRIES",
           "retries of a migration that hit lock_timeout [5]", metavar="N"),
    Option("--statement-timeout", "statement_timeout", "MIGRATE_STATEMENT_TIMEOUT",
           "PostgreSQL statement_timeout of migration statements [0: none]",
           metavar="DURATION"),
    Option("--phase", "phase", "MIGRATE_PHASE",
           "pre: before the new version starts; post: after it is live; all: both [all]",
           ("pre", "post", "all")),
    Option("--heartbeat", "heartbeat", "MIGRATE_HEARTBEAT",
           "progress event interval during long statements, backups, restores [10s; 0: off]",
           metavar="DURATION"),
    Option("--tx-mode", "tx_mode", "MIGRATE_TX_MODE",
           "one transaction per migration, or all pending in one [each]", ("each", "all")),
    Option("--backup", "backup", "MIGRATE_BACKUP",
           "none | file:///path | s3://bucket/prefix | azblob://account/container/prefix [none]",
           metavar="URI"),
    Option("--on-unknown", "on_unknown", "MIGRATE_ON_UNKNOWN",
           "applied migrations this image does not know [warn]", ("warn", "fail")),
    Option("--log-format", "log_format", "MIGRATE_LOG_FORMAT",
           "[console on a terminal, else json]", ("json", "console")),
    Option("--log-level", "log_level", "MIGRATE_LOG_LEVEL",
           "[info]", ("debug", "info", "warning", "error")),
    Option("--termination-log", "termination_log", "MIGRATE_TERMINATION_LOG",
           "file for the one-line JSON summary [/dev/termination-log in Kubernetes]",
           metavar="PATH"),
    Option("--config-dir", "config_dir", "MIGRATE_CONFIG_DIR",
           "where migrate-job.toml / pyproject.toml are read [.]", metavar="DIR"),
    Option("--environment", "environment", "MIGRATE_ENVIRONMENT",
           "this run's environment (staging, production); stamped on the database",
           metavar="NAME"),
    Option("--on-schema-drift", "on_schema_drift", "MIGRATE_ON_SCHEMA_DRIFT",
           "out-of-band schema changes since the last run [fail]", ("fail", "warn")),
)
ALLOW_DESTRUCTIVE = Option("--allow-destructive", "allow_destructive",
                           "MIGRATE_ALLOW_DESTRUCTIVE",
                           "approve every destructive finding of this deploy (prefer per-file "
                           "approvals)")

EXIT_CODES = {
    0: "success (applied, or nothing to do)",
    2: "usage or configuration error (nothing changed)",
    3: "database unreachable or authentication failed within --db-wait",
    4: "another runner held the migration lock past --lock-wait",
    5: "integrity refusal: an applied file changed, the schema drifted, another environment",
    6: "safety refusal: an unapproved dangerous finding",
    7: "backup failed or could not be verified (nothing migrated)",
    8: "a migration failed (message: migration, file:line, SQLSTATE, detail, hint)",
    9: "verification after apply failed",
    10: "status: pending migrations exist",
    130: "interrupted (SIGINT; 143: SIGTERM): statement cancelled, lock released",
}
RUN_EXITS = (0, 2, 3, 4, 5, 6, 7, 8, 9, 130)


def _exit_text(codes: Sequence[int]) -> str:
    return "exit codes:\n" + "\n".join(f"  {c:<4} {EXIT_CODES[c]}" for c in codes)


class _Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for mistyped options."""

    def error(self, message: str) -> NoReturn:
        if "unrecognized arguments:" in message:
            import difflib

            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            known += [o.flag for o in (*COMMON, ALLOW_DESTRUCTIVE)]
            for token in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(token.split("=")[0], known, n=1)
                if token.startswith("--") and close:
                    message += f" (did you mean {close[0]}?)"
        super().error(message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # The command positional: a did-you-mean instead of a list of every command.
        if (isinstance(action, argparse._SubParsersAction) and action.choices is not None
                and value not in action.choices):
            import difflib

            close = difflib.get_close_matches(value, list(action.choices), n=1)
            hint = f"did you mean `{close[0]}`?" if close else "see `migrate-job --help`"
            raise argparse.ArgumentError(action, f"unknown command {value!r}: {hint}")
        super()._check_value(action, value)


def _add_common(parser: argparse.ArgumentParser, *, hidden: bool) -> None:
    """The global options: listed in the main help, accepted silently after any command."""
    target: Any = parser if hidden else parser.add_argument_group(
        "global options (before or after the command; a flag wins over its variable)")
    for o in COMMON:
        kwargs: dict[str, Any] = {"dest": o.dest, "metavar": o.metavar}
        if o.choices:
            # Case-insensitive like the environment variables; the parser enforces the choices.
            kwargs.update(choices=o.choices, type=str.lower, metavar="{" + ",".join(o.choices) + "}")
        target.add_argument(o.flag, **kwargs, default=argparse.SUPPRESS if hidden else None,
                            help=argparse.SUPPRESS if hidden else f"{o.help} (env {o.env})")
    target.add_argument(ALLOW_DESTRUCTIVE.flag, dest="allow_destructive", action="store_const",
                        const="true", default=argparse.SUPPRESS if hidden else None,
                        help=argparse.SUPPRESS if hidden else
                        f"{ALLOW_DESTRUCTIVE.help} (env {ALLOW_DESTRUCTIVE.env})")


@functools.cache
def _hidden_common() -> argparse.ArgumentParser:
    """The global options for every command, built once and shared (``parents=``)."""
    p = argparse.ArgumentParser(add_help=False)
    _add_common(p, hidden=True)
    return p


def _command(sub: Any, name: str, summary: str, *, description: str = "",
             examples: Sequence[str] = (), exits: Sequence[int] = (0, 2, 3),
             **kwargs: Any) -> argparse.ArgumentParser:
    """One command: its help line, a description, examples, its exit codes, the docs pointer."""
    epilog = []
    if examples:
        epilog.append("examples:\n" + "\n".join(f"  {e}" for e in examples))
    epilog.append(_exit_text(exits))
    epilog.append("Global options (--database-url, --migrations-dir, --lock-wait, ...; see "
                  "`migrate-job --help`)\nwork before or after the command.")
    epilog.append(f"docs: {DOCS}")
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, prog=f"migrate-job {name}",
        description=description or summary[0].upper() + summary[1:] + ".",
        epilog="\n\n".join(epilog), formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_hidden_common()], **kwargs)
    return p


def _yes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true",
                   help="do it without asking (required when stdin is not a terminal)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="migrate-job", usage="migrate-job [global options] COMMAND [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deploy-time PostgreSQL migrations: locked, atomic, verified, observable.",
        epilog="examples:\n  migrate-job plan                  what `run` would do (read-only)\n"
               "  migrate-job run                   apply what is pending\n"
               "  migrate-job status --database-url postgresql://app@db/app\n"
               "  migrate-job run --help            a command's own options and examples\n\n"
               + _exit_text((0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130))
               + "\n  11/12/124 ecs-run only (see `migrate-job ecs-run --help`)\n\n"
               "Every global option has an environment variable (shown); an unknown MIGRATE_* "
               "variable is\nreported with the closest known name. Logs go to stderr, results "
               f"to stdout.\n\ndocs: {DOCS}")
    parser.add_argument("--version", action="version", version=f"migrate-job {__version__}")
    _add_common(parser, hidden=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_Parser)

    _command(sub, "run", "the deploy pipeline (the image's default command)",
             description="The deploy pipeline: settings, secrets, wait for the database, lock, "
                         "integrity,\nplan, safety gate, backup (if configured and something is "
                         "pending), apply, verify,\nreport.",
             examples=["migrate-job run",
                       "migrate-job run --backup s3://backups/app --lock-timeout 3s",
                       "MIGRATE_TX_MODE=all migrate-job run    # all pending in one transaction"],
             exits=RUN_EXITS)

    p = _command(sub, "exec", "entrypoint mode: run, then replace this process with CMD",
                 description="Entrypoint mode: the `run` pipeline, then (only on exit 0) this "
                             "process is replaced by\nCMD, which keeps its PID and receives "
                             "signals directly. Replicas starting together\nwait on the lock, "
                             "find nothing pending and start at once.",
                 examples=["migrate-job exec -- node server.js",
                           "migrate-job exec --phase pre -- gunicorn app:app"],
                 exits=RUN_EXITS, usage="migrate-job exec [options] -- CMD [ARG...]")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARG...",
                   help="the application to start once migrations are applied")

    p = _command(sub, "status", "applied, pending, changed and unknown migrations (read-only)",
                 examples=["migrate-job status", "migrate-job status --json | jq '.pending'"],
                 exits=(0, 2, 3, 5, 10))
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")

    p = _command(sub, "history", "the recorded runs, newest first (read-only)",
                 examples=["migrate-job history", "migrate-job history --limit 5 --json"],
                 exits=(0, 2, 3))
    p.add_argument("--json", action="store_true", help="JSON even on a terminal")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="how many runs [20]")

    p = _command(sub, "plan", "what `run` would do, with its safety findings (read-only)",
                 description="What `run` would do: the target database, the phase, the backup "
                             "setting, and each\npending migration with its statements and "
                             "safety findings, with the approval line\nto add for each "
                             "unapproved one. Runs in a read-only transaction.",
                 examples=["migrate-job plan", "migrate-job plan --verbose     # the full SQL",
                           "migrate-job plan --markdown >> \"$GITHUB_STEP_SUMMARY\""],
                 exits=(0, 2, 3, 5, 6))
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json",
                     help="machine-readable plan on stdout")
    fmt.add_argument("--markdown", dest="fmt", action="store_const", const="markdown",
                     help="a Markdown table (pull-request comments, job summaries)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="show each statement's full SQL, not only its first line")

    p = _command(sub, "lint", "safety analysis of migration files, no database needed",
                 examples=["migrate-job lint migrations/",
                           "migrate-job lint --format github migrations/0042_drop_col.sql"],
                 exits=(0, 2, 6))
    p.add_argument("paths", nargs="+", metavar="PATH", help="migration files or directories")
    p.add_argument("--format", dest="fmt",
                   choices=["text", "json", "markdown", "github", "sarif"],
                   default="text", help="output format [text]")
    p.add_argument("--json", dest="fmt", action="store_const", const="json",
                   help="same as --format json")
    p.add_argument("--markdown", dest="fmt", action="store_const", const="markdown",
                   help="same as --format markdown")
    p.add_argument("--pg-version", type=int, default=None, metavar="N",
                   help="server major version the rules assume, e.g. 16 [14]")
    p.add_argument("--assume-applied", default=None, metavar="ID",
                   help="treat the migrations up to ID (run order) as applied already: only "
                        "the later ones are judged (pull requests)")

    p = _command(sub, "new", "create a migration and its rollback script",
                 examples=["migrate-job new 'add orders status'"], exits=(0, 2))
    p.add_argument("name", help="what the migration does; becomes the file name's slug")
    p.add_argument("--verify", action="store_true",
                   help="also create NNNN_name.verify.sql (assertions run after the migration)")

    p = _command(sub, "rollback", "roll back the last applied migrations",
                 examples=["migrate-job rollback --yes", "migrate-job rollback --count 2 --yes",
                           "migrate-job rollback --to 0003_add_index --yes"],
                 exits=(0, 2, 3, 4, 5, 6, 7, 8))
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--count", type=int, default=None, metavar="N",
                     help="how many of the newest applied migrations [1]")
    grp.add_argument("--to", default=None, metavar="ID",
                     help="roll back until ID is the newest applied migration")
    _yes(p)

    p = _command(sub, "undo", "revert what one run applied (default: the last that applied any)",
                 examples=["migrate-job undo --yes", "migrate-job history   # find a RUN_ID",
                           "migrate-job undo 3f2a9c1e --restore --yes"],
                 exits=(0, 2, 3, 4, 5, 6, 7, 8))
    p.add_argument("run_id", nargs="?", default=None, metavar="RUN_ID",
                   help="a run id or a unique prefix of it (see `history`)")
    p.add_argument("--restore", action="store_true",
                   help="restore the backup that run took instead of its rollback scripts")
    _yes(p)

    for name, summary, example in (
            ("mark", "record migrations as applied without running them",
             "migrate-job mark 0001_initial 0002_users --yes"),
            ("unmark", "forget applied migrations without rolling them back",
             "migrate-job unmark 0007_bad --yes"),
            ("accept-changes", "re-record the checksum of a reviewed edit",
             "migrate-job accept-changes 0004_orders --yes")):
        p = _command(sub, name, summary, examples=[example], exits=(0, 2, 3, 4, 5))
        p.add_argument("ids", nargs="+", metavar="ID", help="migration ids (file names "
                       "without .sql)")
        _yes(p)

    p = _command(sub, "accept-schema", "record the current schema as expected after review",
                 description="Record the current schema of the managed schemas as the expected "
                             "one, after an\nout-of-band change was reviewed (`status` lists "
                             "it). The next `run` compares with it.",
                 examples=["migrate-job status            # lists the drift",
                           "migrate-job accept-schema --yes"], exits=(0, 2, 3, 4, 5))
    _yes(p)
    p = _command(sub, "stamp-environment", "set the database's environment stamp",
                 examples=["migrate-job stamp-environment production --yes"],
                 exits=(0, 2, 3, 4))
    p.add_argument("name", metavar="NAME", help="the environment's name (e.g. production)")
    _yes(p)

    _adopt_parsers(sub)

    _command(sub, "backup", "take and verify a backup now",
             examples=["migrate-job backup --backup file:///var/backups/app"],
             exits=(0, 2, 3, 4, 7))
    p = _command(sub, "restore", "restore a backup taken by `backup` or `run`",
                 examples=["migrate-job restore s3://backups/app/app-20260101T000000Z-ab12cd.dump"
                           " --yes"], exits=(0, 2, 3, 4, 7))
    p.add_argument("uri", help="the dump's URI, as logged by backup.verified")
    _yes(p)

    _command(sub, "demo", "run the real pipeline against an embedded PostgreSQL",
             examples=["migrate-job demo"], exits=(0, 2, 8))
    # Its own flags are parsed by job.ecs, imported only when this command runs.
    p = sub.add_parser("ecs-run", add_help=False, prog="migrate-job ecs-run",
                       help="run the migration ECS task and wait for it (ecs-run --help)")
    p.add_argument("ecs_args", nargs=argparse.REMAINDER)
    return parser


def _adopt_parsers(sub: Any) -> None:
    from job.adopt import IMPORTERS

    def shared(p: argparse.ArgumentParser) -> None:
        p.add_argument("--schema", dest="schemas", action="append", default=[],
                       metavar="SCHEMA", help="schema to adopt (repeatable) [the current "
                       "schema]")
        p.add_argument("--dry-run", action="store_true", help="print what would happen, change "
                       "nothing")
        _yes(p)

    p = _command(sub, "baseline", "write the current schema as a migration and mark it applied",
                 examples=["migrate-job baseline --yes",
                           "migrate-job baseline --schema app --schema billing --dry-run"],
                 exits=(0, 2, 3, 4, 5))
    p.add_argument("--name", default="baseline", help="migration name [baseline]")
    p.add_argument("--force", action="store_true",
                   help="even though migrations are applied or files exist")
    shared(p)
    p = _command(sub, "import", "convert another tool's history and mark what it applied",
                 examples=["migrate-job import --from flyway --source db/migration",
                           "migrate-job import --from prisma --source prisma/migrations --yes"],
                 exits=(0, 2, 3, 4, 5))
    p.add_argument("--from", dest="tool", required=True, choices=list(IMPORTERS))
    p.add_argument("--source", default=None, metavar="DIR",
                   help="the tool's migrations directory")
    p.add_argument("--table", default=None, metavar="[SCHEMA.]NAME",
                   help="its history table [the tool's default]")
    shared(p)


def _ecs_run(argv: Sequence[str]) -> int:
    from job import ecs

    parser = argparse.ArgumentParser(prog="migrate-job ecs-run",
                                     description="Run the migration ECS task and wait for it.")
    ecs.add_arguments(parser)
    return ecs.main(parser.parse_args(argv))


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse argv; returns the namespace and the Settings overrides the person typed."""
    args = build_parser().parse_args(list(argv))
    flags = {o.dest: getattr(args, o.dest, None) for o in (*COMMON, ALLOW_DESTRUCTIVE)}
    return args, flags


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # A short-lived process that builds many small, acyclic objects (parse trees, rows):
        # with the default threshold (700) the cyclic collector's passes cost more than a
        # third of parsing 300 migrations; memory is freed by reference counting anyway.
        import gc

        gc.set_threshold(20000, 10, 10)
        # Threads here are a session waiting for the server while another one works (parsing
        # ahead, a second catalog session, connections opened ahead). With the default 5 ms
        # switch interval a thread whose answer has arrived waits up to 5 ms for the GIL, on
        # every round trip; measured on a fresh database with parse-ahead running, taking the
        # lock and creating the tracking tables went from 29 to 57 ms.
        sys.setswitchinterval(0.0005)
    code, ran = _main(list(sys.argv[1:] if argv is None else argv))
    if argv is None and ran:
        # The process entry (console script, python -m job) after a command ran: leave
        # without the interpreter teardown (job/fastexit.py). In-process callers get the code.
        from job.fastexit import exit_now

        exit_now(code)
    return code


def _main(argv: list[str]) -> tuple[int, bool]:
    """(exit code, whether a command body ran)."""
    if argv[:1] == ["ecs-run"]:
        return _ecs_run(argv[1:]), True
    if not argv:
        # Never a silent default command: typing the tool's name in a shell where the
        # application's DATABASE_URL is set must not migrate anything.
        build_parser().print_help(sys.stderr)
        return 2, False
    args, flags = parse(argv)
    if args.command is None:
        build_parser().error("a command is required: see `migrate-job --help`")
    if args.command == "ecs-run":
        return _ecs_run(args.ecs_args), True

    from job import log, runtime
    from job.errors import ConfigError
    from job.settings import load, unknown_variables

    if args.command == "exec":
        from job import entrypoint

        cmd = entrypoint.target_command(args.cmd)  # exit 2 before connecting

    unknown = unknown_variables(os.environ)
    try:
        settings = load(os.environ, flags)
    except ConfigError as exc:
        log.configure(flags.get("log_format") or _env_choice("MIGRATE_LOG_FORMAT"), "info")
        logger = log.get_logger()
        _warn_unknown(logger, unknown)
        logger.error("config.invalid", error=exc.message, problems=exc.details.get("problems"))
        _config_error_summary(logger, args.command, exc, flags)
        return exc.exit_code, True
    log.configure(settings.log_format, settings.log_level)
    _warn_unknown(log.get_logger(), unknown)
    if args.command == "demo":
        return _demo(settings), True
    if args.command == "exec":
        code = runtime.execute(settings, "exec", _body("run", args, settings))
        return entrypoint.replace_process(code, cmd), True
    return runtime.execute(settings, args.command, _body(args.command, args, settings)), True


def _config_error_summary(log: Any, command: str, exc: Any, flags: dict[str, Any]) -> None:
    """Every command ends with migrate.summary, even when its settings did not load."""
    from job import report

    database = None
    url = flags.get("database_url") or os.environ.get("MIGRATE_DATABASE_URL") or os.environ.get(
        "DATABASE_URL")
    if url:
        from job.db import ConnParams

        try:
            database = ConnParams.from_url(url).display()
        except Exception:
            database = None
    summary = report.Summary(command=command, database=database, outcome=exc.outcome,
                             exit_code=exc.exit_code, message=exc.message)
    log.info("migrate.summary", **summary.as_dict())


def _env_choice(name: str) -> str | None:
    value = os.environ.get(name, "").strip().lower()
    return value if value in ("json", "console") else None


def _warn_unknown(log: Any, unknown: list[tuple[str, str | None]]) -> None:
    for name, close in unknown:
        log.warning("config.unknown_variable", variable=name, did_you_mean=close,
                    message=f"{name} is not a migrate-job setting"
                            + (f"; did you mean {close}?" if close else " (ignored)"))


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

    def after_review(action: Any) -> Any:
        """The prompt lists what the command found: refuse before connecting when no one could
        answer it, else ask once the list is known."""
        def body(ctx: Any) -> None:
            confirm.check_possible(command)
            action(ctx)
        return body

    bodies = {
        "run": pipeline.run,
        "status": lambda ctx: pipeline.status(ctx, args.json),
        "history": lambda ctx: _history(ctx, args),
        "undo": lambda ctx: _undo(ctx, args, confirm),
        "plan": lambda ctx: pipeline.plan_command(ctx, args.fmt or "text", verbose=args.verbose),
        "lint": lambda ctx: _lint(ctx, args),
        "new": lambda ctx: _new(ctx, args.name, args.verify),
        "rollback": lambda ctx: commands.rollback(ctx, args.count, args.to, confirm),
        "mark": confirmed(f"mark {ids}", lambda ctx: commands.mark(ctx, args.ids)),
        "unmark": confirmed(f"unmark {ids}", lambda ctx: commands.unmark(ctx, args.ids)),
        "accept-changes": confirmed(f"accept-changes {ids}",
                                    lambda ctx: commands.accept_changes(ctx, args.ids)),
        "accept-schema": after_review(lambda ctx: commands.accept_schema(ctx, confirm)),
        "stamp-environment": after_review(lambda ctx: commands.stamp_environment(
            ctx, _environment(args.name), confirm)),
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
