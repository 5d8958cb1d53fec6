"""Expected failures, each carrying its CONTRACT exit code.

Raised where the failure is understood; translated to an exit code and the summary once, in
``job.commands``. Anything that is not a ``JobError`` is a bug and exits 1.
"""

from __future__ import annotations

from typing import Any


class JobError(Exception):
    exit_code = 1
    outcome = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(JobError):
    exit_code = 2
    outcome = "config_error"


class DatabaseUnavailable(JobError):
    exit_code = 3
    outcome = "database_unavailable"


class LockTimeout(JobError):
    exit_code = 4
    outcome = "lock_timeout"


class ConcurrentChange(JobError):
    """A race with another writer of the tracking tables (e.g. a yoyo CLI run that ignores
    the lock): nothing of ours was committed, rerunning is safe."""

    exit_code = 4
    outcome = "concurrent_change"


class IntegrityRefusal(JobError):
    exit_code = 5
    outcome = "integrity_refused"


class SafetyRefusal(JobError):
    exit_code = 6
    outcome = "safety_refused"


class BackupError(JobError):
    exit_code = 7
    outcome = "backup_failed"


class MigrationFailed(JobError):
    exit_code = 8
    outcome = "migration_failed"


class VerificationFailed(JobError):
    exit_code = 9
    outcome = "verification_failed"


class PendingMigrations(JobError):
    """Not a failure: ``status`` reports pending migrations with exit 10."""

    exit_code = 10
    outcome = "pending"


class Interrupted(KeyboardInterrupt):
    """Raised from the signal handler.

    A KeyboardInterrupt subclass on purpose: psycopg cancels the in-flight statement on the
    server when a KeyboardInterrupt interrupts a wait, which is exactly what SIGTERM needs.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        # What the interrupted step left (e.g. a non-transactional migration's completed
        # statements and INVALID indexes), for the summary.
        self.details: dict[str, Any] = {}

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
