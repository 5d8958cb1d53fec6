"""Fixtures for the adopt tests: source and fresh databases on the session's real server, and
the npm-installed migration tools (a missing tool fails loudly with the command that installs
it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.adopt.helpers import INSTALL, TOOLS


@pytest.fixture(scope="session")
def node_tools() -> None:
    for name in ("node-pg-migrate", "knex", "typeorm", "dbmate"):
        assert (TOOLS / ".bin" / name).exists(), f"{name} is not installed: run {INSTALL}"


@pytest.fixture
def fresh_url(pg_server: Any) -> Iterator[str]:
    """A second empty database (the source is ``database_url``)."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)
