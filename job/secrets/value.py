"""Turn a secret's text into connection parameters: a PostgreSQL URL, or the RDS JSON shape.

The JSON shape is ``{"username", "password", "host"?, "port"?, "dbname"|"database"?, "engine"?}``.
Whatever the secret leaves out comes from the environment's parameters (an RDS-managed master
secret holds only username and password). The password becomes a libpq keyword as it is, so any
character works; no URL is ever assembled from the parts.

Error messages name the provider, the secret and the missing field, never the value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from job import redact
from job.db import ConnParams
from job.errors import ConfigError

_URL_PREFIXES = ("postgresql://", "postgres://")
_POSTGRES_ENGINES = {"postgres", "postgresql", "aurora-postgresql"}


def register(secret: str | None) -> None:
    """Register a secret for scrubbing, also as it appears inside JSON (``\\u00e9``, ``\\"``)."""
    if not secret:
        return
    redact.add(secret)
    escaped = json.dumps(secret)[1:-1]
    if escaped != secret:
        redact.add(escaped)


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {problem}", secret=where)


def from_url(url: str, base: ConnParams, where: str) -> ConnParams:
    try:
        params = ConnParams.from_url(url, base.params)
    except ConfigError:
        # The parser's own message may quote the URL (and the password in it): say less.
        raise _fail(where, "the value looks like a postgresql:// URL but cannot be parsed "
                    "(percent-encode special characters in the password, or store JSON)") from None
    register(params.password)
    return params


def parse(text: str, base: ConnParams, where: str, *, require_password: bool = True,
          json_key: str | None = None) -> ConnParams:
    """Parse a secret value and merge it over ``base``.

    ``where`` names the secret for messages (``aws secret 'prod/db'``). ``json_key`` selects a
    single key of a JSON object, holding a URL or just the password.
    """
    register(base.password)
    text = text.strip()
    if not text:
        raise _fail(where, "the secret is empty")
    if json_key is not None:
        value = _key(text, json_key, where)
        if value.startswith(_URL_PREFIXES):
            return complete(from_url(value, base, where), where, require_password)
        register(value)
        return complete(base.merged(password=value), where, require_password)
    if text.startswith(_URL_PREFIXES):
        return complete(from_url(text, base, where), where, require_password)
    return complete(_from_json(_json_object(text, where), base, where), where, require_password)


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        # The decoder's message gives a position only, never the text.
        raise _fail(where, "the value is neither a postgresql:// URL nor JSON "
                    f"({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise _fail(where, "the value is JSON but not an object with username and password")
    # Register the password before anything below can fail and print the object.
    if isinstance(obj.get("password"), str):
        register(obj["password"])
    return obj


def _key(text: str, key: str, where: str) -> str:
    obj = _json_object(text, where)
    if key not in obj:
        names = ", ".join(sorted(str(k) for k in obj)) or "none"
        raise _fail(where, f"the JSON has no key {key!r} (keys: {names})")
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise _fail(where, f"the JSON key {key!r} is not a non-empty string")
    return value.strip()


def _from_json(obj: Mapping[str, Any], base: ConnParams, where: str) -> ConnParams:
    engine = obj.get("engine")
    if engine is not None and str(engine).lower() not in _POSTGRES_ENGINES:
        raise _fail(where, f"engine {engine!r} is not PostgreSQL")
    fields: dict[str, str | None] = {}
    for key, kw in (("username", "user"), ("user", "user"), ("password", "password"),
                    ("host", "host"), ("dbname", "dbname"), ("database", "dbname")):
        value = obj.get(key)
        if value is None or fields.get(kw) is not None:
            continue
        if not isinstance(value, str):
            raise _fail(where, f"field {key!r} must be a string")
        fields[kw] = value
    if fields.get("password"):
        register(fields["password"])
    port = obj.get("port")
    if port is not None:
        try:
            port_num = int(port)
        except (TypeError, ValueError):
            raise _fail(where, "field 'port' is not a number") from None
        if not 0 < port_num < 65536:
            raise _fail(where, "field 'port' is out of range")
        fields["port"] = str(port_num)
    merged = dict(base.params)
    if fields.get("host"):
        # A host from the secret replaces every other way the environment named a server.
        for kw in ("hostaddr", "service"):
            merged.pop(kw, None)
    merged.update({k: v for k, v in fields.items() if v})
    return ConnParams(merged)


def complete(params: ConnParams, where: str, require_password: bool) -> ConnParams:
    """Refuse parameters that would make libpq fall back to a silent default."""
    p = params.params
    if not p.get("user"):
        raise _fail(where, "missing field 'username' (and no user in MIGRATE_DATABASE_URL/PGUSER)")
    if require_password and not p.get("password"):
        raise _fail(where, "missing field 'password'")
    if not (p.get("host") or p.get("hostaddr") or p.get("service")):
        raise _fail(where, "no host: the secret has none and MIGRATE_DATABASE_URL/DATABASE_URL/"
                    "PGHOST give none")
    if not (p.get("dbname") or p.get("service")):
        raise _fail(where, "no database name: the secret has no 'dbname' and MIGRATE_DATABASE_URL/"
                    "DATABASE_URL/PGDATABASE give none")
    return params
