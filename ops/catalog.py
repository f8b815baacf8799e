"""Read-only catalog queries the checks share, and the guard of checks that need a migration."""

import functools

from psycopg.rows import namedtuple_row

from migrations.kit import table_exists as table_exists  # the checks import it from here
from ops.report import failed


def column(conn, table: str, name: str):
    """Return the column's ``type``, ``not_null`` and ``default``; None when it does not exist."""
    query = """
        SELECT format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
               pg_get_expr(d.adbin, d.adrelid) AS default
          FROM pg_attribute a
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = to_regclass(%s) AND a.attname = %s
           AND a.attnum > 0 AND NOT a.attisdropped
    """
    return conn.cursor(row_factory=namedtuple_row).execute(query, (table, name)).fetchone()


def needs(migration: str, *columns: str):
    """Make a check FAIL, naming the migration, when calls lacks a column it reads."""

    def guard(check):
        @functools.wraps(check)  # verify names the result after the check
        def guarded(conn, opts):
            missing = [name for name in columns if column(conn, "calls", name) is None]
            if missing:
                return failed(
                    f"calls lacks {', '.join(missing)} (migration {migration} not applied)"
                )
            return check(conn, opts)

        return guarded

    return guard
