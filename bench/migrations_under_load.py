"""Run 001 to 013 up and back down on a large legacy table while old code keeps writing.

    python bench/migrations_under_load.py [--rows 1000000] [--database-url URL]

Seeds a ``calls`` table of N legacy rows (every 10th with a NULL driver_id, a
transcription line for every other call), starts a workload of legacy inserts
and webhook-style look-ups and writes in threads, then runs each migration
script as the operator does (a subprocess) and prints per step: duration, rows,
lock retries, the script's peak memory, and the workload's requests, errors
and slowest request. Also times, on copies of the data, one plain ``UPDATE``
as the lower bound for the backfill (quiet, and under the same workload, which
is what the backfill is compared with), and the backfill's peak memory on a
smaller table, to show it stays flat.

Without ``--database-url`` (or ``DATABASE_URL``: a server where it may create
databases) it starts a throwaway embedded PostgreSQL. Stops by itself.
"""

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from migrations_workload import Workload  # beside this script
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import embedded_db  # noqa: E402
from migrations.kit import Db, Run, load_chain  # noqa: E402

SCRIPTS = [f"{m.VERSION:03d}_{m.NAME}" for m in load_chain()[1:]]
# Up in order, then down in reverse. 013 contracts: in production it runs once
# no old code runs; here the old code's workload stores no retried line, so it
# measures 013's cost on the table under the same traffic.
STEPS = [(s, "upgrade") for s in SCRIPTS] + [(s, "downgrade") for s in reversed(SCRIPTS)]
SCRIPT_TIMEOUT_SECONDS = 1800
TARGET_MAX_WAIT, TARGET_BACKFILL_RATIO, TARGET_MEMORY_RATIO = 0.25, 1.1, 1.1


def create_database(server_url: str, template: str | None = None) -> str:
    """Create a fresh database (optionally a copy of ``template``); return its URL."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        admin.execute(query)
    return make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, url: str) -> None:
    """Drop a database this bench created."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def seed(url: str, rows: int) -> None:
    """Create the baseline (unrecorded, as production has it) and fill it with legacy calls."""
    with psycopg.connect(url, autocommit=True) as conn:
        load_chain()[0].upgrade(Db(conn, Run(out=lambda line: None)))
        conn.execute(
            """
            INSERT INTO calls (driver_id, conversation_id, phone_number, status, created_at)
            SELECT CASE WHEN g %% 10 = 0 THEN NULL ELSE 1 + g %% 5000 END,
                   'conv_' || g, '+1415' || lpad((g %% 10000000)::text, 7, '0'),
                   'completed', now() - make_interval(secs => %s - g)
            FROM generate_series(1, %s) AS g
            """,
            (rows, rows),
        )
        conn.execute(
            """
            INSERT INTO transcriptions (conversation_id, speaker, message, "timestamp")
            SELECT 'conv_' || g, CASE WHEN g %% 4 = 0 THEN 'user' ELSE 'agent' END,
                   'line for call ' || g, now()
            FROM generate_series(1, %s, 2) AS g
            """,
            (rows,),
        )
        conn.execute("VACUUM ANALYZE calls")
        conn.execute("VACUUM ANALYZE transcriptions")


def run_script(url: str, script: str, direction: str, echo: bool) -> dict:
    """Run one migration script as the operator does; return its timing, output and memory."""
    # --yes: the downgrades drop the lifecycle columns and the delivery log without asking.
    command = [sys.executable, str(ROOT / "migrations" / f"{script}.py"), direction, "--yes"]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*command, "--database-url", url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if echo:
            print(f"    | {lines[-1]}", flush=True)
    # wait4 rather than wait: it also returns the child's peak memory.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode != 0:
        raise SystemExit(f"error: {script} {direction} failed: {lines[-1] if lines else '?'}")
    return {
        "seconds": time.monotonic() - started,
        "lines": lines,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "lock_retries": sum("lock timeout" in line for line in lines),
    }


def rows_of(result: dict, table_rows: int) -> int:
    """Return the rows a step changed (backfill) or the table size it worked on."""
    for line in result["lines"]:
        found = re.match(r"\s+total: ([\d,]+) ", line)
        if found and found[1] != "0":  # 003 fills only what 002 missed: usually nothing
            return int(found[1].replace(",", ""))
    return table_rows


def backfill_seconds(result: dict) -> float:
    """Return the backfill's own time, from its ``total: … in Xs`` line."""
    for line in result["lines"]:
        found = re.search(r"total: [\d,]+ calls backfilled in ([\d.]+)s", line)
        if found:
            return float(found[1])
    raise SystemExit("error: 002 printed no backfill total")


def checkpoint(url: str) -> None:
    """Flush dirty pages first, so no timing pays for the writes before it."""
    # On a managed server without the right, timings are just noisier.
    with (
        psycopg.connect(url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CHECKPOINT")


def single_update_seconds(server_url: str, template_url: str, load: tuple | None) -> float:
    """Time one plain UPDATE backfill on a copy of the data after 001 (the lower bound).

    ``load`` is (threads, known calls) to run the same workload on the copy meanwhile.
    """
    template = psycopg.conninfo.conninfo_to_dict(template_url)["dbname"]
    copy = create_database(server_url, template)
    try:
        run_script(copy, "001_add_call_sid_column", "upgrade", echo=False)
        checkpoint(copy)
        workload = Workload(copy, *load) if load else contextlib.nullcontext()
        with psycopg.connect(copy, autocommit=True) as conn, workload:
            started = time.monotonic()
            conn.execute("UPDATE calls SET call_sid = 'legacy_' || id WHERE call_sid IS NULL")
            return time.monotonic() - started
    finally:
        drop_database(server_url, copy)


def backfill_memory_mb(server_url: str, rows: int) -> float:
    """Return 002's peak memory on a table of ``rows`` calls (run without workload)."""
    url = create_database(server_url)
    try:
        seed(url, rows)
        run_script(url, "001_add_call_sid_column", "upgrade", echo=False)
        return run_script(url, "002_backfill_call_sid", "upgrade", echo=False)["maxrss_mb"]
    finally:
        drop_database(server_url, url)


def table_rows(url: str) -> int:
    """Return the number of calls now."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM calls").fetchone()[0]


def run_steps(url: str, workload: Workload) -> list[dict]:
    """Apply 001..004 and roll back 004..001 under the workload; return one record per step."""
    records = []
    for script, direction in STEPS:
        label = f"{script[:3]} {'up' if direction == 'upgrade' else 'down'}"
        print(f"  {label}: {script}.py {direction}", flush=True)
        rows = table_rows(url)
        workload.mark(label)
        result = run_script(url, script, direction, echo=script.startswith("002"))
        workload.mark("between steps")
        result.update(label=label, rows=rows_of(result, rows), load=workload.stats(label))
        records.append(result)
    return records


def print_report(records, lower_bound, backfill, memory, rows, small_rows, workload) -> None:
    """Print the per-step table, the backfill and memory comparisons, and the targets."""
    print(f"\nresults ({rows:,} legacy calls, {workload.threads} workload threads)")
    print(
        f"{'step':10} {'seconds':>8} {'rows':>10} {'retries':>7} {'MB':>6} "
        f"{'requests':>8} {'errors':>6} {'max wait':>9}"
    )
    for r in records:
        load = r["load"]
        print(
            f"{r['label']:10} {r['seconds']:8.2f} {r['rows']:10,} {r['lock_retries']:7} "
            f"{r['maxrss_mb']:6.1f} {load['requests']:8,} {load['errors']:6} "
            f"{load['max_latency']:8.3f}s"
        )
    total = workload.stats(None)
    quiet, loaded = lower_bound
    ratio = backfill / loaded
    print(
        f"workload overall: {total['requests']:,} requests, {total['errors']} errors, "
        f"max wait {total['max_latency']:.3f}s"
        + (f"; first error: {total['first_error']}" if total["first_error"] else "")
    )
    print(
        f"backfill {backfill:.2f}s under the workload vs one plain UPDATE under it {loaded:.2f}s:"
        f" ratio {ratio:.2f} (vs the quiet UPDATE {quiet:.2f}s: {backfill / quiet:.2f})"
    )
    print(
        f"002 peak memory: {memory[small_rows]:.1f} MB at {small_rows:,} rows, "
        f"{memory[rows]:.1f} MB at {rows:,} rows"
    )
    checks = [
        ("zero workload errors", total["errors"] == 0),
        (f"no request waits > {TARGET_MAX_WAIT:g}s", total["max_latency"] <= TARGET_MAX_WAIT),
        (f"backfill <= {TARGET_BACKFILL_RATIO}x plain UPDATE", ratio <= TARGET_BACKFILL_RATIO),
        ("memory flat", memory[rows] <= memory[small_rows] * TARGET_MEMORY_RATIO),
    ]
    for name, ok in checks:
        print(f"target {'met   ' if ok else 'MISSED'}: {name}")


def bench(server_url: str, rows: int, small_rows: int, threads: int) -> None:
    """Seed, measure the lower bound, run the steps under load, and report."""
    url = create_database(server_url)
    try:
        started = time.monotonic()
        seed(url, rows)
        print(f"seeded {rows:,} legacy calls in {time.monotonic() - started:.1f}s", flush=True)
        quiet = single_update_seconds(server_url, url, None)
        loaded = single_update_seconds(server_url, url, (threads, rows))
        print(
            f"one plain UPDATE on a copy: {quiet:.2f}s quiet, {loaded:.2f}s under the workload",
            flush=True,
        )
        checkpoint(url)
        workload = Workload(url, threads, known_conversations=rows)
        with workload:
            records = run_steps(url, workload)
        memory = {
            rows: records[1]["maxrss_mb"],
            small_rows: backfill_memory_mb(server_url, small_rows),
        }
        print_report(
            records,
            (quiet, loaded),
            backfill_seconds(records[1]),
            memory,
            rows,
            small_rows,
            workload,
        )
    finally:
        drop_database(server_url, url)


def main() -> int:
    """Parse the command line, find or start a server, run the bench."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--memory-rows", type=int, default=100_000, help="smaller table for the memory check"
    )
    parser.add_argument("--threads", type=int, default=4, help="workload threads")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    if args.database_url:
        bench(args.database_url, args.rows, args.memory_rows, args.threads)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        server = embedded_db.start(Path(folder) / "data", throwaway=True)
        try:
            bench(embedded_db.url(server), args.rows, args.memory_rows, args.threads)
        finally:
            server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
