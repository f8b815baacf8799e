"""000: the schema before the call_sid refactor (what production already has).

Existing databases never run this: their tables present count as 000 applied.
Its downgrade is for empty development databases only.
"""


def upgrade(db):
    """Create the two baseline tables."""
    db.execute(
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


def before_downgrade(db):
    """Refuse to drop tables that hold rows (EXISTS: one row is enough, on any table size)."""
    held = [
        table
        for table in ("calls", "transcriptions")
        if db.value("SELECT to_regclass(%s)", (table,))
        and db.value(f"SELECT EXISTS (SELECT 1 FROM {table})")
    ]
    if held:
        db.refuse(
            f"{' and '.join(held)} hold rows; rolling back 000 would drop them. "
            "000's downgrade is for empty development databases only; nothing changed"
        )


def downgrade(db):
    """Drop the baseline tables."""
    db.execute("DROP TABLE IF EXISTS transcriptions; DROP TABLE IF EXISTS calls;")


if __name__ == "__main__":  # [upgrade|downgrade] [--database-url URL] [--yes]
    import migrate  # beside this script: the command line every script shares

    migrate.script_main()
