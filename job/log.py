"""structlog set-up: JSON lines when stderr is not a TTY, a person's view otherwise.

Configured once at the edge (``configure``); everywhere else ``get_logger().info("event", k=v)``.
Logs go to stderr so stdout stays for results (``status --json``, ``plan``). Both renderings
start from the same events: JSON gets every field once and no line over 16 KiB
(``report.bound``); the console view is ``job.console``. Redaction runs before either.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from job import redact

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_state: dict[str, Any] = {"format": "json"}


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    return {k: redact.scrub_obj(v) for k, v in event_dict.items()}


def _dedupe(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """A failure event's text once: DETAIL/HINT and the server message have their own fields."""
    message = event_dict.get("error")
    if isinstance(message, str) and ("server_message" in event_dict or "detail" in event_dict
                                     or "hint" in event_dict):
        from job.report import dedupe_error

        message, rest = dedupe_error(message, dict(event_dict))
        rest["error"] = message
        # Same field order as before (dedupe_error only removes keys).
        return {k: rest[k] for k in event_dict if k in rest}
    return event_dict


def _bound(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    from job.report import LOG_LINE_LIMIT, bound

    hint = ("the complete list: `migrate-job plan --json`"
            if event_dict.get("event") == "migrate.summary" else None)
    # Leave room for the JSON renderer's own spacing around the bounded fields.
    return bound(dict(event_dict), LOG_LINE_LIMIT - 512, hint=hint)


def configure(log_format: str | None = None, level: str = "info") -> None:
    stream = sys.stderr
    tty = stream.isatty()
    fmt = log_format or ("console" if tty else "json")
    _state["format"] = fmt
    tail: list[Any]
    if fmt == "json":
        tail = [_dedupe, _bound, structlog.processors.JSONRenderer()]
    else:
        from job.console import Console

        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        tail = [Console(stream, live=tty, color=bool(color), debug=level == "debug")]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, 20)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib logging (yoyo, botocore, azure) stay quiet unless asked,
    # and what they do say goes through the same pipeline: a raw text line in a JSON stream
    # breaks log shippers, and on a terminal it would tear the progress line.
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ToStructlog):
            root.removeHandler(handler)
    root.addHandler(_ToStructlog())
    root.setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
    # psycopg warns "error ignored terminating Pipeline" after a failed pipelined migration,
    # an error the applier has already reported in full.
    logging.getLogger("psycopg").setLevel(logging.ERROR if level != "debug" else logging.DEBUG)


class _ToStructlog(logging.Handler):
    """stdlib logging records as ``library.log`` events (name, level, message)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = structlog.get_logger()
            method = {logging.DEBUG: log.debug, logging.INFO: log.info,
                      logging.WARNING: log.warning}.get(record.levelno, log.error)
            method("library.log", logger=record.name, message=record.getMessage())
        except Exception:
            self.handleError(record)


def is_console() -> bool:
    """True when events are rendered for a person (then ``demo`` need not repeat the summary)."""
    return _state["format"] == "console"


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger(**initial)
