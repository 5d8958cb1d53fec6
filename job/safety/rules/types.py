"""Type-change facts: which changes lose data, which skip the table rewrite.

`None` means the answer depends on something the text does not show (usually the column's
current type, unknown when the table was not created by a migration in this run).
"""

from __future__ import annotations

from ..tree import TypeInfo

_INTS = {"int2": 2, "int4": 4, "int8": 8}
_FLOATS = {"float4", "float8"}
_TEXTY = {"text", "varchar", "bpchar", "citext"}


def lossy(old: TypeInfo | None, new: TypeInfo | None) -> bool | None:
    """True when converting old -> new can silently round/truncate or narrows the range."""
    if new is None:
        return None
    if old is None:
        return None
    if old == new:
        return False
    o, n = old.name, new.name
    if o == "numeric" and n == "numeric":
        if not new.mods:
            return False
        if not old.mods:
            return True
        old_scale = old.mods[1] if len(old.mods) > 1 else 0
        new_scale = new.mods[1] if len(new.mods) > 1 else 0
        return new_scale < old_scale or (new.mods[0] - new_scale) < (old.mods[0] - old_scale)
    if n in _INTS and (o in _FLOATS or o == "numeric"):
        return True
    if n in _INTS and o in _INTS:
        return _INTS[n] < _INTS[o]
    if o == "float8" and n == "float4":
        return True
    if o in ("timestamptz", "timestamp") and n in ("date", "time", "timetz"):
        return True
    if o in _TEXTY and n in ("varchar", "bpchar") and new.mods:
        # char(n) -> varchar(n) only drops char's padding, which char never counted.
        return not old.mods or o not in ("varchar", "bpchar") or new.mods[0] < old.mods[0]
    if o == "bpchar" and n in ("text", "varchar", "citext"):
        return False
    if o == n and o in ("timestamp", "timestamptz", "time", "interval") and new.mods:
        return not old.mods or new.mods[0] < old.mods[0]
    return False


# Targets that are narrow by nature: an unknown source type may well be rounded into them.
_NARROW_TARGETS = {"int2", "int4", "float4", "date", "time", "timetz"}


def maybe_lossy_target(new: TypeInfo | None) -> bool:
    if new is None:
        return False
    if new.name in _NARROW_TARGETS:
        return True
    return new.name == "numeric" and len(new.mods) == 2


def no_rewrite(old: TypeInfo | None, new: TypeInfo | None) -> bool | None:
    """True when the change is binary-coercible (catalogue RW01 list), None when unknowable."""
    if old is None or new is None:
        return None
    if old == new:
        return True
    o, n = old.name, new.name
    if old.array != new.array:
        return False
    if o == "varchar" and n == "varchar":
        return not new.mods or (bool(old.mods) and new.mods[0] >= old.mods[0])
    if o == "varchar" and n == "text":
        return True
    if o == "text" and n == "varchar":
        return not new.mods
    if o == "numeric" and n == "numeric":
        if not new.mods:
            return True
        if not old.mods:
            return False
        old_scale = old.mods[1] if len(old.mods) > 1 else 0
        new_scale = new.mods[1] if len(new.mods) > 1 else 0
        return new_scale == old_scale and new.mods[0] >= old.mods[0]
    if o == n and o in (
        "varbit",
        "bit varying",
        "timestamp",
        "timestamptz",
        "time",
        "timetz",
        "interval",
    ):
        return not new.mods or (bool(old.mods) and new.mods[0] >= old.mods[0])
    if o == "cidr" and n == "inet":
        return True
    if {o, n} == {"timestamp", "timestamptz"}:
        return None  # no rewrite on PG12+ only when the session TimeZone is UTC
    if {o, n} == {"citext", "text"}:
        return None  # no rewrite unless the column is indexed
    return False
