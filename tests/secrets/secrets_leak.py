"""The leak check every credentials test ends with."""

from __future__ import annotations

from urllib.parse import quote, quote_plus


def spellings(secret: str) -> set[str]:
    """The forms a password takes in text: as is, URL-encoded, JSON-escaped."""
    import json

    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}


def assert_not_leaked(secret: str, *texts: str | bytes | None) -> None:
    """``secret`` (in any usual spelling) appears 0 times in every given text."""
    for i, text in enumerate(texts):
        if text is None:
            continue
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for form in spellings(secret):
            count = text.count(form)
            assert count == 0, f"secret leaked {count} time(s) in text #{i} as {form!r}"
