"""The one place that knows every secret value of this run and scrubs it from any text.

Secret providers register what they fetch; the log processor, the error formatter and the
summary writer all pass their text through ``scrub``. URLs lose their password even when the
value was never registered (e.g. a driver error quoting a DSN).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, quote_plus

_secrets: set[str] = set()
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)@", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)
MASK = "***"


def add(value: str | None) -> None:
    """Remember a secret value (and its URL-encoded spellings) for scrubbing."""
    if not value or len(value) < 3:
        # Scrubbing very short strings would mangle ordinary text and protects nothing.
        return
    # Also the spellings the value takes inside URLs and JSON (non-ASCII escaped as \\uXXXX).
    _secrets.update({value, quote(value, safe=""), quote_plus(value),
                     json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]})


def scrub(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)
    text = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_obj(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_obj(v) for v in value)
    if isinstance(value, BaseException):
        return scrub(str(value))
    return value


def clear() -> None:
    _secrets.clear()
