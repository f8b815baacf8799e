"""000: the schema before the call_sid refactor (what production already has).

Existing databases never run this: their tables present count as 000 applied.
"""

if __name__ == "__main__":  # run as a script: make the project importable
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from migrations.kit import Migration, Sql, main

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
    downgrade=[Sql("DROP TABLE IF EXISTS transcriptions; DROP TABLE IF EXISTS calls;")],
)

if __name__ == "__main__":
    raise SystemExit(main(MIGRATION))
