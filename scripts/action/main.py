#!/usr/bin/env python3
"""The logic of the migrate-job GitHub Action (action.yml runs it; tests/release run it for real).

It reads the action's inputs from INPUT_* variables, runs the migrate-job CLI once with its
settings in MIGRATE_* variables (the database URL never on a command line), and:

- shows the CLI's log events in the job log (JSON lines, or the CLI's own console rendering),
  and its stdout (tables, Markdown, `::error file=...` annotations from `lint --format github`);
- reads the `migrate.summary` event (the last event of every command, CONTRACT "The summary")
  and writes the step outputs `outcome`, `exit-code`, `applied`, `pending` (counts),
  `applied-ids`, `pending-ids` (JSON arrays) and `summary` (the JSON) to $GITHUB_OUTPUT;
- appends a step summary for commands whose CLI did not write one ($GITHUB_STEP_SUMMARY):
  `plan`'s Markdown, `lint`'s Markdown report, the summary table for `status`;
- `lint` with `sarif-file` also writes SARIF there for github/codeql-action/upload-sarif;
- forwards SIGINT/SIGTERM (a cancelled workflow) to the CLI, so it rolls back and releases the
  lock, and exits with the CLI's exit code: the step fails exactly when and how the job did.

Standard library only, plus `job.log` and `job.report` when importable (the action installs the
package at its own ref) for the console rendering and the summary table.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

COMMANDS = ("run", "plan", "status", "lint")
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
EXIT_USAGE = 2
# CONTRACT exit codes -> the summary's outcome, for runs that ended before a summary existed
# (a rejected flag or setting is reported before the runtime starts).
OUTCOMES = {0: "success", 1: "internal_error", 2: "config_error", 3: "database_unavailable",
            4: "lock_timeout", 5: "integrity_refused", 6: "safety_refused", 7: "backup_failed",
            8: "migration_failed", 9: "verification_failed", 10: "pending", 130: "interrupted",
            143: "interrupted"}


class InputError(Exception):
    pass


@dataclass(frozen=True)
class Inputs:
    command: str
    database_url: str = ""
    migrations_dir: str = ""
    paths: list[str] = field(default_factory=list)
    phase: str = ""
    environment: str = ""
    backup: str = ""
    log_format: str = "console"
    log_level: str = ""
    sarif_file: str = ""
    args: list[str] = field(default_factory=list)


def read_inputs(env: Mapping[str, str]) -> Inputs:
    def get(name: str) -> str:
        return env.get(f"INPUT_{name}", "").strip()

    problems = []
    command = get("COMMAND") or "run"
    if command not in COMMANDS:
        problems.append(f"command: {command!r} is not one of {', '.join(COMMANDS)}")
    log_format = get("LOG_FORMAT") or "console"
    if log_format not in LOG_FORMATS:
        problems.append(f"log-format: {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    log_level = get("LOG_LEVEL")
    if log_level and log_level not in LOG_LEVELS:
        problems.append(f"log-level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    sarif_file = get("SARIF_FILE")
    if sarif_file and command != "lint":
        problems.append("sarif-file: only `lint` writes SARIF")
    try:
        args = shlex.split(get("ARGS"))
    except ValueError as exc:
        problems.append(f"args: {exc}")
        args = []
    paths = [p for line in get("PATHS").splitlines() for p in shlex.split(line)]
    if paths and command != "lint":
        problems.append("paths: only `lint` takes paths (the others read migrations-dir)")
    if problems:
        raise InputError("; ".join(problems))
    return Inputs(command=command, database_url=get("DATABASE_URL"),
                  migrations_dir=get("MIGRATIONS_DIR"), paths=paths, phase=get("PHASE"),
                  environment=get("ENVIRONMENT"), backup=get("BACKUP"), log_format=log_format,
                  log_level=log_level, sarif_file=sarif_file, args=args)


def child_env(inputs: Inputs, env: Mapping[str, str]) -> dict[str, str]:
    """The CLI's environment: the step's, without the action's INPUT_* copies, plus the inputs
    that were given as MIGRATE_* settings (an empty input leaves the variable as the step set
    it). Logs are always JSON: that is how the summary is read."""
    out = {k: v for k, v in env.items() if not k.startswith("INPUT_")}
    settings = {
        "MIGRATE_DATABASE_URL": inputs.database_url,
        "MIGRATE_MIGRATIONS_DIR": inputs.migrations_dir,
        "MIGRATE_PHASE": inputs.phase,
        "MIGRATE_ENVIRONMENT": inputs.environment,
        "MIGRATE_BACKUP": inputs.backup,
        "MIGRATE_LOG_LEVEL": inputs.log_level,
    }
    out.update({k: v for k, v in settings.items() if v})
    out["MIGRATE_LOG_FORMAT"] = "json"
    return out


def cli_command(env: Mapping[str, str]) -> list[str]:
    return shlex.split(env.get("MIGRATE_JOB_CLI") or "migrate-job")


def lint_paths(inputs: Inputs) -> list[str]:
    return inputs.paths or [inputs.migrations_dir or "migrations"]


def argv_for(inputs: Inputs, cli: list[str]) -> list[str]:
    if inputs.command == "plan":
        return [*cli, "plan", "--markdown", *inputs.args]
    if inputs.command == "lint":
        return [*cli, "lint", "--format", "github", *inputs.args, *lint_paths(inputs)]
    return [*cli, inputs.command, *inputs.args]


def mask_secrets(url: str, out: TextIO) -> None:
    """Ask the runner to mask the URL and its password in every later log line, also when the
    URL was assembled in the workflow rather than taken whole from a secret."""
    if not url:
        return
    values = {url}
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        values |= {password, unquote(password)}
    for value in sorted(values):
        if value.strip():
            out.write(f"::add-mask::{value}\n")
    out.flush()


class EventSink:
    """Receives the CLI's stderr line by line: keeps the summary, shows each line."""

    def __init__(self, log_format: str, err: TextIO) -> None:
        self.summary: dict[str, Any] | None = None
        self.err = err
        self.render = _console_renderer() if log_format == "console" else None

    def feed(self, line: str) -> None:
        event = _parse_event(line)
        if event is not None and event.get("event") == "migrate.summary":
            self.summary = {k: v for k, v in event.items()
                            if k not in ("event", "level", "timestamp")}
        if event is not None and self.render is not None:
            self.render(event)
        else:
            self.err.write(line if line.endswith("\n") else line + "\n")
            self.err.flush()


def _parse_event(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _console_renderer() -> Callable[[dict[str, Any]], None] | None:
    """The CLI's own console renderer (job.log), so `console` looks exactly as on a terminal;
    None (raw JSON) when the package is not importable here."""
    try:
        from job import log
    except ImportError:
        return None
    log.configure("console", "debug")  # the CLI already filtered by level
    logger = log.get_logger()

    def render(event: dict[str, Any]) -> None:
        fields = {k: v for k, v in event.items() if k not in ("event", "level", "timestamp")}
        level = str(event.get("level", "info"))
        method = getattr(logger, level if level in LOG_LEVELS + ("critical",) else "info")
        method(str(event["event"]), **fields)

    return render


@dataclass
class Result:
    exit_code: int
    stdout: str
    summary: dict[str, Any] | None


def run_cli(argv: list[str], env: dict[str, str], sink: EventSink, out: TextIO,
            cwd: str | None = None) -> Result:
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                bufsize=1, encoding="utf-8", errors="replace")
    except OSError as exc:
        sink.err.write(f"migrate-job action: cannot start {argv[0]!r}: {exc}\n")
        return Result(127, "", None)

    def forward(signum: int, _frame: Any) -> None:
        # A cancelled workflow: the CLI cancels its statement, rolls back, releases the lock and
        # exits 130/143 with its summary; a second signal is ignored by the CLI.
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None

    def pump() -> None:
        for line in stderr:
            sink.feed(line)

    stderr_pump = threading.Thread(target=pump, daemon=True)
    stderr_pump.start()
    captured = []
    for line in stdout:
        captured.append(line)
        out.write(line)
        out.flush()
    code = proc.wait()
    stderr_pump.join()
    for s, handler in previous.items():
        signal.signal(s, handler)
    return Result(code, "".join(captured), sink.summary)


def quiet_output(argv: list[str], env: dict[str, str], cwd: str | None = None) -> str:
    """stdout of a second, read-only `lint` run in another format (its logs are dropped)."""
    return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, encoding="utf-8").stdout


def outputs(result: Result) -> dict[str, str]:
    summary = result.summary or {}
    applied = [a.get("id") if isinstance(a, dict) else a for a in summary.get("applied") or []]
    pending = list(summary.get("pending") or [])
    return {
        "outcome": str(summary.get("outcome") or OUTCOMES.get(result.exit_code, "error")),
        "exit-code": str(result.exit_code),
        "applied": str(len(applied)),
        "pending": str(len(pending)),
        "applied-ids": json.dumps(applied),
        "pending-ids": json.dumps(pending),
        "summary": json.dumps(summary, separators=(",", ":"), default=str),
    }


def write_outputs(path: str | None, values: Mapping[str, str]) -> None:
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        for name, value in values.items():
            # The multi-line form with a random delimiter: safe for any value.
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            f.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")


def step_summary(inputs: Inputs, result: Result) -> str:
    """Markdown for commands whose CLI writes no step summary itself."""
    if inputs.command == "plan":
        return result.stdout if result.stdout.endswith("\n") else result.stdout + "\n"
    summary = dict(result.summary or {})
    if not summary:
        code = result.exit_code
        return (f"### ❌ migrate-job {inputs.command}: {OUTCOMES.get(code, 'error')} "
                f"(exit {code})\n\nThe command stopped before its summary; see the step log.\n")
    try:
        from job import report
    except ImportError:
        return f"### migrate-job {inputs.command}\n\n```json\n{json.dumps(summary, indent=2)}\n```\n"
    return str(report.markdown(summary))


def annotate_failure(inputs: Inputs, result: Result, out: TextIO) -> None:
    if result.exit_code == 0:
        return
    summary = result.summary or {}
    message = summary.get("message") or OUTCOMES.get(result.exit_code, "error")
    level = "warning" if inputs.command == "status" and result.exit_code == 10 else "error"
    title = f"migrate-job {inputs.command}: {summary.get('outcome') or 'failed'} " \
            f"(exit {result.exit_code})"
    text = str(message).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    title = title.replace("%", "%25").replace(":", "%3A").replace(",", "%2C")
    out.write(f"::{level} title={title}::{text}\n")
    out.flush()


def main(env: Mapping[str, str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    env = dict(os.environ if env is None else env)
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        inputs = read_inputs(env)
    except InputError as exc:
        out.write(f"::error title=migrate-job action inputs::{exc}\n")
        write_outputs(env.get("GITHUB_OUTPUT"), {"outcome": "config_error",
                                                 "exit-code": str(EXIT_USAGE)})
        return EXIT_USAGE
    mask_secrets(inputs.database_url, out)
    cenv = child_env(inputs, env)
    cli = cli_command(env)
    summary_path = env.get("GITHUB_STEP_SUMMARY")
    before = _size(summary_path)

    result = run_cli(argv_for(inputs, cli), cenv, EventSink(inputs.log_format, err), out)

    if inputs.command == "lint":
        # The same analysis again in other formats: the Markdown report for the step summary,
        # SARIF for code scanning. Offline and read-only; the first run's exit code stands.
        quiet_env = dict(cenv, MIGRATE_LOG_LEVEL="error")
        paths = [*inputs.args, *lint_paths(inputs)]
        if summary_path:
            md = quiet_output([*cli, "lint", "--format", "markdown", *paths], quiet_env)
            _append(summary_path, md)
        if inputs.sarif_file:
            sarif = quiet_output([*cli, "lint", "--format", "sarif", *paths], quiet_env)
            Path(inputs.sarif_file).parent.mkdir(parents=True, exist_ok=True)
            Path(inputs.sarif_file).write_text(sarif, encoding="utf-8")
    elif summary_path and _size(summary_path) == before:
        _append(summary_path, step_summary(inputs, result))

    values = outputs(result)
    if inputs.sarif_file:
        values["sarif-file"] = inputs.sarif_file
    write_outputs(env.get("GITHUB_OUTPUT"), values)
    annotate_failure(inputs, result, out)
    return result.exit_code


def _size(path: str | None) -> int:
    try:
        return os.path.getsize(path) if path else -1
    except OSError:
        return -1


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    sys.exit(main())
