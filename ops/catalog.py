"""Small read-only catalog queries the checks share."""

from dataclasses import dataclass


@dataclass
class Column:
    """What the catalog says about one column."""

    type: str
    not_null: bool
    default: str | None


def column(conn, table: str, name: str) -> Column | None:
    """Return the column's type, nullability and default, or None when it does not exist."""
    row = conn.execute(
        """
        SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = to_regclass(%s) AND a.attname = %s
           AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (table, name),
    ).fetchone()
    return None if row is None else Column(*row)


def table_exists(conn, name: str) -> bool:
    """Return whether the table is visible on the search path."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def estimated_rows(conn, table: str) -> int:
    """Return the planner's row estimate for a table (0 when never analysed)."""
    row = conn.execute(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
        (table,),
    ).fetchone()
    return row[0] if row else 0


def missing_columns(conn, table: str, names: tuple[str, ...]) -> list[str]:
    """Return which of these columns the table lacks."""
    return [name for name in names if column(conn, table, name) is None]
