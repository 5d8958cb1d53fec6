"""The safety gate: destructive and locking analysis of migrations on the real PostgreSQL grammar.

Used by `plan` and `run` (with the server's version and table sizes) and by `lint` (offline).
Importing this package is cheap: the libpg_query binding loads on the first analysis.

    report = analyze(files, server_version_num=150004, stats=PgStats(conn), config=load_config("."))
    if report.blocking(): ...  # exit 6, nothing changed
"""

from __future__ import annotations

from .config import load_config
from .engine import analyze
from .lint import lint_main
from .model import (
    Approval,
    Finding,
    Report,
    SafetyConfig,
    SqlFile,
    StatsProvider,
    TableStats,
)
from .report import FORMATS, render

__all__ = [
    "FORMATS",
    "Approval",
    "Finding",
    "Report",
    "SafetyConfig",
    "SqlFile",
    "StatsProvider",
    "TableStats",
    "analyze",
    "lint_main",
    "load_config",
    "render",
]
