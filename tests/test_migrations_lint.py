"""The SQL squawk reads is the SQL the steps run, and squawk accepts 001 to 004.

What a step runs is recorded from a real connection (every statement it sends,
and where its transactions begin and commit) and compared with what
``migrate.py sql`` renders for it.
"""

import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from legacy_schema import (
    ROOT,
    SCRIPTS,
    create_baseline_without_record,
    run_ok,
    seed_legacy_calls,
)
from psycopg import sql

from migrations.kit import Db, Run, load_chain
from migrations.render import Recorder

CHAIN = load_chain()

SQUAWK = str(Path(sys.executable).with_name("squawk"))  # squawk-cli, beside this Python


def write_sql(tmp_path):
    """Run ``migrate.py sql --out`` into ``tmp_path``; return the files it wrote."""
    subprocess.run(
        [sys.executable, str(ROOT / "migrations" / "migrate.py"), "sql", "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    return sorted(tmp_path.glob("*.sql"))


def test_migrate_sql_writes_one_file_per_migration_and_direction(tmp_path):
    names = {path.name for path in write_sql(tmp_path)}
    for script in ["000_initial_schema", *SCRIPTS]:
        assert {f"{script}.upgrade.sql", f"{script}.downgrade.sql"} <= names


@pytest.mark.parametrize(
    ("out", "reason"), [("a-file", "File exists"), ("a-file/sql", "Not a directory")]
)
def test_migrate_sql_into_a_folder_it_cannot_write_is_one_error_line(tmp_path, out, reason):
    (tmp_path / "a-file").write_text("not a folder\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "migrations" / "migrate.py"), "sql", "--out", out],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (
        1,
        f"error: cannot write SQL to {out}: {reason}\n",
    )
    assert (tmp_path / "a-file").read_text() == "not a folder\n"


def test_rendered_003_builds_its_index_outside_a_transaction_and_frames_other_ddl(tmp_path):
    write_sql(tmp_path)
    text = (tmp_path / "003_add_call_sid_constraints.upgrade.sql").read_text()
    build = text.index("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS calls_call_sid_key")
    assert text.rfind("BEGIN;", 0, build) < text.rfind("COMMIT;", 0, build)
    assert "SET lock_timeout = 0;\nSET statement_timeout = '2h';\n" in text
    assert "SET LOCAL lock_timeout = '100ms';\nSET LOCAL statement_timeout = '1h';\n" in text
    assert "ALTER TABLE calls VALIDATE CONSTRAINT calls_call_sid_check_not_null;" in text


class Recording(psycopg.Connection):
    """A real connection that keeps, as text, every statement sent and each BEGIN and COMMIT."""

    sent: list[str]

    def execute(self, query, params=None, **kwargs):
        """Keep the statement (parameters filled in), then run it."""
        text = query.as_string(self) if isinstance(query, sql.Composable) else query
        self.sent.append(text % params if isinstance(params, dict) else text)
        return super().execute(query, params, **kwargs)

    @contextmanager
    def transaction(self, *args, **kwargs):
        """Keep where the transaction begins and commits."""
        self.sent.append("BEGIN")
        with super().transaction(*args, **kwargs) as tx:
            yield tx
        self.sent.append("COMMIT")


def normalised(texts) -> list[str]:
    """Return single statements without comments, quotes, runs of whitespace, reads, or bounds."""
    out = []
    for text in texts:
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        if code.lstrip().startswith("SELECT"):  # a read (some hold a ';' in a literal)
            continue
        for statement in code.split(";"):  # no statement that writes has a ';' inside
            statement = re.sub(r"\s+", " ", statement.replace('"', "")).strip()
            # A batch's upper bound is the table's last id when run, a sample when rendered.
            statement = re.sub(r"id <= \d+", "id <= N", statement)
            if statement and not statement.startswith("SELECT"):
                out.append(statement)
    return out


def ran(url, version: int, direction: str) -> list[str]:
    """Run one direction of a migration on a recording connection; return what it sent."""
    with Recording.connect(url, autocommit=True) as conn:
        conn.sent = []
        getattr(CHAIN[version], direction)(Db(conn, Run(out=lambda line: None)))
        return normalised(conn.sent)


def rendered(version: int, direction: str) -> list[str]:
    """Return what ``migrate.py sql`` shows for one direction of a migration."""
    recorder = Recorder()
    getattr(CHAIN[version], direction)(recorder)
    return normalised(recorder.text)


def at_001(url):
    """Return a baseline database with 300 legacy calls and 001 applied."""
    create_baseline_without_record(url)
    seed_legacy_calls(url, 300)
    run_ok(url, SCRIPTS[0])
    return url


def test_sql_squawk_reads_for_a_backfill_is_what_each_batch_runs(fresh_database_url):
    assert ran(at_001(fresh_database_url), 2, "upgrade") == rendered(2, "upgrade")


def test_sql_squawk_reads_for_003_is_what_it_runs(fresh_database_url):
    url = at_001(fresh_database_url)
    run_ok(url, SCRIPTS[1])
    assert ran(url, 3, "upgrade") == rendered(3, "upgrade")


def test_sql_squawk_reads_for_set_not_null_in_004_downgrade_is_what_it_runs(fresh_database_url):
    url = at_001(fresh_database_url)
    run_ok(url, "migrate", "up", "3")
    assert ran(url, 4, "downgrade") == rendered(4, "downgrade")


def test_sql_squawk_reads_for_index_builds_is_what_the_builds_run(fresh_database_url):
    url = at_001(fresh_database_url)
    run_ok(url, "migrate", "up", "5")
    assert ran(url, 7, "upgrade") == rendered(7, "upgrade")
    assert ran(url, 7, "downgrade") == rendered(7, "downgrade")


def test_squawk_finds_nothing_unconsidered_in_001_to_004(tmp_path):
    write_sql(tmp_path)
    files = [str(tmp_path / f"{s}.{d}.sql") for s in SCRIPTS for d in ("upgrade", "downgrade")]
    result = subprocess.run(
        [SQUAWK, "--reporter", "gcc", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_squawk_would_flag_the_downgrades_without_their_considered_exceptions(tmp_path):
    write_sql(tmp_path)
    path = tmp_path / "001_add_call_sid_column.downgrade.sql"
    path.write_text(path.read_text().replace("-- squawk-ignore", "-- (removed)"))
    result = subprocess.run(
        [SQUAWK, "--reporter", "gcc", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ban-drop-column" in result.stdout
