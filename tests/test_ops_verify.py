"""``python -m ops verify``: the rollout checklist's database checks, on real databases.

Databases are built at specific migration states with the migration kit, seeded
the way production looks (legacy calls, some with NULL driver_id, with
transcript lines), then broken in the ways the checklist guards against.
"""

import json
import shutil
import subprocess

import psycopg
import pytest
from commands import run_module
from legacy_schema import seed_legacy_calls

import embedded_db
from migrations.kit import Run, load_chain, upgrade
from models import webhook_deliveries as delivery_log
from ops import verify
from ops.report import FAIL, PASS, WARN

QUIET = Run(out=lambda line: None)


def migrate(url: str, upto: int | None = None) -> None:
    """Apply the chain from 000 up to version ``upto`` (default: all)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for migration in load_chain():
            if upto is None or upto >= migration.VERSION:
                upgrade(conn, migration, QUIET)


def seed_new_calls(url: str) -> None:
    """Insert calls as the new code leaves them: initiated, completed and failed."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO calls (call_sid, driver_id, phone_number, status, conversation_id,
                               created_at, api_called_at, initiated_at, failure_reason, failed_at)
            VALUES ('cs_new_initiated', 7, '+14155550101', 'initiated', 'conv_new_1',
                    now() - interval '3 min', now() - interval '3 min' + interval '5 ms',
                    now() - interval '3 min' + interval '900 ms', NULL, NULL),
                   ('cs_new_failed', 8, '+14155550102', 'failed', NULL,
                    now() - interval '2 min', now() - interval '2 min' + interval '4 ms',
                    NULL, 'ElevenLabs answered 429 too_many_concurrent_requests', now()),
                   ('cs_new_fresh', 9, '+14155550103', 'initiating', NULL,
                    now(), NULL, NULL, NULL, NULL)
            """
        )


def seed_webhook_deliveries(url: str, *, accepted: int = 9, rejected: int = 0) -> None:
    """Record deliveries as the webhook endpoints do, when their table exists."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('webhook_deliveries')").fetchone()[0]:
            return
        for n in range(accepted + rejected):
            outcome = "accepted" if n < accepted else "unknown_call"
            conn.execute(
                """
                INSERT INTO webhook_deliveries (endpoint, signature_valid, body, body_size,
                    body_truncated, call_sid, outcome, reason, http_status)
                VALUES ('transcription', true, '{}'::bytea, 2, false, %s, %s, %s, %s)
                """,
                (
                    "cs_new_initiated" if outcome == "accepted" else "cs_nobody",
                    outcome,
                    None if outcome == "accepted" else "no call with this call_sid",
                    200 if outcome == "accepted" else 400,
                ),
            )


@pytest.fixture
def rolled_out(create_database):
    """Return a database fully migrated, with legacy and new calls and recent deliveries."""
    url = create_database()
    migrate(url, upto=0)
    seed_legacy_calls(url, 30)
    migrate(url)
    seed_new_calls(url)
    seed_webhook_deliveries(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return url


def check(url: str, stage: str = "post", **options) -> dict:
    """Run verify in-process and return its results by name."""
    with psycopg.connect(url, autocommit=True) as conn:
        results = verify.run(conn, verify.Options(stage=stage, **options))
    return {r.name: r for r in results}


def run_verify(url: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m ops verify`` as the operator does, DATABASE_URL in the environment."""
    return run_module("ops", "verify", *args, database_url=url)


def statuses(results: dict) -> dict:
    return {name: r.status for name, r in results.items()}


# --- a correct rollout -------------------------------------------------------------


def test_verify_passes_every_check_on_a_rolled_out_database(rolled_out):
    result = run_verify(rolled_out, "--stage", "post")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    checks = [line for line in lines if line[:4] in (PASS, WARN, FAIL)]
    assert checks and all(line.startswith(PASS) for line in checks), result.stdout
    assert lines[-1].startswith("summary:") and lines[-1].endswith("0 WARN, 0 FAIL -> ok")
    assert "30 backfilled (4 with NULL driver_id)" in result.stdout
    assert "rejected by calls_call_sid_key" in result.stdout


def test_verify_json_carries_each_check_with_its_figures(rolled_out):
    result = run_verify(rolled_out, "--json", "--recent", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["summary"][FAIL] == 0
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["calls_have_call_sid"]["figures"] == {"calls": 33, "without_call_sid": 0}
    assert by_name["call_sid_unique"]["figures"]["indisvalid"] is True
    assert by_name["created_before_api_call"]["figures"]["dialled"] == 2


def test_pre_stage_checks_the_schema_only(create_database):
    url = create_database()
    migrate(url, upto=0)
    seed_legacy_calls(url, 30)
    migrate(url, upto=4)
    results = check(url, stage="pre")
    assert "stuck_initiating" not in results and "webhook_deliveries" not in results
    assert results["call_sid_column"].status == PASS
    assert results["unique_rejects_duplicate"].status == PASS
    # Migrations the new code needs are pending: a reminder, not a failure.
    later = [m.VERSION for m in load_chain() if m.VERSION > 4]
    assert results["migrations"].status == (WARN if later else PASS)
    assert not [r for r in results.values() if r.status == FAIL]


def test_call_sid_lookup_proves_the_index_even_where_the_planner_prefers_a_seq_scan(rolled_out):
    result = check(rolled_out)["call_sid_index_used"]
    assert result.status == PASS
    assert any(
        "calls_call_sid_key" in scan
        for scan in result.figures.get("plan_without_seqscan", result.figures["plan"])
    )


def test_verify_on_an_empty_database_proves_uniqueness_with_its_own_rows(create_database):
    url = create_database()
    migrate(url)
    results = check(url, stage="pre")
    assert results["unique_rejects_duplicate"].status == PASS
    assert results["backfill"].status == PASS
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 0


# --- what each broken state looks like ---------------------------------------------------


def test_verify_fails_when_003_is_not_applied(create_database):
    url = create_database()
    migrate(url, upto=0)
    seed_legacy_calls(url, 30)
    migrate(url, upto=2)
    results = check(url, stage="pre")
    failing = {name for name, r in results.items() if r.status == FAIL}
    assert {
        "migrations",
        "call_sid_column",
        "call_sid_unique",
        "conversation_id_nullable",
        "call_sid_index_used",
        "unique_rejects_duplicate",
    } <= failing
    assert "missing 003, 004" in results["migrations"].detail
    assert "ACCEPTED" in results["unique_rejects_duplicate"].detail
    assert results["calls_have_call_sid"].status == PASS  # 002 did its part

    result = run_verify(url, "--stage", "pre")
    assert result.returncode == 1
    assert "FAIL  call_sid_unique" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("-> not ready")


def test_verify_before_any_migration_names_the_first_script(create_database):
    url = create_database()
    migrate(url, upto=0)
    seed_legacy_calls(url, 30)
    result = run_verify(url, "--stage", "pre")
    assert result.returncode == 1
    assert "missing 001, 002, 003, 004" in result.stdout
    assert "run .venv/bin/python migrations/001_add_call_sid_column.py" in result.stdout
    assert "could not check" not in result.stdout  # every check knows why it cannot pass


def test_verify_fails_on_a_call_without_call_sid(create_database):
    url = create_database()
    migrate(url, upto=0)
    seed_legacy_calls(url, 30)
    migrate(url, upto=2)
    with psycopg.connect(url, autocommit=True) as conn:
        # Only code that names the column can write NULL: the default fills it otherwise.
        conn.execute(
            "INSERT INTO calls (driver_id, conversation_id, call_sid) VALUES (1, 'conv_x', NULL)"
        )
    result = check(url, stage="pre")["calls_have_call_sid"]
    assert result.status == FAIL
    assert result.detail.startswith("1 of 31 calls have no call_sid")
    assert run_verify(url, "--stage", "pre").returncode == 1


def test_verify_fails_on_recent_calls_written_without_call_sid(rolled_out):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        # 003 forbids it; a hand-made change (a rollback gone wrong) is what this check is for.
        conn.execute("ALTER TABLE calls ALTER COLUMN call_sid DROP NOT NULL")
        conn.execute("INSERT INTO calls (driver_id, call_sid) VALUES (1, NULL)")
    result = check(rolled_out)["recent_calls_have_call_sid"]
    assert result.status == FAIL
    assert result.detail.startswith("1 of the last ")
    assert run_verify(rolled_out).returncode == 1


def test_verify_fails_when_a_backfilled_call_no_longer_resolves_to_its_transcript(rolled_out):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        conn.execute("DELETE FROM transcriptions WHERE conversation_id = 'conv_seed_1'")
        conn.execute("UPDATE calls SET conversation_id = NULL WHERE id = 1")
    result = check(rolled_out)["backfill"]
    assert result.status == FAIL
    assert "do not resolve to a conversation: legacy_1" in result.detail
    assert run_verify(rolled_out).returncode == 1


def test_verify_fails_on_an_invalid_index_left_by_a_failed_concurrent_build(rolled_out):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        # Duplicate phone numbers make the build fail half-way, as in production.
        conn.execute("UPDATE calls SET phone_number = '+14155550000' WHERE id <= 2")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY calls_phone_idx ON calls (phone_number)")
    results = check(rolled_out)
    assert results["invalid_indexes"].status == FAIL
    assert "calls_phone_idx on calls" in results["invalid_indexes"].detail
    assert results["call_sid_unique"].status == PASS
    assert run_verify(rolled_out).returncode == 1


def test_verify_fails_when_003_left_only_an_invalid_call_sid_index(create_database):
    url = create_database()
    migrate(url, upto=0)
    seed_legacy_calls(url, 30)
    migrate(url, upto=2)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE calls SET call_sid = 'legacy_1' WHERE id = 2")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY calls_call_sid_key ON calls (call_sid)")
    results = check(url, stage="pre")
    assert results["call_sid_unique"].status == FAIL
    assert (
        "unique index only: calls_call_sid_key (valid=False)" in results["call_sid_unique"].detail
    )
    assert "calls_call_sid_key on calls" in results["invalid_indexes"].detail


def test_verify_fails_on_a_call_stuck_in_initiating(rolled_out):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO calls (call_sid, driver_id, status, created_at) "
            "VALUES ('cs_stuck', 3, 'initiating', now() - interval '12 min')"
        )
    result = check(rolled_out)["stuck_initiating"]
    assert result.status == FAIL
    assert "1 calls stuck in 'initiating' for over 5 min" in result.detail
    assert "cs_stuck" in result.detail and "cs_new_fresh" not in result.detail
    assert "python -m ops reconcile --older-than 5" in result.detail
    assert check(rolled_out, stuck_minutes=20)["stuck_initiating"].status == PASS
    run = run_verify(rolled_out)
    assert run.returncode == 1 and "FAIL  stuck_initiating" in run.stdout


def test_verify_fails_on_a_row_written_after_its_api_call(rolled_out):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        conn.execute(
            "UPDATE calls SET created_at = api_called_at + interval '1 s' "
            "WHERE call_sid = 'cs_new_initiated'"
        )
    result = check(rolled_out)["created_before_api_call"]
    assert result.status == FAIL and "cs_new_initiated" in result.detail


def test_verify_flags_answered_calls_without_conversation_id_and_failures_without_reason(
    rolled_out,
):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        conn.execute("UPDATE calls SET conversation_id = NULL WHERE call_sid = 'cs_new_initiated'")
        assert check(rolled_out)["recent_conversation_ids"].status == WARN
        conn.execute("UPDATE calls SET failure_reason = NULL WHERE call_sid = 'cs_new_failed'")
    result = check(rolled_out)["recent_conversation_ids"]
    assert result.status == FAIL and "failed without a reason: cs_new_failed" in result.detail


def test_verify_warns_when_many_webhook_deliveries_are_rejected(rolled_out):
    seed_webhook_deliveries(rolled_out, accepted=0, rejected=3)
    result = check(rolled_out)["webhook_deliveries"]
    assert result.status == WARN
    assert "12 deliveries, 3 rejected (25.0%) [unknown_call 3]" in result.detail
    assert check(rolled_out, max_rejection_rate=0.5)["webhook_deliveries"].status == PASS


def test_verify_stops_warning_about_rejected_deliveries_once_a_replay_settled_them(rolled_out):
    seed_webhook_deliveries(rolled_out, accepted=0, rejected=3)
    assert check(rolled_out)["webhook_deliveries"].status == WARN
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        rejected = [
            delivery_id
            for (delivery_id,) in conn.execute(
                "SELECT id FROM webhook_deliveries WHERE outcome = 'unknown_call' ORDER BY id"
            ).fetchall()
        ]
        for delivery_id in rejected[:2]:  # as ops replay records a settled replay
            delivery_log.record_replay(conn, delivery_id, delivery_log.Outcome("duplicate"))
    result = check(rolled_out)["webhook_deliveries"]
    assert result.status == WARN  # one is still unsettled: 1 of 12 is above 5%
    assert "12 deliveries, 1 rejected (8.3%) [unknown_call 1], 2 since settled by replay" in (
        result.detail
    )
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        delivery_log.record_replay(conn, rejected[2], delivery_log.Outcome("accepted"))
    result = check(rolled_out)["webhook_deliveries"]
    assert result.status == PASS
    assert "12 deliveries, 0 rejected (0.0%), 3 since settled by replay" in result.detail
    assert "replay them" not in result.detail


# --- verify writes nothing ----------------------------------------------------------------


def database_state(url: str) -> dict:
    """Return everything verify could change: a full dump, row counts, sequence positions."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
        ]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        sequences = conn.execute(
            "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"
        ).fetchall()
    return {"counts": counts, "sequences": sequences, "dump": pg_dump(url)}


def pg_dump(url: str) -> str:
    """Return a full dump (schema and data) of the database, as text."""
    bundled = embedded_db.program("pg_dump")
    binary = str(bundled) if bundled.exists() else shutil.which("pg_dump")
    dumped = subprocess.run(
        [binary, "--no-owner", f"--dbname={url}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # pg_dump 17.6+ brackets the dump with a random \restrict key; it is not content.
    return "\n".join(
        line for line in dumped.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )


@pytest.mark.parametrize("state", ["rolled_out", "empty", "before_003"])
def test_verify_leaves_the_database_unchanged(state, rolled_out, create_database):
    url = rolled_out
    if state != "rolled_out":
        url = create_database()
        migrate(url, upto=None if state == "empty" else 2)
    before = database_state(url)
    result = run_verify(url, "--stage", "post")
    assert "unique_rejects_duplicate" in result.stdout
    after = database_state(url)
    assert after["counts"] == before["counts"]
    assert after["sequences"] == before["sequences"]
    assert after["dump"] == before["dump"]


# --- the command line -----------------------------------------------------------------------


def test_verify_without_a_database_says_so_and_exits_2():
    result = run_module("ops", "verify", database_url=None)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no database: set DATABASE_URL or pass --database-url"


def test_verify_on_an_unreachable_database_is_one_line_and_exit_2():
    result = run_verify("postgresql://nobody@127.0.0.1:1/nowhere")
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot connect to the database:")
    assert len(result.stderr.strip().splitlines()) == 1


# --- checks that must not pass by accident ------------------------------------------------


def test_verify_warns_when_the_transcript_lookup_has_no_index(rolled_out):
    assert check(rolled_out)["transcript_lookup_plan"].status == PASS
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        serving = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'transcriptions' "
            "AND indexdef LIKE '%(conversation_id%'"
        ).fetchall()
        for (index,) in serving:
            conn.execute(f'DROP INDEX "{index}"')
    result = check(rolled_out)["transcript_lookup_plan"]
    assert result.status == WARN
    assert "no index on transcriptions(conversation_id)" in result.detail


def test_verify_says_the_row_count_is_unknown_on_a_table_never_analysed(create_database):
    url = create_database()
    migrate(url, upto=0)
    with psycopg.connect(url, autocommit=True) as conn:  # autovacuum would analyse it, some time
        conn.execute("ALTER TABLE transcriptions SET (autovacuum_enabled = false)")
    seed_legacy_calls(url, 30)
    result = check(url, stage="pre")["transcript_lookup_plan"]
    assert result.status == WARN
    assert result.detail.endswith("over an unknown number of rows (not analysed)")
    assert result.figures["estimated_rows"] is None


def test_verify_fails_when_the_uniqueness_probe_is_refused_for_another_reason(rolled_out):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        # The probe's rows have negative ids: a CHECK refuses them before uniqueness is tried.
        conn.execute("ALTER TABLE calls ADD CONSTRAINT calls_id_positive CHECK (id > 0) NOT VALID")
    result = check(rolled_out)["unique_rejects_duplicate"]
    assert result.status == FAIL
    assert "failed for another reason" in result.detail
    assert "calls_id_positive" in result.detail


def test_verify_fails_on_a_completed_call_without_conversation_id(rolled_out):
    with psycopg.connect(rolled_out, autocommit=True) as conn:
        conn.execute(
            "UPDATE calls SET status = 'completed', conversation_id = NULL "
            "WHERE call_sid = 'cs_new_initiated'"
        )
    result = check(rolled_out)["recent_conversation_ids"]
    assert result.status == FAIL
    assert "completed without conversation_id: cs_new_initiated" in result.detail


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recent", "-1"], "argument --recent: '-1' is out of range: a number of calls from 1"),
        (["--recent", "99999999999999999999"], "a number of calls from 1 to 10,000"),
        (["--stuck-minutes", "99999999999999"], "a number of minutes from 1 to 525,600"),
        (["--stuck-minutes", "0"], "argument --stuck-minutes: '0' is out of range"),
        (
            ["--max-rejection-rate", "nan"],
            "'nan' is out of range: a share of deliveries from 0 to 1",
        ),
        (["--max-rejection-rate", "5"], "'5' is out of range: a share of deliveries from 0 to 1"),
        (["--max-rejection-rate", "-1"], "'-1' is out of range: a share of deliveries from 0 to 1"),
        (["--max-rejection-rate", "lots"], "not a share of deliveries: 'lots'"),
    ],
)
def test_verify_refuses_an_out_of_range_option_as_a_usage_error_not_a_verdict(
    rolled_out, args, message
):
    result = run_verify(rolled_out, *args)
    assert result.returncode == 2
    assert result.stdout == ""  # no check ran: no PASS/FAIL lines, no verdict
    assert message in result.stderr.splitlines()[-1]
