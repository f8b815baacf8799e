"""Every script's SQL as it runs (transactions, timeouts), for review and for squawk.

The scripts' own functions run against ``Recorder``, a ``Db`` that writes down
each statement in the frame it runs in instead of sending it; reads answer
"nothing there yet", so every statement of a script is written down.
"""

from __future__ import annotations

from pathlib import Path

from migrations.kit import label, load_chain
from migrations.live_table import BATCH_TIMEOUT, LOCK_TIMEOUT, Db, Run, sql_text


class Recorder(Db):
    """A ``Db`` that writes the SQL down instead of running it."""

    def __init__(self):
        super().__init__(conn=None, run=Run(out=lambda line: None))
        self.text: list[str] = []

    def value(self, query, params=None):
        return None

    def report(self, title, query):
        """A report only reads: nothing to lint."""

    def refuse(self, reason):
        """A refusal only reads: nothing to lint."""

    def execute(self, statement, params=None, *, unless=None, timeout="60s"):
        self.text.append(
            f"BEGIN;\nSET LOCAL lock_timeout = '{LOCK_TIMEOUT}';\n"
            f"SET LOCAL statement_timeout = '{timeout}';\n{sql_text(statement)};\nCOMMIT;"
        )
        return 0

    def backfill(self, table, update, what, batch_size=10_000):
        """Write down the first batch: every batch is that statement."""
        batch = update.replace("%(after)s", "0").replace("%(upto)s", str(batch_size))
        self.execute(batch, timeout=BATCH_TIMEOUT)

    def create_index(self, name, create, *, timeout="2h"):
        self.concurrent(
            timeout,
            f"-- First, only when a failed build left an invalid index of this name:\n"
            f"-- DROP INDEX CONCURRENTLY IF EXISTS {name};\n{sql_text(create)};",
        )

    def drop_index(self, name, *, timeout="1h"):
        self.concurrent(timeout, f"DROP INDEX CONCURRENTLY IF EXISTS {name};")

    def concurrent(self, timeout: str, statements: str) -> None:
        """Write down statements run outside a transaction, their session timeouts set and reset."""
        self.text.append(
            "-- No short lock_timeout: a concurrent build or drop waits only in ways that\n"
            "-- queue no reads or writes; statement_timeout bounds the whole wait.\n"
            f"SET lock_timeout = 0;\nSET statement_timeout = '{timeout}';\n{statements}\n"
            "RESET lock_timeout;\nRESET statement_timeout;"
        )


def print_sql(run: Run, out_dir: str | None) -> None:
    """Print every migration's SQL, or write one file per migration and direction."""
    if out_dir:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.sql"):  # a renamed migration must not linger
            stale.unlink()
    for migration in load_chain():
        for direction in ("upgrade", "downgrade"):
            recorder = Recorder()
            getattr(migration, direction)(recorder)
            name = f"{migration.VERSION:03d}_{migration.NAME}"
            text = f"-- {label(migration)} {direction}\n" + "\n\n".join(recorder.text) + "\n"
            if out_dir:
                (folder / f"{name}.{direction}.sql").write_text(text)
            else:
                run.say(text)
