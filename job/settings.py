"""Settings: every knob of CONTRACT.md, read once from flags and environment, validated up front.

Nothing below the CLI reads ``os.environ``; it gets a frozen ``Settings``. Every bad value is
reported with the variable that carries it, and all of them at once, so an operator fixes a
manifest in one round.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from job.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

# libpq's own environment variables, mapped to connection keywords. Used when no URL is set.
LIBPQ_ENV = {
    "PGHOST": "host",
    "PGHOSTADDR": "hostaddr",
    "PGPORT": "port",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGDATABASE": "dbname",
    "PGPASSFILE": "passfile",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
    "PGSSLCERT": "sslcert",
    "PGSSLKEY": "sslkey",
    "PGSSLCRL": "sslcrl",
    "PGSERVICE": "service",
    "PGSERVICEFILE": "servicefile",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
    "PGCHANNELBINDING": "channel_binding",
    "PGGSSENCMODE": "gssencmode",
}


def parse_duration(text: str, name: str) -> float:
    """``500ms``, ``5s``, ``10m``, ``1h`` or plain seconds -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{name}={text!r} is not a duration (use 500ms, 5s, 10m, 1h or seconds)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _bool(text: str, name: str) -> bool:
    v = text.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{name}={text!r} is not a boolean (true/false)")


def _int(text: str, name: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{name}={text!r} must be at least {minimum}")
    return value


def _choice(text: str, name: str, choices: tuple[str, ...]) -> str:
    v = text.strip().lower()
    if v not in choices:
        raise ValueError(f"{name}={text!r} must be one of: {', '.join(choices)}")
    return v


_ENVIRONMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def environment_name(text: str, name: str) -> str:
    v = text.strip()
    if not _ENVIRONMENT_NAME.match(v):
        raise ValueError(f"{name}={text!r} is not an environment name (letters, digits, '.', "
                         "'_' and '-', at most 63 characters, e.g. staging or production)")
    return v


def _schema_list(text: str, name: str) -> tuple[str, ...]:
    items = [s.strip() for s in text.split(",")]
    if not all(items):
        raise ValueError(f"{name}={text!r} must be a comma-separated list of schema names")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    libpq_params: Mapping[str, str] = field(default_factory=dict)
    secret_source: str = "env"
    secret_file: str | None = None
    aws_secret_id: str | None = None
    aws_secret_key: str | None = None
    azure_vault_url: str | None = None
    azure_secret_name: str | None = None
    azure_secret_version: str | None = None
    auth: str = "password"
    migrations_dir: str = "./migrations"
    db_wait: float = 60.0
    lock_wait: float = 600.0
    lock_timeout: float = 5.0
    lock_retries: int = 5
    statement_timeout: float = 0.0
    # Interval of progress events during a long statement, backup or restore (0: none).
    heartbeat: float = 10.0
    tx_mode: str = "each"
    # Which migrations `run`/`exec` apply: `pre` (before the new version starts), `post` (after
    # it is live: the contract steps of expand/contract) or `all` (docs/rollout.md).
    phase: str = "all"
    allow_destructive: bool = False
    backup: str = "none"
    backup_keep: int = 0
    backup_verify: str = "list"
    scratch_database_url: str | None = None
    on_unknown: str = "warn"
    # Issue 14: the environment stamp, schema drift and the schemas whose drift is watched.
    environment: str | None = None
    on_schema_drift: str = "fail"
    managed_schemas: tuple[str, ...] = ()
    log_format: str | None = None
    log_level: str = "info"
    # None outside Kubernetes unless configured: /dev/termination-log is a Kubernetes
    # convention, and a root process elsewhere must not write to /dev.
    termination_log: str | None = None
    github_step_summary: str | None = None
    notify_url: str | None = None
    config_dir: str = "."
    # Who runs the job, for the run history; never derived from the passwd database (a container
    # UID often has no entry, which is how yoyo loses its records).
    user: str = "unknown"
    hostname: str = "unknown"
    image: str | None = None
    # The whole environment the job started with, for the secret providers' SDK credential chains.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_database(self) -> bool:
        return bool(self.database_url) or bool(
            {"host", "hostaddr", "dbname", "service"} & set(self.libpq_params)
        )


# (environment variable, Settings field, parser). Flags use the same field names.
def _spec() -> list[tuple[str, str, Any]]:
    dur = parse_duration
    return [
        ("MIGRATE_SECRET_SOURCE", "secret_source",
         lambda v, n: _choice(v, n, ("env", "file", "aws", "azure"))),
        ("MIGRATE_SECRET_FILE", "secret_file", None),
        ("MIGRATE_AWS_SECRET_ID", "aws_secret_id", None),
        ("MIGRATE_AWS_SECRET_KEY", "aws_secret_key", None),
        ("MIGRATE_AZURE_VAULT_URL", "azure_vault_url", None),
        ("MIGRATE_AZURE_SECRET_NAME", "azure_secret_name", None),
        ("MIGRATE_AZURE_SECRET_VERSION", "azure_secret_version", None),
        ("MIGRATE_AUTH", "auth", lambda v, n: _choice(v, n, ("password", "rds-iam", "azure-ad"))),
        ("MIGRATE_MIGRATIONS_DIR", "migrations_dir", None),
        ("MIGRATE_DB_WAIT", "db_wait", dur),
        ("MIGRATE_LOCK_WAIT", "lock_wait", dur),
        ("MIGRATE_LOCK_TIMEOUT", "lock_timeout", dur),
        ("MIGRATE_LOCK_RETRIES", "lock_retries", _int),
        ("MIGRATE_STATEMENT_TIMEOUT", "statement_timeout", dur),
        ("MIGRATE_HEARTBEAT", "heartbeat", dur),
        ("MIGRATE_TX_MODE", "tx_mode", lambda v, n: _choice(v, n, ("each", "all"))),
        ("MIGRATE_ALLOW_DESTRUCTIVE", "allow_destructive", _bool),
        ("MIGRATE_PHASE", "phase", lambda v, n: _choice(v, n, ("pre", "post", "all"))),
        ("MIGRATE_BACKUP", "backup", None),
        ("MIGRATE_BACKUP_KEEP", "backup_keep", _int),
        ("MIGRATE_BACKUP_VERIFY", "backup_verify",
         lambda v, n: _choice(v, n, ("list", "full"))),
        ("MIGRATE_SCRATCH_DATABASE_URL", "scratch_database_url", None),
        ("MIGRATE_ON_UNKNOWN", "on_unknown", lambda v, n: _choice(v, n, ("warn", "fail"))),
        ("MIGRATE_LOG_FORMAT", "log_format", lambda v, n: _choice(v, n, ("json", "console"))),
        ("MIGRATE_LOG_LEVEL", "log_level",
         lambda v, n: _choice(v, n, ("debug", "info", "warning", "error"))),
        ("MIGRATE_TERMINATION_LOG", "termination_log", None),
        ("GITHUB_STEP_SUMMARY", "github_step_summary", None),
        ("MIGRATE_NOTIFY_URL", "notify_url", None),
        ("MIGRATE_CONFIG_DIR", "config_dir", None),
        ("MIGRATE_IMAGE", "image", None),
        ("MIGRATE_ENVIRONMENT", "environment", environment_name),
        ("MIGRATE_ON_SCHEMA_DRIFT", "on_schema_drift",
         lambda v, n: _choice(v, n, ("fail", "warn"))),
        ("MIGRATE_MANAGED_SCHEMAS", "managed_schemas", _schema_list),
    ]


ENV_VARS = tuple(name for name, _, _ in _spec())
# Read directly (not through _spec): the URL (with its DATABASE_URL fallback) and the backup
# tools' directory, which the backup package reads from the environment it is handed.
EXTRA_ENV_VARS = ("MIGRATE_DATABASE_URL", "MIGRATE_PG_BIN_DIR")
# MIGRATE_* names this repository's own workflows and test tooling use; not settings, but not
# typos either, so they get no warning.
TOOLING_ENV_VARS = ("MIGRATE_JOB_IMAGE", "MIGRATE_TASK_FAMILY", "MIGRATE_SKIP_IMAGE_TESTS",
                    "MIGRATE_IMAGE_CONTEXT", "MIGRATE_PODMAN_ROOT", "MIGRATE_PODMAN_BASE_IMAGE",
                    "MIGRATE_BASE_IMAGE", "MIGRATE_JOB_CLI")
TERMINATION_LOG_IN_KUBERNETES = "/dev/termination-log"


def known_variables() -> tuple[str, ...]:
    """Every MIGRATE_* variable the job reads. Derived from _spec(), so a setting added there
    is known here without another list to update."""
    return tuple(name for name, _, _ in _spec() if name.startswith("MIGRATE_")) + EXTRA_ENV_VARS


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``MIGRATE_*`` variables that are not settings, each with the closest known name (or
    None): ``MIGRATE_LOCKWAIT`` -> ``MIGRATE_LOCK_WAIT``. A typo must not pass silently."""
    known = known_variables()
    out: list[tuple[str, str | None]] = []
    for name in sorted(environ):
        if not name.startswith("MIGRATE_") or name in known or name in TOOLING_ENV_VARS:
            continue
        import difflib  # only for a typo: ~1 ms of every start-up otherwise

        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        out.append((name, close[0] if close else None))
    return out


def load(environ: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from the environment, then flags (flags win). Raises ConfigError."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    for env_name, attr, parse in _spec():
        raw = flags.get(attr, environ.get(env_name))
        if attr == "termination_log" and raw == "":
            values[attr] = None  # set but empty: explicitly no termination message
            continue
        if raw is None or (isinstance(raw, str) and raw == "" and attr != "backup"):
            continue
        if parse is None or not isinstance(raw, str):
            values[attr] = raw
            continue
        try:
            values[attr] = parse(raw, f"--{attr.replace('_', '-')}" if attr in flags else env_name)
        except ValueError as exc:
            problems.append(str(exc))

    url = flags.get("database_url") or environ.get("MIGRATE_DATABASE_URL") or environ.get(
        "DATABASE_URL"
    )
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            # Never echo the value: it may hold a password.
            problems.append(
                "MIGRATE_DATABASE_URL/DATABASE_URL must start with postgresql:// or postgres://"
            )
        values["database_url"] = url
    if "termination_log" not in values and "termination_log" not in flags and environ.get(
            "KUBERNETES_SERVICE_HOST"):
        values["termination_log"] = TERMINATION_LOG_IN_KUBERNETES
    values["libpq_params"] = {
        kw: environ[env] for env, kw in LIBPQ_ENV.items() if environ.get(env)
    }
    values["user"] = environ.get("USER") or environ.get("LOGNAME") or "unknown"
    values["hostname"] = environ.get("HOSTNAME") or _node()
    values["environ"] = dict(environ)

    settings = Settings(**values)
    problems.extend(_cross_checks(settings))
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems), problems=problems)
    return settings


def _cross_checks(s: Settings) -> list[str]:
    problems = []
    if s.secret_source == "file" and not s.secret_file:
        problems.append("MIGRATE_SECRET_SOURCE=file needs MIGRATE_SECRET_FILE")
    if s.secret_source == "aws" and not s.aws_secret_id:
        problems.append("MIGRATE_SECRET_SOURCE=aws needs MIGRATE_AWS_SECRET_ID")
    if s.secret_source == "azure" and not (s.azure_vault_url and s.azure_secret_name):
        problems.append(
            "MIGRATE_SECRET_SOURCE=azure needs MIGRATE_AZURE_VAULT_URL and "
            "MIGRATE_AZURE_SECRET_NAME"
        )
    if s.backup != "none" and not s.backup.startswith(("file://", "s3://", "azblob://")):
        problems.append(
            f"MIGRATE_BACKUP={s.backup!r} must be none, file:///path, s3://bucket/prefix "
            "or azblob://account/container/prefix"
        )
    return problems


def _node() -> str:
    import socket

    return socket.gethostname()
