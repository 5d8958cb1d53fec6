"""Adopting an existing database: ``baseline`` and ``import --from TOOL``.

``commands`` is the pipeline (read, match, convert, write, mark) shared by every tool; each
tool's knowledge lives in its own module behind the ``Importer`` protocol (``model``), imported
only when that tool is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from job.adopt.model import Importer

# --from name -> "module:class"
IMPORTERS = {
    "prisma": "job.adopt.prisma:Prisma",
    "flyway": "job.adopt.flyway:Flyway",
    "golang-migrate": "job.adopt.golang_migrate:GolangMigrate",
    "dbmate": "job.adopt.dbmate:Dbmate",
    "node-pg-migrate": "job.adopt.node_pg_migrate:NodePgMigrate",
    "diesel": "job.adopt.diesel:Diesel",
    "knex": "job.adopt.knex:Knex",
    "typeorm": "job.adopt.knex:TypeORM",
}


def importer(tool: str) -> Importer:
    from job.errors import ConfigError

    target = IMPORTERS.get(tool)
    if target is None:
        raise ConfigError(f"--from {tool!r}: unknown tool (one of {', '.join(IMPORTERS)})")
    module, _, cls = target.partition(":")
    made: Importer = getattr(importlib.import_module(module), cls)()
    return made
