"""structlog set-up: JSON lines when stderr is not a TTY, a person's view otherwise.

Configured once at the edge (``configure``); everywhere else ``get_logger().info("event", k=v)``.
Logs go to stderr so stdout stays for results (``status --json``, ``plan``). Both renderings
start from the same events: JSON gets every field once and no line over 16 KiB
(``report.bound``); the console view is ``job.console``. Redaction runs before either.

The JSON path does not go through structlog: importing structlog loads its development
console (and rich, where installed) and asyncio, 50-100 ms of a deploy's start-up, and its
generic processor chain costs ~0.1 ms an event. ``_JsonLogger`` writes exactly the line
structlog's JSON chain wrote (the fields, then ``event``, ``level``, ``timestamp``; redacted,
deduplicated, bounded). structlog stays the console renderer's engine, and what
``get_logger()`` returns before ``configure`` (library use, tests capturing events).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from job import redact

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_state: dict[str, Any] = {"format": "json", "logger": None}


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


def _fallback(obj: Any) -> Any:
    """What structlog's JSON renderer does with a value JSON cannot hold."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


# One lock for every line written, whichever thread logs (the statement watcher's heartbeats).
_WRITE_LOCK = threading.Lock()
_BOUND_AT = 16 * 1024 - 512  # report.LOG_LINE_LIMIT - 512, without importing job.report


class _JsonLogger:
    """One JSON object per line on ``stream``, for events at ``min_level`` and above."""

    def __init__(self, stream: Any, min_level: int, context: dict[str, Any] | None = None
                 ) -> None:
        self._stream, self._min, self._context = stream, min_level, context or {}

    def bind(self, **values: Any) -> _JsonLogger:
        return _JsonLogger(self._stream, self._min, {**self._context, **values})

    def _emit(self, level: str, event: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        data = {**self._context, **kw} if self._context else kw
        data["event"] = event % args if args else event
        data["level"] = level
        data["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        data = {k: redact.scrub_obj(v) for k, v in data.items()}
        if "error" in data:
            data = dict(_dedupe(None, level, data))
        line = json.dumps(data, default=_fallback)
        if len(line) > _BOUND_AT:  # ASCII (ensure_ascii): characters are bytes
            line = json.dumps(_bound(None, level, data), default=_fallback)
        with _WRITE_LOCK:
            print(line, file=self._stream, flush=True)

    def debug(self, event: str, *args: Any, **kw: Any) -> None:
        if self._min <= 10:
            self._emit("debug", event, args, kw)

    def info(self, event: str, *args: Any, **kw: Any) -> None:
        if self._min <= 20:
            self._emit("info", event, args, kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> None:
        if self._min <= 30:
            self._emit("warning", event, args, kw)

    warn = warning

    def error(self, event: str, *args: Any, **kw: Any) -> None:
        if self._min <= 40:
            self._emit("error", event, args, kw)

    def critical(self, event: str, *args: Any, **kw: Any) -> None:
        if self._min <= 50:
            self._emit("critical", event, args, kw)


def configure(log_format: str | None = None, level: str = "info") -> None:
    stream = sys.stderr
    tty = stream.isatty()
    fmt = log_format or ("console" if tty else "json")
    _state["format"] = fmt
    min_level = _LEVELS.get(level, 20)
    if fmt == "json":
        _state["logger"] = _JsonLogger(stream, min_level)
    else:
        import structlog

        from job.console import Console

        _state["logger"] = None
        color = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        processors: list[Any] = [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            Console(stream, live=tty, color=bool(color), debug=level == "debug"),
        ]
        structlog.configure(
            processors=processors,
            wrapper_class=structlog.make_filtering_bound_logger(min_level),
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
            log = get_logger()
            method = {logging.DEBUG: log.debug, logging.INFO: log.info,
                      logging.WARNING: log.warning}.get(record.levelno, log.error)
            method("library.log", logger=record.name, message=record.getMessage())
        except Exception:
            self.handleError(record)


def is_console() -> bool:
    """True when events are rendered for a person (then ``demo`` need not repeat the summary)."""
    return _state["format"] == "console"


def get_logger(**initial: Any) -> Any:
    logger = _state["logger"]
    if logger is not None:
        return logger.bind(**initial) if initial else logger
    import structlog

    return structlog.get_logger(**initial)
