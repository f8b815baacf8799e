"""000: the schema before the call_sid refactor (what production already has).

Existing databases never run this: their tables present count as 000 applied.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Check, Migration, Sql, main


def tables_are_empty(conn) -> str | None:
    """Refuse to drop tables that hold calls: rolling back 000 is for empty databases."""
    held = []
    for table in ("calls", "transcriptions"):
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]:
            # EXISTS, not count(*): one row is enough to refuse, on any table size.
            query = f"SELECT EXISTS (SELECT 1 FROM {table})"
            if conn.execute(query).fetchone()[0]:
                held.append(table)
    if held:
        return (
            f"{' and '.join(held)} hold rows; rolling back 000 would drop them. "
            "000's downgrade is for empty development databases only; nothing changed"
        )
    return None


MIGRATION = Migration(
    version=0,
    name="initial_schema",
    upgrade=[
        Sql(
            """
            CREATE TABLE IF NOT EXISTS calls (
                id              bigserial PRIMARY KEY,
                driver_id       bigint,
                conversation_id text NOT NULL UNIQUE,
                phone_number    text,
                status          text NOT NULL DEFAULT 'initiated',
                created_at      timestamptz NOT NULL DEFAULT now(),
                updated_at      timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE IF NOT EXISTS transcriptions (
                id              bigserial PRIMARY KEY,
                conversation_id text NOT NULL REFERENCES calls (conversation_id),
                speaker         text NOT NULL,
                message         text NOT NULL,
                "timestamp"     timestamptz NOT NULL,
                created_at      timestamptz NOT NULL DEFAULT now()
            );
            """
        )
    ],
    downgrade=[
        Check(tables_are_empty),
        Sql("DROP TABLE IF EXISTS transcriptions; DROP TABLE IF EXISTS calls;"),
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
