"""Plain-SQL models: small dataclasses, and functions that take a connection first
and never commit on their own account (the caller decides the transaction); the one
exception, ``delete_in_batches``, says so in its name: each batch is its own transaction."""


def delete_in_batches(conn, statement: str, params: dict, *, progress=None) -> int:
    """Run a DELETE of at most ``params["batch"]`` rows until fewer go; return how many went."""
    # One short transaction per batch, so writers go on meanwhile; a DDL lock is waited 2 s at most.
    if params["batch"] < 1:  # fewer than 0 never go: the loop would not end
        raise ValueError("batch must be at least 1")
    total = 0
    while True:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '2s'")
            conn.execute("SET LOCAL statement_timeout = '60s'")
            deleted = conn.execute(statement, params).rowcount
        total += deleted
        if deleted < params["batch"]:
            return total
        if progress:
            progress(total)
