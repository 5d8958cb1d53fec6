"""Turns a migration file into parse trees of the real PostgreSQL grammar, with file lines.

libpg_query is reached through postgast (BSD-2-Clause; pglast is GPL-3 and not usable here).
We ask libpg_query for its JSON parse tree rather than postgast's protobuf objects: the JSON
keeps the node and enum names of the PostgreSQL source (`AlterTableStmt`, `AT_DropColumn`) that
the rule catalogue is written in, and `json.loads` is faster than building Python objects.
The binding is imported on first use so `migrate-job run` without pending work never loads it.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Node = dict[str, Any]


class ParseError(Exception):
    def __init__(self, message: str, cursorpos: int) -> None:
        super().__init__(message)
        self.message = message
        self.cursorpos = cursorpos  # 1-based byte offset into the parsed text, 0 when unknown


@dataclass(frozen=True)
class Statement:
    kind: str  # top node name, e.g. "AlterTableStmt"
    node: Node  # the node's fields
    line: int  # 1-based line of the statement's first token in the file
    text: str  # the statement's source text

    def short(self, limit: int = 160) -> str:
        one = " ".join(self.text.split())
        return one if len(one) <= limit else one[: limit - 1] + "…"


@dataclass(frozen=True)
class Problem:
    """Something that stopped analysis of part of the file (rule id AN01/AN02)."""

    rule: str
    line: int
    message: str


@dataclass
class ParsedFile:
    statements: list[Statement] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


_parse_json: Callable[[str], Any] | None = None


def _binding() -> Callable[[str], Any]:
    """Load libpg_query once, through postgast's ctypes declarations only."""
    global _parse_json
    if _parse_json is None:
        lib = _native_lib()

        def parse_json(sql: str) -> Any:
            result = lib.pg_query_parse(sql.encode("utf-8"))
            try:
                if result.error:
                    err = result.error.contents
                    message = err.message.decode("utf-8") if err.message else "unknown error"
                    raise ParseError(message, err.cursorpos or 0)
                return json.loads(result.parse_tree)
            finally:
                lib.pg_query_free_parse_result(result)

        _parse_json = parse_json
    return _parse_json


def _native_lib() -> Any:
    """postgast's ``native`` module (the ctypes handle and signatures), without importing the
    postgast package: its ``__init__`` loads the protobuf bindings and generated node
    classes (~50 ms) that the JSON entry point never uses. ``native`` needs only ctypes; if
    that ever changes, the package import is the fallback."""
    import importlib
    import importlib.util
    import os
    import sys

    name = "postgast.native"
    if name in sys.modules:
        return sys.modules[name].lib
    try:
        spec = importlib.util.find_spec("postgast")
        locations = list(spec.submodule_search_locations or []) if spec else []
        path = os.path.join(locations[0], "native.py")
        module_spec = importlib.util.spec_from_file_location("_migrate_job_pg_query", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.lib
    except Exception:
        # importlib, not `import`: postgast 0.2's generated .pyi has syntax mypy rejects.
        return importlib.import_module(name).lib


def parse_sql(sql: str) -> Any:
    """The raw libpg_query JSON tree: {"version": ..., "stmts": [{"stmt": ..., ...}]}."""
    return _binding()(sql)


def parser_version() -> str:
    tree = parse_sql("SELECT 1")
    return str(tree.get("version", "unknown"))


class _Lines:
    """Maps byte offsets of the UTF-8 text (what libpg_query reports) to 1-based lines."""

    def __init__(self, raw: bytes) -> None:
        # bytes.find in C: a per-byte Python loop cost ~0.1 ms per KiB of SQL.
        newlines = []
        i = raw.find(b"\n")
        while i >= 0:
            newlines.append(i)
            i = raw.find(b"\n", i + 1)
        self.newlines = newlines

    def line(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1


def parse_file(text: str) -> ParsedFile:
    raw = text.encode("utf-8")
    lines = _Lines(raw)
    out = ParsedFile()
    try:
        tree = parse_sql(text)
    except ParseError:
        _parse_piecewise(text, raw, lines, out)
        return out
    _collect(tree, raw, 0, lines, out)
    return out


def _collect(tree: Any, raw: bytes, base: int, lines: _Lines, out: ParsedFile) -> None:
    for raw_stmt in tree.get("stmts", []):
        stmt = raw_stmt.get("stmt")
        if not stmt:
            continue
        start = base + raw_stmt.get("stmt_location", 0)
        length = raw_stmt.get("stmt_len", 0)
        end = start + length if length else len(raw)
        # libpg_query's stmt_location may point at whitespace/comments before the first token.
        snippet = raw[start:end].decode("utf-8", "replace")
        first = _first_token_offset(snippet)
        kind, node = next(iter(stmt.items()))
        line = lines.line(start + len(snippet[:first].encode("utf-8")))
        out.statements.append(Statement(kind, node, line, snippet[first:].strip()))


_TOKEN_SKIP = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)


def _first_token_offset(snippet: str) -> int:
    m = _TOKEN_SKIP.match(snippet)
    return m.end() if m else 0


def _parse_piecewise(text: str, raw: bytes, lines: _Lines, out: ParsedFile) -> None:
    """The whole file did not parse: find psql meta-commands, then parse statement by statement
    so one bad statement neither hides the others nor crashes the gate."""
    pieces, metas, lex_error = split_statements(text)
    for offset in metas:
        line = lines.line(len(text[:offset].encode("utf-8")))
        cmd = text[offset:].split("\n", 1)[0].strip()
        out.problems.append(
            Problem(
                "AN02",
                line,
                f"psql meta-command `{cmd[:60]}` at line {line}: migrate-job sends SQL to the "
                "server, not to psql, so this would fail at deploy time",
            )
        )
    for start, piece in pieces:
        byte_start = len(text[:start].encode("utf-8"))
        try:
            tree = parse_sql(piece)
        except ParseError as exc:
            pos = max(exc.cursorpos - 1, 0)
            line = lines.line(byte_start + pos) if exc.cursorpos else lines.line(byte_start)
            out.problems.append(
                Problem(
                    "AN01",
                    line,
                    f"could not parse: line {line}: {exc.message}; this statement was not analysed",
                )
            )
            continue
        _collect(tree, raw, byte_start, lines, out)
    if lex_error is not None:
        line = lines.line(len(text[: lex_error[0]].encode("utf-8")))
        out.problems.append(
            Problem(
                "AN01",
                line,
                f"could not parse: line {line}: {lex_error[1]}; rest of file not analysed",
            )
        )
    out.statements.sort(key=lambda s: s.line)


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def split_statements(text: str) -> tuple[list[tuple[int, str]], list[int], tuple[int, str] | None]:
    """Split SQL on top-level semicolons the way psql's lexer does, blanking meta-commands.

    Returns (pieces as (char offset, text)), offsets of meta-commands, and an unterminated
    quote/comment as (offset, message) if the text ends inside one.
    """
    pieces: list[tuple[int, str]] = []
    metas: list[int] = []
    buf: list[str] = []
    start = 0
    i, n = 0, len(text)

    def flush(end: int) -> None:
        nonlocal buf, start
        piece = "".join(buf)
        if piece.strip() and not _only_comments(piece):
            pieces.append((start, piece))
        buf = []
        start = end

    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            buf.append(text[i:j])
            i = j
        elif c == "/" and text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                flush(i)
                return pieces, metas, (i, "unterminated /* comment")
            buf.append(text[i:j])
            i = j
        elif c == "'" or c == '"':
            backslash = (
                c == "'" and i > 0 and text[i - 1] in "eE" and not _ident_char_before(text, i - 1)
            )
            j = i + 1
            while j < n:
                if backslash and text[j] == "\\":
                    j += 2
                    continue
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                flush(i)
                return pieces, metas, (i, "unterminated quoted string")
            buf.append(text[i : j + 1])
            i = j + 1
        elif c == "$" and not _ident_char_before(text, i):
            m = _DOLLAR.match(text, i)
            if m is None:
                buf.append(c)
                i += 1
                continue
            tag = m.group(0)
            j = text.find(tag, m.end())
            if j < 0:
                flush(i)
                return pieces, metas, (i, f"unterminated dollar-quoted string {tag}")
            buf.append(text[i : j + len(tag)])
            i = j + len(tag)
        elif c == "\\":
            # psql reads a backslash outside quotes as a meta-command up to the end of the line.
            metas.append(i)
            j = text.find("\n", i)
            j = n if j < 0 else j
            buf.append(" " * (j - i))
            i = j
        elif c == ";":
            buf.append(c)
            i += 1
            flush(i)
        else:
            buf.append(c)
            i += 1
    flush(n)
    return pieces, metas, None


def _ident_char_before(text: str, i: int) -> bool:
    return i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")


def _only_comments(piece: str) -> bool:
    stripped = _TOKEN_SKIP.sub("", piece)
    return stripped.strip() in ("", ";")
