"""What the schema holds, as comparable lines: to say exactly what a failed run left.

Read from the catalogs only (no table is scanned), so it costs the same on any
table size: tables, columns (type, NOT NULL, default), constraints (``NOT VALID``
included), indexes (and whether valid), in the schemas on the ``search_path``
(where the migrations' unqualified names resolve). ``schema_migrations`` is the record,
not the schema, and is left out.
"""

from __future__ import annotations

SCHEMA_OBJECTS = """
WITH search_path AS (  -- where the migrations' unqualified names resolve
    SELECT oid FROM pg_namespace WHERE nspname = ANY (current_schemas(false))
)
SELECT format('%s %s', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'S' THEN 'sequence'
                                      WHEN 'v' THEN 'view' ELSE 'relation' END, c.relname)
FROM pg_class c
WHERE c.relnamespace IN (SELECT oid FROM search_path) AND c.relkind IN ('r', 'p', 'S', 'v')
  AND c.relname <> 'schema_migrations'
UNION ALL
SELECT format('column %s.%s %s%s%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
              CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
              ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid))
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace IN (SELECT oid FROM search_path) AND c.relkind IN ('r', 'p')
  AND c.relname <> 'schema_migrations' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT format('constraint %s on %s: %s', k.conname, c.relname, pg_get_constraintdef(k.oid))
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
WHERE c.relnamespace IN (SELECT oid FROM search_path) AND c.relname <> 'schema_migrations'
UNION ALL
SELECT format('index %s%s', c.relname, CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace IN (SELECT oid FROM search_path)
  AND i.indrelid <> coalesce(to_regclass('schema_migrations'), 0)
"""


def schema_objects(conn) -> set[str]:
    """Return one line per table, column, constraint and index on the search path."""
    return {row[0] for row in conn.execute(SCHEMA_OBJECTS).fetchall()}


def valid_indexes(objects: set[str]) -> frozenset[str]:
    """Return the names of the valid indexes among ``schema_objects`` lines."""
    return frozenset(
        line.removeprefix("index ")
        for line in objects
        if line.startswith("index ") and not line.endswith(" (invalid)")
    )


def difference(before: set[str], after: set[str]) -> str:
    """Return what ``after`` has that ``before`` had not, and the reverse, in one line."""
    parts = []
    if added := sorted(after - before):
        parts.append("added: " + "; ".join(added))
    if gone := sorted(before - after):
        parts.append("gone: " + "; ".join(gone))
    return " / ".join(parts)
