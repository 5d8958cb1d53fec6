"""Team policy for the gate, from `migrate-job.toml` ([safety]) or `pyproject.toml`
([tool.migrate-job.safety]), found in the start directory or the nearest parent that has one."""

from __future__ import annotations

import os
import re
import tomllib
from typing import Any

from .model import CATEGORIES, SafetyConfig

_LIST_KEYS = ("block", "ignore", "enable")
_KEYS = {
    *_LIST_KEYS,
    "pg_version",
    "max_index_columns",
    "index_name_pattern",
    "constraint_name_pattern",
}


def find_config(start_dir: str) -> tuple[str, dict[str, Any]] | None:
    """(path, the [safety] table) of the nearest config file, or None."""
    d = os.path.abspath(start_dir)
    while True:
        own = os.path.join(d, "migrate-job.toml")
        if os.path.isfile(own):
            data = _read(own)
            section = data.get("safety", {})
            return own, _table(section, own, "safety")
        py = os.path.join(d, "pyproject.toml")
        if os.path.isfile(py):
            tool = _read(py).get("tool", {})
            if isinstance(tool, dict) and "migrate-job" in tool:
                mj = _table(tool["migrate-job"], py, "tool.migrate-job")
                return py, _table(mj.get("safety", {}), py, "tool.migrate-job.safety")
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None


def _table(value: Any, path: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: [{key}] must be a table")
    return value


def load_config(start_dir: str) -> SafetyConfig:
    found = find_config(start_dir)
    if found is None:
        return SafetyConfig()
    path, section = found
    prefix = "safety" if path.endswith("migrate-job.toml") else "tool.migrate-job.safety"
    return parse_config(section, path, prefix)


def parse_config(section: dict[str, Any], path: str, prefix: str = "safety") -> SafetyConfig:
    from .rules import RULES

    ids = {r.id for r in RULES}
    for key in section:
        if key not in _KEYS:
            raise ValueError(
                f"{path}: unknown key {prefix}.{key} (known: {', '.join(sorted(_KEYS))})"
            )
    lists: dict[str, frozenset[str]] = {}
    for key in _LIST_KEYS:
        value = section.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}: {prefix}.{key} must be a list of rule ids or categories")
        for v in value:
            if v.upper() not in ids and v.lower() not in CATEGORIES:
                raise ValueError(f"{path}: {prefix}.{key} names unknown rule or category {v!r}")
        lists[key] = frozenset(v.upper() if v.upper() in ids else v.lower() for v in value)
    pg = section.get("pg_version")
    if pg is not None and (not isinstance(pg, int) or isinstance(pg, bool) or pg <= 0):
        raise ValueError(f"{path}: {prefix}.pg_version must be a major version like 16 (or 160004)")
    width = section.get("max_index_columns", 3)
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"{path}: {prefix}.max_index_columns must be a positive integer")
    patterns: dict[str, str | None] = {}
    for key in ("index_name_pattern", "constraint_name_pattern"):
        value = section.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{path}: {prefix}.{key} must be a string (a regular expression)")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(
                    f"{path}: {prefix}.{key} is not a valid regular expression: {exc}"
                ) from None
        patterns[key] = value
    return SafetyConfig(
        block=lists["block"],
        ignore=lists["ignore"],
        enable=lists["enable"],
        pg_version=pg,
        max_index_columns=width,
        index_name_pattern=patterns["index_name_pattern"],
        constraint_name_pattern=patterns["constraint_name_pattern"],
        source=path,
    )
