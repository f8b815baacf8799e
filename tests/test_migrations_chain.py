"""001 to 004 run as the deployment checklist runs them, up and back down."""

import pytest
from legacy_schema import (
    CALL_SID_SHAPE,
    SCRIPTS,
    applied,
    create_baseline_without_record,
    legacy_data,
    legacy_writes,
    query,
    run_ok,
    schema_dump,
    seed_legacy_calls,
)

from migrations.kit import load_chain


@pytest.fixture
def production_like_url(fresh_database_url):
    """Return a database shaped like production before the refactor: baseline, data, no record."""
    create_baseline_without_record(fresh_database_url)
    seed_legacy_calls(fresh_database_url, 500)
    return fresh_database_url


def column(url, name):
    rows = query(
        url,
        "SELECT is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = 'calls' AND column_name = %s",
        (name,),
    )
    return rows[0] if rows else None


def without_record_table(dump):
    """Return a schema dump without the statements about ``schema_migrations``."""
    statements = dump.split(";\n")
    return ";\n".join(s for s in statements if "schema_migrations" not in s)


def test_checklist_order_keeps_legacy_writes_working_after_every_step(production_like_url):
    url = production_like_url
    legacy_writes(url, "before")
    for number, script in enumerate(SCRIPTS, start=1):
        run_ok(url, script)
        assert applied(url) == list(range(number + 1))
        call = legacy_writes(url, f"after_up_{script}")
        assert CALL_SID_SHAPE.match(call["call_sid"]), call
    for number, script in reversed(list(enumerate(SCRIPTS, start=1))):
        run_ok(url, script, "downgrade")
        assert applied(url) == list(range(number))
        call = legacy_writes(url, f"after_down_{script}")
        assert ("call_sid" in call) == (number > 1)
    assert column(url, "call_sid") is None


def test_checklist_outputs_what_the_operator_verifies(production_like_url):
    url = production_like_url
    out_001 = run_ok(url, SCRIPTS[0])
    assert "001 add_call_sid_column: upgrade applied" in out_001
    out_002 = run_ok(url, SCRIPTS[1])
    assert "  total: 500 calls backfilled in " in out_002
    assert "500 calls, 0 without call_sid; 71 with NULL driver_id, 0 of them without" in out_002
    out_003 = run_ok(url, SCRIPTS[2])
    assert (
        "calls_call_sid_key  CREATE UNIQUE INDEX calls_call_sid_key ON public.calls "
        "USING btree (call_sid)" in out_003
    )
    assert "calls_call_sid_key  UNIQUE (call_sid)" in out_003
    assert "  call_sid column:\n    call_sid  NOT NULL\n" in out_003  # on every version
    run_ok(url, SCRIPTS[3])
    assert column(url, "conversation_id")[0] == "YES"
    assert column(url, "call_sid")[0] == "NO"
    assert query(url, "SELECT count(*) FROM calls WHERE call_sid IS NULL") == [(0,)]


def test_each_script_run_twice_in_a_row_is_a_no_op(production_like_url):
    url = production_like_url
    for script in SCRIPTS:
        run_ok(url, script)
        before = (schema_dump(url), legacy_data(url))
        out = run_ok(url, script)
        assert out.strip().endswith(": already applied; nothing to do"), out
        assert (schema_dump(url), legacy_data(url)) == before
    for script in reversed(SCRIPTS):
        run_ok(url, script, "downgrade")
        before = (schema_dump(url), legacy_data(url))
        out = run_ok(url, script, "downgrade")
        assert ": not applied; removing anything a stopped upgrade left" in out, out
        assert (schema_dump(url), legacy_data(url)) == before


def test_up_down_up_round_trip_ends_with_the_same_schema_and_data(production_like_url):
    url = production_like_url
    baseline_schema, data = schema_dump(url), legacy_data(url)
    assert "schema_migrations" not in baseline_schema
    run_ok(url, "migrate", "up")
    upgraded_schema = schema_dump(url)
    sids = query(url, "SELECT id, call_sid FROM calls ORDER BY id")
    assert all(sid == f"legacy_{id_}" for id_, sid in sids)

    later = len(load_chain()) - 1  # 001..004 and whatever came after them
    out = run_ok(url, "migrate", "down", str(later))
    assert out.count("downgrade applied") == later
    assert applied(url) == [0]
    assert without_record_table(schema_dump(url)) == baseline_schema
    assert legacy_data(url) == data

    run_ok(url, "migrate", "up")
    assert schema_dump(url) == upgraded_schema
    assert legacy_data(url) == data
    assert query(url, "SELECT id, call_sid FROM calls ORDER BY id") == sids
