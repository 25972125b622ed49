"""Where a page's Python time goes: each page run through Streamlit's AppTest under cProfile.

    python bench/profile_pages.py --tier large [--page retention] [--region] [--top 25] [--statements]

Runs every page (or one) once cold, in one process, against the tier's DuckDB file, and prints
the functions with the most cumulative time inside RelQ's own code. ``--region`` first picks
one region in the sidebar, as the browser benchmark's filter change does. ``--statements`` lists
the slowest SQL statements of each page instead (seconds, then the statement's first 400 characters). A developer's tool for
finding what to make faster; the browser benchmark (bench/browser.py) measures what a person
waits for.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", default="large")
    parser.add_argument("--url", default=None)
    parser.add_argument("--page", action="append", default=None, help="a file in pages/, without .py")
    parser.add_argument("--region", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--statements", action="store_true", help="the slowest SQL statements, not functions")
    args = parser.parse_args()
    url = args.url or f"duckdb:///{ROOT / 'bench' / 'cache' / (args.tier + '.duckdb')}"
    os.environ["RELQ_DATABASE_URL"] = url
    from streamlit.testing.v1 import AppTest

    names = args.page or [p.stem for p in sorted((ROOT / "pages").glob("*.py"))]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)

    import sqlalchemy as sa

    timings: list[tuple[float, str]] = []

    @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def _started(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_started"] = time.perf_counter()

    @sa.event.listens_for(sa.engine.Engine, "after_cursor_execute")
    def _ended(conn, cursor, statement, parameters, context, executemany):
        started = conn.info.pop("bench_started", None)
        if started is not None:
            timings.append((time.perf_counter() - started, " ".join(statement.split())[:400]))

    def statements(label: str, step) -> None:
        timings.clear()
        started = time.perf_counter()
        step()
        took = time.perf_counter() - started
        total = sum(t for t, _ in timings)
        print(f"\n=== {label}: {took:.2f} s, {len(timings)} statements in {total:.2f} s", flush=True)
        for seconds, text in sorted(timings, reverse=True)[: args.top]:
            print(f"  {seconds:6.2f} s  {text}")

    def profiled(label: str, step) -> None:
        if args.statements:
            return statements(label, step)
        profiler = cProfile.Profile()
        # AppTest runs the script in a thread of its own: profile every thread started from here on
        threading.setprofile(lambda *_, p=profiler: p.enable())
        started = time.perf_counter()
        step()
        threading.setprofile(None)
        took = time.perf_counter() - started
        errors = [e.value for e in at.exception]
        print(f"\n=== {label}: {took:.2f} s {'ERRORS ' + str(errors)[:300] if errors else ''}", flush=True)
        stats = pstats.Stats(profiler)
        rows = []
        for func, (_cc, nc, tt, ct, _callers) in stats.stats.items():
            filename, line, fname = func
            ours = "/relq/" in filename or "/pages/" in filename
            if ours or ("sqlalchemy/engine/base.py" in filename and fname == "execute"):
                where = Path(filename).relative_to(ROOT) if str(ROOT) in filename else filename
                rows.append((ct, tt, nc, f"{where}:{line} {fname}"))
        for ct, tt, nc, where in sorted(rows, reverse=True)[: args.top]:
            print(f"  {ct:8.2f} cum {tt:7.2f} own {nc:7d}x  {where}")

    profiled("first run (the default page)", at.run)
    if args.region:
        region = at.multiselect(key="flt_dim_region")
        profiled("one region chosen (the default page)", lambda: region.set_value([region.options[0]]).run())
    for name in names:
        profiled(name, lambda name=name: at.switch_page(f"pages/{name}.py").run())


if __name__ == "__main__":
    main()
