"""Checks of the schema the migrations leave, stage by stage (the runbook's go/no-go).

Each takes a connection inside verify's read-only transaction and returns a Result.
"""

from migrations.kit import applied_versions, load_chain
from ops.catalog import column, table_exists
from ops.report import failed, passed, warned

# What each stage needs: before the deploy the checklist's 001-004 (005-012, also
# before the deploy, are a reminder); after it every expand migration, 000-012.
REQUIRED = {"pre": range(5), "post": range(13)}
# Contract: 013's unique line key fails the old code's retried lines, so it runs
# once the new code is deployed, and is rolled back before old code returns.
CONTRACT = 13
PY = ".venv/bin/python migrations"


def _labels(versions) -> str:
    return ", ".join(f"{v:03d}" for v in sorted(versions)) or "none"


def migrations(conn, opts):
    """Report the migrations the stage needs: before the deploy 000-004, after it 000-012."""
    name = "migrations"
    chain = {m.VERSION: m for m in load_chain()}
    applied = applied_versions(conn)
    missing = [v for v in REQUIRED[opts.stage] if v not in applied]
    pending = [v for v in chain if v not in applied and v not in missing]
    unknown = sorted(applied - set(chain))
    figures = {"applied": sorted(applied), "missing": missing, "pending_later": pending}
    note = "" if table_exists(conn, "schema_migrations") else " (baseline tables count as 000)"
    done = f"applied {_labels(applied)}{note}"
    if missing:
        first = chain[missing[0]]
        run = f"{PY}/{first.VERSION:03d}_{first.NAME}.py"
        return failed(name, f"{done}; missing {_labels(missing)}: run {run}", **figures)
    if unknown:
        return warned(
            name,
            f"{done}, of which {_labels(unknown)} are unknown to this code "
            "(the database is ahead of the deployed code)",
            **figures,
        )
    expand = [v for v in pending if v != CONTRACT]
    if expand:
        return warned(
            name,
            f"{done}; {_labels(expand)} pending: the new code needs them, "
            f"apply with {PY}/migrate.py up {len(expand)} before the code deploy",
            **figures,
        )
    if opts.stage == "pre" and CONTRACT in applied:
        return warned(
            name,
            f"{done}: {CONTRACT:03d} is applied, so old code's retried transcript lines fail; "
            f"before old code runs again: {PY}/migrate.py down 1",
            **figures,
        )
    if opts.stage == "post" and pending:
        return warned(
            name,
            f"{done}; {CONTRACT:03d} pending: the new code is deployed, so apply it now: "
            f"{PY}/migrate.py up",
            **figures,
        )
    return passed(name, f"{done}; none pending for this stage", **figures)


def call_sid_column(conn, opts):
    """Check calls.call_sid: present, text, NOT NULL, with a default that generates one."""
    name = "call_sid_column"
    col = column(conn, "calls", "call_sid")
    if col is None:
        return failed(name, "calls.call_sid does not exist (migration 001 not applied)")
    figures = {"type": col.type, "not_null": col.not_null, "default": col.default}
    if not col.not_null:
        return failed(
            name, f"calls.call_sid is {col.type} but nullable (003 not applied)", **figures
        )
    if not col.default:
        # Old code never names the column: without the default its inserts would fail.
        return failed(
            name, "calls.call_sid has no default: old code's inserts would fail", **figures
        )
    return passed(name, f"calls.call_sid {col.type} NOT NULL DEFAULT {col.default}", **figures)


UNIQUE_ON_CALL_SID = """
    SELECT c.conname, i.indexrelid::regclass::text, i.indisvalid, i.indisready
      FROM pg_constraint c
      JOIN pg_index i ON i.indexrelid = c.conindid
     WHERE c.conrelid = 'calls'::regclass AND c.contype = 'u'
       AND c.conkey = ARRAY[(SELECT attnum FROM pg_attribute
                              WHERE attrelid = 'calls'::regclass AND attname = 'call_sid')]
"""

UNIQUE_INDEX_ON_CALL_SID = """
    SELECT i.indexrelid::regclass::text, i.indisvalid
      FROM pg_index i
     WHERE i.indrelid = 'calls'::regclass AND i.indisunique
       AND i.indkey::text = (SELECT attnum::text FROM pg_attribute
                              WHERE attrelid = 'calls'::regclass AND attname = 'call_sid')
"""


def call_sid_unique(conn, opts):
    """Check the unique constraint on calls.call_sid exists and its index is valid."""
    name = "call_sid_unique"
    if column(conn, "calls", "call_sid") is None:
        return failed(name, "no calls.call_sid column to be unique (001 not applied)")
    row = conn.execute(UNIQUE_ON_CALL_SID).fetchone()
    if row is None:
        loose = conn.execute(UNIQUE_INDEX_ON_CALL_SID).fetchall()
        found = ", ".join(f"{n} (valid={v})" for n, v in loose)
        return failed(
            name,
            "no unique constraint on calls.call_sid (003 not applied)"
            + (f"; unique index only: {found}" if found else ""),
        )
    conname, index, valid, ready = row
    figures = {"constraint": conname, "index": index, "indisvalid": valid, "indisready": ready}
    if not (valid and ready):
        return failed(
            name,
            f"constraint {conname} uses index {index} with indisvalid={valid}, "
            f"indisready={ready}: rebuild it (run 003 again)",
            **figures,
        )
    return passed(name, f"constraint {conname} on index {index}, indisvalid=true", **figures)


def invalid_indexes(conn, opts):
    """Find indexes a failed CREATE INDEX CONCURRENTLY left invalid (slow writes, no use)."""
    name = "invalid_indexes"
    rows = conn.execute(
        """
        SELECT ic.relname, t.relname,
               EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                        WHERE p.index_relid = i.indexrelid) AS building
          FROM pg_index i
          JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_class t ON t.oid = i.indrelid
         WHERE t.relnamespace = current_schema()::regnamespace
           AND NOT (i.indisvalid AND i.indisready)
         ORDER BY 1
        """
    ).fetchall()
    if not rows:
        return passed(name, "every index in the schema is valid", invalid=[])
    listed = ", ".join(f"{i} on {t}" + (" (being built now)" if b else "") for i, t, b in rows)
    figures = {"invalid": [r[0] for r in rows]}
    if all(building for *_, building in rows):
        return warned(name, f"index build in progress: {listed}; run verify again after", **figures)
    return failed(
        name,
        f"invalid index: {listed}; run the migration that builds it again (it rebuilds)",
        **figures,
    )


def calls_have_call_sid(conn, opts):
    """Count calls without a call_sid (the checklist: every existing call has one)."""
    name = "calls_have_call_sid"
    if column(conn, "calls", "call_sid") is None:
        return failed(name, "calls.call_sid does not exist (migration 001 not applied)")
    total, missing, sample = conn.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE call_sid IS NULL),
               (array_agg(id ORDER BY id) FILTER (WHERE call_sid IS NULL))[1:5]
          FROM calls
        """
    ).fetchone()
    figures = {"calls": total, "without_call_sid": missing}
    if missing:
        return failed(
            name,
            f"{missing} of {total} calls have no call_sid (ids {sample}…): "
            "run 003, which gives them one first",
            **figures,
        )
    return passed(name, f"{total} of {total} calls have a call_sid", **figures)


def conversation_id_nullable(conn, opts):
    """Check calls.conversation_id accepts NULL (a call row exists before ElevenLabs answers)."""
    name = "conversation_id_nullable"
    col = column(conn, "calls", "conversation_id")
    if col is None:
        return failed(name, "calls.conversation_id does not exist")
    if col.not_null:
        return failed(name, "calls.conversation_id is NOT NULL (004 not applied)")
    return passed(name, "calls.conversation_id is nullable", not_null=False)
