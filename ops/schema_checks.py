"""Checks of the schema the migrations leave, stage by stage (the runbook's go/no-go)."""

import psycopg

from errors import first_line
from migrations.kit import applied_versions, load_chain, script
from ops.catalog import column, needs, table_exists
from ops.report import failed, passed, warned

# What each stage needs: before the deploy the checklist's 001-004 (005-012, also
# before the deploy, are a reminder); after it every expand migration, 000-012.
REQUIRED = {"pre": range(5), "post": range(13)}
# Contract: 013's unique line key fails the old code's retried lines, so it runs
# once the new code is deployed, and is rolled back before old code returns.
CONTRACT = 13
PY = ".venv/bin/python migrations"
# Explicit ids for the uniqueness probe: nextval is not transactional, so a
# generated id would move the sequence even though the probe is rolled back.
PROBE_IDS = (-(2**63) + 1, -(2**63) + 2)
PROBE_SID = "verify_probe_call_sid"


def _labels(versions) -> str:
    return ", ".join(f"{v:03d}" for v in sorted(versions)) or "none"


def migrations(conn, opts):
    """Report the migrations the stage needs: before the deploy 000-004, after it 000-012."""
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
        run = script(first)
        return failed(f"{done}; missing {_labels(missing)}: run {run}", **figures)
    if unknown:
        return warned(
            f"{done}, of which {_labels(unknown)} are unknown to this code "
            "(the database is ahead of the deployed code)",
            **figures,
        )
    expand = [v for v in pending if v != CONTRACT]
    if expand:
        return warned(
            f"{done}; {_labels(expand)} pending: the new code needs them, "
            f"apply with {PY}/migrate.py up {len(expand)} before the code deploy",
            **figures,
        )
    if opts.stage == "pre" and CONTRACT in applied:
        return warned(
            f"{done}: {CONTRACT:03d} is applied, so old code's retried transcript lines fail; "
            f"before old code runs again: {PY}/migrate.py down 1",
            **figures,
        )
    if opts.stage == "post" and pending:
        return warned(
            f"{done}; {CONTRACT:03d} pending: the new code is deployed, so apply it now: "
            f"{PY}/migrate.py up",
            **figures,
        )
    return passed(f"{done}; none pending for this stage", **figures)


@needs("001", "call_sid")
def call_sid_column(conn, opts):
    """Check calls.call_sid: text, NOT NULL, with a default that generates one."""
    col = column(conn, "calls", "call_sid")
    figures = {"type": col.type, "not_null": col.not_null, "default": col.default}
    if not col.not_null:
        return failed(f"calls.call_sid is {col.type} but nullable (003 not applied)", **figures)
    if not col.default:
        # Old code never names the column: without the default its inserts would fail.
        return failed("calls.call_sid has no default: old code's inserts would fail", **figures)
    return passed(f"calls.call_sid {col.type} NOT NULL DEFAULT {col.default}", **figures)


@needs("001", "call_sid")
def call_sid_unique(conn, opts):
    """Check the unique constraint on calls.call_sid exists and its index is valid."""
    indexes = conn.execute(
        """
        SELECT c.conname, i.indexrelid::regclass::text, i.indisvalid, i.indisready
          FROM pg_index i
          LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype = 'u'
         WHERE i.indrelid = 'calls'::regclass AND i.indisunique
           AND i.indkey::text = (SELECT attnum::text FROM pg_attribute
                                  WHERE attrelid = 'calls'::regclass AND attname = 'call_sid')
         ORDER BY c.conname IS NULL, 2
        """
    ).fetchall()
    if not indexes or indexes[0][0] is None:
        found = ", ".join(f"{index} (valid={valid})" for _, index, valid, _ in indexes)
        return failed(
            "no unique constraint on calls.call_sid (003 not applied)"
            + (f"; unique index only: {found}" if found else "")
        )
    conname, index, valid, ready = indexes[0]
    figures = {"constraint": conname, "index": index, "indisvalid": valid, "indisready": ready}
    if not (valid and ready):
        return failed(
            f"constraint {conname} uses index {index} with indisvalid={valid}, "
            f"indisready={ready}: rebuild it (run 003 again)",
            **figures,
        )
    return passed(f"constraint {conname} on index {index}, indisvalid=true", **figures)


def invalid_indexes(conn, opts):
    """Find indexes a failed CREATE INDEX CONCURRENTLY left invalid (slow writes, no use)."""
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
        return passed("every index in the schema is valid", invalid=[])
    listed = ", ".join(f"{i} on {t}" + (" (being built now)" if b else "") for i, t, b in rows)
    figures = {"invalid": [r[0] for r in rows]}
    if all(building for *_, building in rows):
        return warned(f"index build in progress: {listed}; run verify again after", **figures)
    return failed(
        f"invalid index: {listed}; run the migration that builds it again (it rebuilds)", **figures
    )


@needs("001", "call_sid")
def calls_have_call_sid(conn, opts):
    """Count calls without a call_sid (the checklist: every existing call has one)."""
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
            f"{missing} of {total} calls have no call_sid (ids {sample}…): "
            "run 003, which gives them one first",
            **figures,
        )
    return passed(f"{total} of {total} calls have a call_sid", **figures)


@needs("000", "conversation_id")
def conversation_id_nullable(conn, opts):
    """Check calls.conversation_id accepts NULL (a call row exists before ElevenLabs answers)."""
    if column(conn, "calls", "conversation_id").not_null:
        return failed("calls.conversation_id is NOT NULL (004 not applied)")
    return passed("calls.conversation_id is nullable", not_null=False)


@needs("001", "call_sid")
def unique_rejects_duplicate(conn, opts):
    """Prove a second row with an existing call_sid is refused, in a transaction rolled back.

    The probe's ids are explicit (no sequence moves) and it touches no live row,
    so it takes no row lock the service could wait on.
    """
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '2s'")
        conn.execute("SET LOCAL statement_timeout = '10s'")
        insert = "INSERT INTO calls (id, call_sid, conversation_id) VALUES (%s, %s, %s)"
        # conversation_id is given because before 004 it is NOT NULL.
        existing = conn.execute("SELECT call_sid FROM calls ORDER BY id LIMIT 1").fetchone()
        if existing is None:  # an empty table: the probe brings both rows of the pair itself
            conn.execute(insert, (PROBE_IDS[0], PROBE_SID, f"verify_probe_{-PROBE_IDS[0]}"))
        call_sid = existing[0] if existing else PROBE_SID
        try:
            with conn.transaction():
                conn.execute(insert, (PROBE_IDS[1], call_sid, f"verify_probe_{-PROBE_IDS[1]}"))
            result = failed(
                "a duplicate call_sid was ACCEPTED (probe rolled back): no unique constraint"
            )
        except psycopg.errors.UniqueViolation as exc:
            constraint = exc.diag.constraint_name or ""
            result = passed(
                f"a duplicate call_sid was rejected by {constraint} (probe rolled back)",
                constraint=constraint,
            )
        except psycopg.Error as exc:  # any other refusal says nothing about uniqueness
            result = failed(f"the probe insert failed for another reason: {first_line(exc)}")
        raise psycopg.Rollback  # whatever happened, nothing of it stays
    return result
