"""structlog set-up: JSON lines when stderr is not a TTY, console otherwise, redaction always.

Configured once at the edge (``configure``); everywhere else ``get_logger().info("event", k=v)``.
Logs go to stderr so stdout stays for results (``status --json``, ``plan``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from job import redact

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    return {k: redact.scrub_obj(v) for k, v in event_dict.items()}


def configure(log_format: str | None = None, level: str = "info") -> None:
    fmt = log_format or ("console" if sys.stderr.isatty() else "json")
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, 20)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib logging (yoyo, botocore, azure) stay quiet unless asked.
    logging.basicConfig(level=logging.WARNING if level != "debug" else logging.DEBUG,
                        stream=sys.stderr)


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger(**initial)
