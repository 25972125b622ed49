"""Where a page's time goes, for the browser benchmark (bench/browser.py).

With ``RELQ_PROFILE=FILE`` set, each run of the frame appends one JSON line to FILE: the page,
the seconds the script ran (sidebar and page), and the seconds and count of its SQL statements.
The benchmark subtracts these from what the browser waited to split a page's time into queries,
Python (with figure building) and transfer + drawing. Without the variable nothing is measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import sqlalchemy as sa

__all__ = ["timed_run"]


@contextlib.contextmanager
def timed_run(engine, page_name: str):
    """Measure this run of the frame when ``RELQ_PROFILE`` names a file; else do nothing."""
    path = os.environ.get("RELQ_PROFILE")
    if not path:
        yield
        return
    # Reads run side by side (relq.ui.queries.read_side_by_side) overlap: the seconds counted are
    # those during which at least one statement ran, so they never exceed the script's.
    sql = {"seconds": 0.0, "statements": 0, "running": 0, "since": 0.0}
    lock = threading.Lock()

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["relq_sql_started"] = True
        with lock:
            if not sql["running"]:
                sql["since"] = time.perf_counter()
            sql["running"] += 1

    def after(conn, cursor, statement, parameters, context, executemany):
        if conn.info.pop("relq_sql_started", None) is None:
            return
        with lock:
            sql["running"] -= 1
            sql["statements"] += 1
            if not sql["running"]:
                sql["seconds"] += time.perf_counter() - sql["since"]

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    started = time.perf_counter()
    try:
        yield
    finally:
        script = time.perf_counter() - started
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)
        record = {"at": time.time(), "page": page_name, "script_s": script, "sql_s": sql["seconds"]}
        record["sql_statements"] = sql["statements"]
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
