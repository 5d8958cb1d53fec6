"""Table sizes from a live server, for the impact line of a finding.

Read-only catalog queries only: `to_regclass` takes no lock, `pg_total_relation_size` takes
ACCESS SHARE briefly (the weakest lock; `plan` promises nothing stronger).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .model import TableStats

# Partitioned tables keep no rows themselves: sum their leaf partitions (pg_partition_tree, 12+).
_QUERY = """
SELECT n.name,
       CASE WHEN c.relkind = 'p' THEN
            (SELECT coalesce(sum(greatest(pc.reltuples, 0)), 0)
               FROM pg_partition_tree(c.oid) t JOIN pg_class pc ON pc.oid = t.relid WHERE t.isleaf)
            ELSE c.reltuples END AS rows,
       CASE WHEN c.relkind = 'p' THEN
            (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
               FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
            ELSE pg_total_relation_size(c.oid) END AS bytes
  FROM unnest(%(names)s::text[], %(regs)s::text[]) AS n(name, reg)
  JOIN pg_class c ON c.oid = to_regclass(n.reg)
"""


def _regclass_text(name: str) -> str:
    """'schema.table' as the parser folded it -> a quoted name to_regclass reads back exactly."""
    parts = name.split(".", 1)
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


class PgStats:
    """StatsProvider over a psycopg 3 connection (any transaction state; it only reads)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def table_stats(self, names: Sequence[str]) -> Mapping[str, TableStats]:
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        with self.conn.cursor() as cur:
            cur.execute(_QUERY, {"names": names, "regs": [_regclass_text(n) for n in names]})
            rows = cur.fetchall()
        return {name: TableStats(rows=float(r), total_bytes=int(b)) for name, r, b in rows}
