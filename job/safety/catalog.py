"""The run-aware model of the target: what exists before each statement of the run.

The gate walks the pending migrations as one sequence, in the order `run` applies them. This
model starts from the target database's catalog when connected (`plan`, `run`) or from nothing
(`lint`, where an object no migration created is *unknown*: it may exist and may hold data), and
every statement updates it: objects created by an earlier statement of the run are *new* (no
traffic, no data from before the run), dropped ones are gone, renames keep the object's identity
so a data probe still finds it under its database name.

Names are folded by the parser already; a name is qualified here by the schema it resolves to
through `search_path` (pg_temp and pg_catalog first, as PostgreSQL does). Standard library only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Object states as rules see them.
NEW = "new"  # created by an earlier statement of this run
EXISTING = "existing"  # present in the target database before the run
ABSENT = "absent"  # connected, and neither in the database nor created by the run
UNKNOWN = "unknown"  # offline, and not created by these migrations: may exist, may hold data
SYSTEM = "system"  # a system catalog (pg_catalog, information_schema)

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")

# Namespaces: PostgreSQL keeps relations (tables, views, sequences, indexes, ...) in one
# namespace per schema, types and functions in others.
REL, TYPE, FUNC, EXT = "rel", "type", "func", "ext"


@dataclass
class Column:
    type: Any = None  # tree.TypeInfo, None when unknown
    generated: str = ""  # "s" stored, "v" virtual, "" plain
    notnull: bool = False
    origin: str = NEW  # NEW (added by the run) or EXISTING
    db_name: str | None = None  # its name in the database before the run (EXISTING only)


@dataclass
class Check:
    validated: bool
    not_null: tuple[str, ...] = ()  # columns `CHECK (col IS NOT NULL [AND ...])` proves non-null
    columns: tuple[str, ...] = ()  # columns the expression reads


@dataclass
class Obj:
    kind: str  # table, partitioned, view, matview, sequence, index, foreign, type, function
    origin: str  # NEW, EXISTING or UNKNOWN (a placeholder for an object the run only altered)
    db_name: str | None = None  # schema.name in the database before the run (EXISTING only)
    temp: bool = False
    table: str | None = None  # for an index: the table it belongs to
    columns: dict[str, Column] | None = None  # None: not known (yet)
    checks: dict[str, Check] | None = None  # CHECK constraints by name; None: not known (yet)
    constraints: dict[str, str] = field(default_factory=dict)  # other constraints: name -> contype


@dataclass(frozen=True)
class Ref:
    """A name resolved against the model."""

    name: str  # schema.name when the schema is known, else the name as written
    status: str  # NEW / EXISTING / ABSENT / UNKNOWN / SYSTEM
    obj: Obj | None

    @property
    def fresh(self) -> bool:
        """No traffic on it and no data from before the run: created by the run, or absent."""
        return self.status in (NEW, ABSENT)

    @property
    def existing(self) -> bool:
        return self.status == EXISTING


class CatalogSource(Protocol):
    """What the model asks the target database (read-only catalog queries, no locks).

    `relations`, `types`, `functions` and `schemas` are read once; columns and CHECK
    constraints only for the existing tables a migration touches.
    """

    def search_path(self) -> list[str]: ...

    def schemas(self) -> Iterable[str]: ...

    def relations(self) -> Iterable[tuple[str, str, str, bool]]:
        """(schema, name, kind, temp) of every user relation; kind as in Obj.kind."""
        ...

    def types(self) -> Iterable[tuple[str, str]]: ...

    def functions(self) -> Iterable[tuple[str, str]]: ...

    def extensions(self) -> Iterable[str]: ...

    def columns(self, schema: str, table: str) -> Mapping[str, Column]: ...

    def checks(self, schema: str, table: str) -> Mapping[str, Check]: ...

    def constraints(self, schema: str, table: str) -> Mapping[str, str]: ...


def split(name: str) -> tuple[str | None, str]:
    if "." in name:
        schema, _, base = name.rpartition(".")
        return schema, base
    return None, name


class Catalog:
    def __init__(self, source: CatalogSource | None = None,
                 search_path: Sequence[str] = ("public",)) -> None:
        self.source = source
        self.complete = source is not None
        self.objects: dict[tuple[str, str], Obj] = {}  # (namespace, schema.name) -> Obj
        self.schemas: dict[str, str] = {}  # schema -> origin
        self.search_path: list[str] = list(source.search_path() if source else search_path)
        self._undo: list[list[tuple[str, Any, Any]]] | None = None  # stack of undo logs
        # What a CREATE makes: NEW during the run; EXISTING while replaying migrations that
        # are assumed applied already (`lint --assume-applied`), so they seed the model.
        self.new_origin = NEW
        if source is not None:
            for s in source.schemas():
                self.schemas[s] = EXISTING
            for schema, name, kind, temp in source.relations():
                q = f"{schema}.{name}"
                self.objects[(REL, q)] = Obj(kind, EXISTING, db_name=q, temp=temp)
            for schema, name in source.types():
                q = f"{schema}.{name}"
                self.objects[(TYPE, q)] = Obj("type", EXISTING, db_name=q)
            for schema, name in source.functions():
                q = f"{schema}.{name}"
                self.objects[(FUNC, q)] = Obj("function", EXISTING, db_name=q)
            for name in source.extensions():
                self.objects[(EXT, name)] = Obj("extension", EXISTING, db_name=name)
        self.schemas.setdefault("public", EXISTING if source is None else self.schemas.get(
            "public", ABSENT))
        if self.schemas.get("public") == ABSENT:
            del self.schemas["public"]

    # -- names -----------------------------------------------------------------------------

    def _path(self, ns: str) -> list[str]:
        path = [s for s in self.search_path if s]
        implicit = ["pg_catalog"] if "pg_catalog" not in path else []
        temp = ["pg_temp"] if ns == REL and "pg_temp" not in path else []
        return temp + implicit + path

    def creation_schema(self, temp: bool = False) -> str | None:
        """Where an unqualified CREATE puts the object: the first existing schema of the path."""
        if temp:
            return "pg_temp"
        for s in self.search_path:
            if s in ("pg_temp", "pg_catalog") or not s:
                continue
            if s in self.schemas or not self.complete:
                return s
        return None

    def resolve(self, name: str | None, ns: str = REL) -> Ref:
        if not name:
            return Ref("?", UNKNOWN, None)
        if ns == EXT:
            ext = self.objects.get((EXT, name))
            if ext is not None:
                return Ref(name, _status(ext), ext)
            return Ref(name, ABSENT if self.complete else UNKNOWN, None)
        schema, base = split(name)
        if schema is not None:
            if schema in SYSTEM_SCHEMAS:
                return Ref(name, SYSTEM, None)
            obj = self.objects.get((ns, name))
            if obj is not None:
                return Ref(name, _status(obj), obj)
            return Ref(name, ABSENT if self.complete else UNKNOWN, None)
        for s in self._path(ns):
            obj = self.objects.get((ns, f"{s}.{base}"))
            if obj is not None:
                return Ref(f"{s}.{base}", _status(obj), obj)
        if base.startswith("pg_") and ns == REL:
            return Ref(f"pg_catalog.{base}", SYSTEM, None)
        if self.complete:
            where = self.creation_schema()
            return Ref(f"{where}.{base}" if where else base, ABSENT, None)
        return Ref(base, UNKNOWN, None)

    def placeholder(self, name: str | None, kind: str = "table") -> Obj | None:
        """The model entry of an unknown object the run alters, so what the run adds to it
        (columns, constraints) is known later. Existing objects get their columns loaded."""
        ref = self.resolve(name)
        if ref.obj is not None:
            self._load(ref)
            return ref.obj
        if ref.status != UNKNOWN or not name:
            return None
        schema, base = split(name)
        key = f"{schema or self.creation_schema() or 'public'}.{base}"
        obj = Obj(kind, UNKNOWN, columns={}, checks={})
        self._put((REL, key), obj)
        return obj

    def _load(self, ref: Ref) -> None:
        obj = ref.obj
        if obj is None or obj.origin != EXISTING or self.source is None or obj.db_name is None:
            return
        if obj.kind not in ("table", "partitioned", "foreign", "matview", "view"):
            return
        schema, base = split(obj.db_name)
        if obj.columns is None:
            obj.columns = {k: copy.copy(v) for k, v in self.source.columns(schema or "", base)
                           .items()}
        if obj.checks is None:
            obj.checks = dict(self.source.checks(schema or "", base))
            obj.constraints.update(self.source.constraints(schema or "", base))

    def table(self, name: str | None) -> tuple[Ref, Obj | None]:
        """A table with its columns and CHECK constraints loaded (when it exists)."""
        ref = self.resolve(name)
        self._load(ref)
        return ref, ref.obj

    def column(self, table: str | None, col: str) -> Column | None:
        _, obj = self.table(table)
        if obj is None or obj.columns is None:
            return None
        return obj.columns.get(col)

    def column_status(self, table: str | None, col: str) -> str:
        """NEW when the run added the column (or the table), EXISTING/UNKNOWN otherwise."""
        ref, obj = self.table(table)
        if ref.fresh:
            return NEW
        if obj is None or obj.columns is None:
            return ref.status
        c = obj.columns.get(col)
        if c is None:
            return ABSENT if ref.status == EXISTING else UNKNOWN
        return c.origin if ref.status == EXISTING or c.origin == NEW else UNKNOWN

    # -- changes ---------------------------------------------------------------------------

    def _put(self, key: tuple[str, str], obj: Obj | None) -> None:
        if self._undo:
            self._undo[-1].append(("obj", key, self.objects.get(key)))
        if obj is None:
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj

    def _touch(self, key: tuple[str, str]) -> Obj | None:
        """The object at key, ready to be changed in place (copied first inside a transaction
        that may roll back)."""
        obj = self.objects.get(key)
        if obj is not None and self._undo:
            self._undo[-1].append(("obj", key, obj))
            obj = copy.deepcopy(obj)
            self.objects[key] = obj
        return obj

    def create(self, name: str | None, kind: str, *, ns: str = REL, temp: bool = False,
               if_not_exists: bool = False, columns: dict[str, Column] | None = None,
               checks: dict[str, Check] | None = None, table: str | None = None) -> Obj | None:
        if not name:
            return None
        schema, base = split(name)
        if temp:
            schema = "pg_temp"
        if schema is None:
            schema = self.creation_schema(temp) or "public"
        qualified = base if ns == EXT else f"{schema}.{base}"
        key = (ns, qualified)
        if if_not_exists:
            # CREATE .. IF NOT EXISTS is a no-op when the object is there, or may be there.
            current = self.resolve(qualified, ns)
            if current.status in (EXISTING, NEW, UNKNOWN) and (
                    current.obj is not None or current.status == UNKNOWN):
                return current.obj
        obj = Obj(kind, self.new_origin, temp=temp or schema == "pg_temp", table=table,
                  columns=columns if columns is not None else ({} if ns == REL else None),
                  checks=checks if checks is not None else {})
        if self.new_origin == EXISTING:
            obj.db_name = qualified
            for name, col in (obj.columns or {}).items():
                col.origin, col.db_name = EXISTING, name
        self._put(key, obj)
        return obj

    def drop(self, name: str | None, ns: str = REL) -> None:
        ref = self.resolve(name, ns)
        if ref.obj is not None:
            self._put((ns, ref.name), None)
            if ns == REL:
                for key, obj in list(self.objects.items()):
                    if key[0] == REL and obj.table == ref.name:  # its indexes go with it
                        self._put(key, None)

    def rename(self, name: str | None, new_base: str, ns: str = REL) -> None:
        ref = self.resolve(name, ns)
        if ref.obj is None:
            return
        schema, _ = split(ref.name)
        target = f"{schema}.{new_base}" if schema else new_base
        self._put((ns, ref.name), None)
        self._put((ns, target), ref.obj)
        for key, obj in list(self.objects.items()):
            if key[0] == REL and obj.table == ref.name:
                moved = self._touch(key)
                if moved is not None:
                    moved.table = target

    def set_schema(self, name: str | None, new_schema: str, ns: str = REL) -> None:
        ref = self.resolve(name, ns)
        if ref.obj is None:
            return
        _, base = split(ref.name)
        self._put((ns, ref.name), None)
        self._put((ns, f"{new_schema}.{base}"), ref.obj)

    def create_schema(self, name: str, if_not_exists: bool = False) -> None:
        if if_not_exists and (name in self.schemas or not self.complete):
            return
        if self._undo:
            self._undo[-1].append(("schema", name, self.schemas.get(name)))
        self.schemas[name] = self.new_origin

    def schema_status(self, name: str) -> str:
        if name in SYSTEM_SCHEMAS or name.startswith("pg_"):
            return SYSTEM
        origin = self.schemas.get(name)
        if origin is not None:
            return origin
        return ABSENT if self.complete else UNKNOWN

    def schema_tables(self, name: str) -> list[Obj]:
        return [o for (ns, q), o in self.objects.items()
                if ns == REL and split(q)[0] == name and o.kind in ("table", "partitioned")]

    def drop_schema(self, name: str) -> None:
        if self._undo:
            self._undo[-1].append(("schema", name, self.schemas.get(name)))
        self.schemas.pop(name, None)
        for key in [k for k in self.objects if split(k[1])[0] == name]:
            self._put(key, None)

    def rename_schema(self, old: str, new: str) -> None:
        if self._undo:
            self._undo[-1].append(("schema", old, self.schemas.get(old)))
            self._undo[-1].append(("schema", new, self.schemas.get(new)))
        origin = self.schemas.pop(old, UNKNOWN)
        self.schemas[new] = origin
        for key in [k for k in self.objects if split(k[1])[0] == old]:
            obj = self.objects[key]
            self._put(key, None)
            self._put((key[0], f"{new}.{split(key[1])[1]}"), obj)

    def alter(self, name: str | None) -> Obj | None:
        """The table's entry, loaded and ready to be changed (a placeholder when unknown)."""
        ref = self.resolve(name)
        if ref.obj is None:
            if ref.status != UNKNOWN:
                return None
            self.placeholder(name)
            ref = self.resolve(name)
        self._load(ref)
        return self._touch((REL, ref.name))

    def set_search_path(self, path: Sequence[str]) -> None:
        if self._undo:
            self._undo[-1].append(("path", None, list(self.search_path)))
        self.search_path = [p for p in path]

    # -- transactions: a ROLLBACK undoes what the model learnt since BEGIN -------------------

    def begin(self) -> None:
        if self._undo is None:
            self._undo = []
        self._undo.append([])

    def commit(self) -> None:
        if not self._undo:
            return
        done = self._undo.pop()
        if self._undo:  # a released savepoint: its undo entries belong to the outer level
            self._undo[-1].extend(done)
        else:
            self._undo = None

    def rollback(self) -> None:
        if not self._undo:
            return
        for what, key, old in reversed(self._undo.pop()):
            if what == "obj":
                if old is None:
                    self.objects.pop(key, None)
                else:
                    self.objects[key] = old
            elif what == "schema":
                if old is None:
                    self.schemas.pop(key, None)
                else:
                    self.schemas[key] = old
            elif what == "path":
                self.search_path = old
        if not self._undo:
            self._undo = None

    @property
    def in_transaction(self) -> bool:
        return bool(self._undo)


def _status(obj: Obj) -> str:
    return obj.origin if obj.origin in (NEW, EXISTING) else UNKNOWN
