"""RelQ benchmarks (targets in bench/README.md): relq side by side with hand-written DuckDB SQL and pandas.

    python bench/run.py                 # large tier (200k customers), every section
    python bench/run.py --quick         # small tier (12k customers), queries only, < 2 min
    python bench/run.py --sections queries,import,memory,postgres,risk --repeat 7
    python bench/run.py --sections chdb       # relq on ClickHouse (chDB) beside relq on DuckDB
    python bench/run.py --sections upload     # the 1M-row export through the Upload page, in chromium

Results go to bench/cache/<tier>-results.json and .md; bench/RESULTS.md quotes them.
Not part of the test suite: timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "bench" / "cache"
PYTHON = sys.executable

TIERS = {"large": 200_000, "small": 12_000}
SQL_TARGET, PANDAS_TARGET = 1.5, 3.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def db_path(tier: str) -> Path:
    return CACHE / f"{tier}.duckdb"


def build_tier(tier: str, force: bool = False) -> float | None:
    """Build the demo company of ``tier`` into bench/cache/<tier>.duckdb (once)."""
    path = db_path(tier)
    if path.exists() and not force:
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    log(f"building the {tier} tier ({TIERS[tier]:,} customers) into {path}")
    started = time.perf_counter()
    env = {**os.environ, "RELQ_DATABASE_URL": f"duckdb:///{path}", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [PYTHON, "-m", "relq", "demo", "--customers", str(TIERS[tier])], check=True, env=env, cwd=ROOT
    )
    return time.perf_counter() - started


# --------------------------------------------------------------------------- timing


def _timed(fn, arg) -> tuple[float, dict]:
    started = time.perf_counter()
    out = fn(arg)
    return time.perf_counter() - started, out


def _agree(a: dict, b: dict, rel: float = 1e-6) -> list[str]:
    """Keys where two figure dicts differ (missing keys included)."""
    problems = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            problems.append(f"{key}: only in {'relq' if key in a else 'other'}")
            continue
        x, y = a[key], b[key]
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            if x != y:
                problems.append(f"{key}: {x!r} vs {y!r}")
            continue
        if not (abs(x - y) <= rel * max(1.0, abs(x), abs(y)) or (x != x and y != y)):
            problems.append(f"{key}: {x!r} vs {y!r}")
    return problems


def run_queries(tier: str, repeat: int, only: set[str] | None) -> dict:
    """Median warm timings of every workload: relq, hand-written DuckDB SQL, pandas."""
    from bench.workloads import WORKLOADS
    from relq import store

    engine = store.get_engine(f"duckdb:///{db_path(tier)}")
    raw = engine.raw_connection()
    con = raw.driver_connection
    loads = {}
    frames = {}
    log("loading the tables into pandas (timed separately)")
    from bench.workloads import FRAME_TABLES

    for name, query in FRAME_TABLES.items():
        started = time.perf_counter()
        frames[name] = con.execute(query).df()
        loads[name] = {"seconds": time.perf_counter() - started, "rows": len(frames[name])}
    results = []
    for w in WORKLOADS:
        if only and w.name not in only:
            continue
        log(f"{w.name}: warm-up and agreement check")
        _, relq_out = _timed(w.relq, engine)
        _, sql_out = _timed(w.sql, con)
        _, pandas_out = _timed(w.pandas, frames)
        disagreements = {"sql": _agree(relq_out, sql_out), "pandas": _agree(relq_out, pandas_out)}
        times: dict[str, list[float]] = {"relq": [], "sql": [], "pandas": []}
        for _ in range(repeat):  # interleaved, so a noisy neighbour hits all three alike
            times["relq"].append(_timed(w.relq, engine)[0])
            times["sql"].append(_timed(w.sql, con)[0])
            times["pandas"].append(_timed(w.pandas, frames)[0])
        medians = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "workload": w.name,
            "page": w.page,
            **{f"{k}_s": v for k, v in medians.items()},
            "runs": repeat,
            "relq_over_sql": medians["relq"] / medians["sql"],
            "pandas_over_relq": medians["pandas"] / medians["relq"],
            "figures": len(relq_out),
            "disagree_sql": disagreements["sql"][:5],
            "disagree_pandas": disagreements["pandas"][:5],
        }
        row["verdict"] = _verdict(row)
        log(
            f"  relq {medians['relq']:.3f}s  sql {medians['sql']:.3f}s  pandas {medians['pandas']:.3f}s  "
            f"→ {row['relq_over_sql']:.2f}× SQL, pandas {row['pandas_over_relq']:.1f}× slower  {row['verdict']}"
        )
        for side in ("sql", "pandas"):
            if disagreements[side]:
                log(f"  !! relq and {side} disagree: {disagreements[side][:3]}")
        results.append(row)
    raw.close()
    engine.dispose()
    return {"loads": loads, "workloads": results}


def _verdict(row: dict) -> str:
    if row["disagree_sql"] or row["disagree_pandas"]:
        return "numbers differ"
    misses = []
    if row["relq_over_sql"] > SQL_TARGET:
        misses.append(f"> {SQL_TARGET}× SQL")
    if row["pandas_over_relq"] < PANDAS_TARGET:
        misses.append(f"< {PANDAS_TARGET}× pandas")
    return "meets both" if not misses else "misses: " + ", ".join(misses)


# --------------------------------------------------------------------------- import


QUALTRICS_ITEMS = (  # Qualtrics column → instrument item (the layout of data/samples/qualtrics_survey.csv)
    ("Q1_1", "trust_1"),
    ("Q1_2", "trust_2"),
    ("Q1_3", "trust_3"),
    ("Q1_4", "trust_4"),
    ("Q2_1", "commitment_1"),
    ("Q2_2", "commitment_2"),
    ("Q2_3", "commitment_3"),
    ("Q2_4", "commitment_4"),
    ("Q3_1", "satisfaction_1"),
    ("Q3_2", "satisfaction_2"),
    ("Q3_3", "satisfaction_3"),
)


def qualtrics_csv(rows: int, tier: str) -> Path:
    """A Qualtrics-layout export (3 header rows) of ``rows`` responses from the tier's customers."""
    import numpy as np
    import pandas as pd

    path = CACHE / f"qualtrics_{rows}.csv"
    if path.exists():
        return path
    log(f"generating a {rows:,}-row Qualtrics export at {path}")
    import duckdb

    con = duckdb.connect(str(db_path(tier)), read_only=True)
    customers = con.execute("SELECT customer_id, email FROM customers ORDER BY customer_id").df()
    con.close()
    rng = np.random.default_rng(11)
    pick = rng.integers(0, len(customers), rows)
    start = pd.Timestamp("2025-01-06 08:00") + pd.to_timedelta(rng.integers(0, 300 * 86400, rows), unit="s")
    duration = np.round(rng.lognormal(np.log(240), 0.35, rows)).astype(int)
    end = start + pd.to_timedelta(duration, unit="s")
    trait = rng.normal(0, 1, rows)
    frame = pd.DataFrame(
        {
            "StartDate": start.strftime("%Y-%m-%d %H:%M:%S"),
            "EndDate": end.strftime("%Y-%m-%d %H:%M:%S"),
            "Status": "IP Address",
            "Progress": 100,
            "Duration (in seconds)": duration,
            "Finished": "True",
            "RecordedDate": end.strftime("%Y-%m-%d %H:%M:%S"),
            "ResponseId": [f"R_bench{i:09d}" for i in range(rows)],
            "RecipientEmail": customers["email"].to_numpy()[pick],
            "ExternalReference": customers["customer_id"].to_numpy()[pick],
            "UserLanguage": "EN",
        }
    )
    for column, item in QUALTRICS_ITEMS:
        reverse = item in ("trust_4", "commitment_4", "satisfaction_3")
        value = 5 + (-1.2 if reverse else 1.2) * trait + rng.normal(0, 1, rows)
        frame[column] = np.clip(np.round(value), 1, 7).astype(int)
    frame["Q4"] = np.clip(np.round(8 + 1.6 * trait + rng.normal(0, 1, rows)), 0, 10).astype(int)
    frame["Q5"] = np.where(rng.random(rows) < 0.2, "Helpful team, fair price", "")
    sample = (ROOT / "data" / "samples" / "qualtrics_survey.csv").read_text(encoding="utf-8-sig").splitlines()
    with path.open("w", encoding="utf-8") as out:
        out.write("\n".join(sample[:3]) + "\n")  # the three header rows of a real export
        frame.to_csv(out, index=False, header=False)
    return path


IMPORT_SCRIPT = """
import sys, time, json
from relq import store
from relq.ingest import import_file
from relq.ingest.themes import refresh_themes
from relq.analyses.churn_risk import refresh_scores
engine = store.get_engine(sys.argv[1])
started = time.perf_counter()
result = import_file(engine, sys.argv[2], file_name="qualtrics_bench.csv", themes=False)
elapsed = time.perf_counter() - started
started = time.perf_counter()
themes = refresh_themes(engine).sentence()  # what import_file does next by default
themes_s = time.perf_counter() - started
started = time.perf_counter()
scores = refresh_scores(engine)  # what the CLI and the Upload page then do (follow_up_import)
scores_s = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "themes_s": themes_s, "themes": themes, "scores_s": scores_s, "scores": scores,
                  "imported": int(getattr(result, "rows_imported", 0) or 0), "summary": str(result)[:400]}))
"""


def run_import(tier: str, rows: int) -> dict:
    """Import a generated Qualtrics export into a copy of the tier: wall time and peak RSS."""
    csv = qualtrics_csv(rows, tier)
    target = CACHE / f"import-{tier}.duckdb"
    target.unlink(missing_ok=True)
    shutil.copy(db_path(tier), target)
    log(f"importing {csv.name} into a copy of the {tier} tier")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", PYTHON, "-c", IMPORT_SCRIPT, f"duckdb:///{target}", str(csv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    wall = time.perf_counter() - started
    peak_kb = next(
        (int(line.split(":")[1]) for line in proc.stderr.splitlines() if "Maximum resident set size" in line),
        0,
    )
    out = {
        "rows": rows,
        "csv_mb": csv.stat().st_size / 1e6,
        "process_wall_s": wall,
        "peak_rss_mb": peak_kb / 1024,
    }
    try:
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (IndexError, json.JSONDecodeError):
        out["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    target.unlink(missing_ok=True)
    log(f"  import: {out}")
    return out


# --------------------------------------------------------------------------- dashboard memory


def _tree_rss_kb(pid: int) -> int:
    """RSS of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def page_paths() -> list[str]:
    """url_path of every page listed in app.py (the default page answers at /)."""
    text = (ROOT / "app.py").read_text()
    return re.findall(r'url_path="([^"]+)"', text)


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def _dashboard(database: Path):
    """A RelQ server on ``database`` (DuckDB file) on a free loopback port, its process tree's RSS
    sampled every 0.1 s: yields (base URL, peak), peak["kb"] the highest sample so far,
    peak["phase_kb"] the highest since the caller last zeroed it, and peak["pid"] the server's
    process id."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RELQ_DATABASE_URL": f"duckdb:///{database}", "PYTHONPATH": str(ROOT)}
    cmd = [
        PYTHON,
        "-m",
        "streamlit",
        "run",
        "serve.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
    ]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = {"kb": 0, "phase_kb": 0, "pid": server.pid}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            kb = _tree_rss_kb(server.pid)
            peak["kb"] = max(peak["kb"], kb)
            peak["phase_kb"] = max(peak["phase_kb"], kb)  # since the caller last set it to 0
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", peak
    finally:
        stop.set()
        sampler.join()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


# The app's script states while a run is under way, and a check that none is.
RUNNING = ("initial", "running", "rerunRequested")
IDLE_JS = """() => { const app = document.querySelector('[data-testid="stApp"]');
  const s = app && app.getAttribute('data-test-script-state');
  return !!s && !%s.includes(s); }""" % json.dumps(list(RUNNING))  # noqa: UP031 - a JS literal


def _wait_idle(page, timeout_ms: int = 300_000) -> None:
    """Until the app's script run is over (its root's script state is no longer running)."""
    page.wait_for_function(IDLE_JS, timeout=timeout_ms)


def run_memory(tier: str) -> dict:
    """Peak RSS of the streamlit process (and children) while a browser visits every page."""
    from playwright.sync_api import sync_playwright

    pages = []
    with _dashboard(db_path(tier)) as (base, peak), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path in page_paths():
            started = time.perf_counter()
            page.goto(f"{base}/{path}", wait_until="domcontentloaded")
            page.wait_for_selector("[data-testid='stMain']", timeout=120_000)
            # wait until this page's run has finished, then once more after a short settle (a
            # page may rerun itself once)
            done = None
            for _ in range(2):
                _wait_idle(page)
                done = done or time.perf_counter() - started
                time.sleep(1.0)
            errors = page.locator("[data-testid='stException']").count()
            pages.append(
                {
                    "page": path,
                    "seconds": done,
                    "exceptions": errors,
                    "tree_rss_mb": _tree_rss_kb(peak["pid"]) / 1024,
                }
            )
            log(f"  {path}: {pages[-1]}")
        browser.close()
    out = {"peak_rss_mb": peak["kb"] / 1024, "pages": pages}
    log(f"  dashboard peak RSS {out['peak_rss_mb']:.0f} MB")
    return out


def run_upload(tier: str, rows: int) -> dict:
    """The 1M-row Qualtrics export uploaded through the Upload page of a dashboard on a copy of the
    tier, in chromium: checked, then imported with a click. Times from the browser; the peak RSS of
    the dashboard's process tree over the whole upload, the comment themes and the churn-risk fit
    that follow it (sampled until 30 s after the import's message)."""
    from playwright.sync_api import sync_playwright

    csv = qualtrics_csv(rows, tier)
    target = CACHE / f"upload-{tier}.duckdb"
    target.unlink(missing_ok=True)
    shutil.copy(db_path(tier), target)
    out: dict = {"rows": rows, "csv_mb": csv.stat().st_size / 1e6}
    try:
        with _dashboard(target) as (base, peak), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/upload")
            page.wait_for_selector("[data-testid='stMain'] h1", timeout=120_000)
            _wait_idle(page)
            out["before_upload_mb"] = peak["kb"] / 1024
            started = time.perf_counter()
            page.locator("input[type=file]").set_input_files(str(csv))
            button = page.get_by_role("button", name=f"Import {rows:,} rows")
            button.wait_for(timeout=600_000)
            _wait_idle(page)
            out["checked_s"] = time.perf_counter() - started
            out["checked_peak_mb"] = peak["kb"] / 1024
            out["held_after_check_mb"] = _tree_rss_kb(peak["pid"]) / 1024
            peak["phase_kb"] = 0
            started = time.perf_counter()
            button.click()
            # stored: the page says so as soon as the import's transaction commits
            page.get_by_text(re.compile(rf"{rows:,} of {rows:,} rows imported")).first.wait_for(
                timeout=600_000
            )
            out["stored_s"] = time.perf_counter() - started
            # done: its comments read for themes, the case rules and alerts run, the page drawn again
            # with what they did (the sentence about today's scores comes with that last drawing)
            page.get_by_text("churn-risk scores are being fitted in the background").wait_for(timeout=600_000)
            _wait_idle(page)
            out["imported_s"] = time.perf_counter() - started
            out["import_peak_mb"] = peak["phase_kb"] / 1024
            peak["phase_kb"] = 0
            time.sleep(30)  # the churn-risk fit runs on in the background
            out["after_import_peak_mb"] = peak["phase_kb"] / 1024
            out["peak_rss_mb"] = peak["kb"] / 1024
            out["exceptions"] = page.locator("[data-testid='stException']").count()
            browser.close()
    finally:
        target.unlink(missing_ok=True)
    log(f"  upload: {out}")
    return out


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin(name: str) -> str:
    import glob

    return sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


RISK_TARGET_S = 10.0


def run_risk(tier: str, repeat: int) -> dict:
    """Churn risk on the tier: fitting and backtesting once (timed, as the page's first visit),
    then scoring every active customer -- features in SQL at the data's end, the probability and
    the factors in words -- timed ``repeat`` times (target ≤ 10 s for the large tier)."""
    from relq import store
    from relq.analyses import churn_risk

    engine = store.get_engine(f"duckdb:///{db_path(tier)}")
    with engine.connect() as conn:
        log("churn risk: snapshots, fit and backtest")
        started = time.perf_counter()
        result = churn_risk.assess(conn)
        assess_s = time.perf_counter() - started
        out: dict = {"assess_s": assess_s, "message": result.message or None}
        if not result.ok:
            engine.dispose()
            return out
        times, cpu, scored = [], [], 0
        for _ in range(repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            today = churn_risk.snapshot(conn, result.end, result.horizon, result.basis, labelled=False)
            scores = churn_risk.scores_frame(result.model, today)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)  # every thread of this process, DuckDB's too
            scored = len(scores)
    engine.dispose()
    bt = result.backtest
    out.update(
        {
            "customers_scored": scored,
            "score_s": statistics.median(times),
            "score_cpu_s": statistics.median(cpu),
            "load_average": os.getloadavg()[0],
            "score_runs": repeat,
            "target_s": RISK_TARGET_S,
            "training_rows": result.model.training_rows,
            "training_events": result.model.training_events,
            "backtest": {
                name: getattr(bt, name).as_dict()
                for name in ("auc", "concordance", "brier", "rule_auc", "auc_gain", "concordance_gain")
            },
        }
    )
    log(
        f"  scored {scored:,} customers in {out['score_s']:.2f} s (median of {repeat}); fit and backtest "
        f"{assess_s:.1f} s; held-out AUC {bt.auc.estimate:.3f} vs rule {bt.rule_auc.estimate:.3f}"
    )
    return out


def run_postgres(tier: str, repeat: int, only: set[str] | None) -> dict:
    """The relq side of each workload on PostgreSQL 15 holding the same demo company (reported only)."""
    import sqlalchemy as sa

    from bench.workloads import WORKLOADS
    from relq import store
    from relq.ingest.demo import generate_demo

    base = Path(tempfile.mkdtemp(prefix="relq-bench-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "relq", "-A", "trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=1GB -c work_mem=64MB"
    subprocess.run(
        _as_postgres(
            [_pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l", str(base / "log"), "start"]
        ),
        check=True,
        capture_output=True,
    )
    results = []
    try:
        engine = store.get_engine(f"postgresql+psycopg://relq@127.0.0.1:{port}/postgres")
        log(f"PostgreSQL: generating and loading the {tier} tier")
        started = time.perf_counter()
        store.load_demo(engine, generate_demo(customers=TIERS[tier]))
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        load_s = time.perf_counter() - started
        log(f"  loaded in {load_s:.0f}s")
        # What the dashboard does after a load or an import: every stored table the pages read
        # (relq.analyses.churn_risk.refresh_scores builds them before fitting today's scores).
        from relq.analyses.churn_risk import rebuild_stored_tables

        started = time.perf_counter()
        rebuild_stored_tables(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        derived_s = time.perf_counter() - started
        log(f"  the stored tables the pages read built in {derived_s:.1f}s")
        # RelQ's sessions run with jit off (store.get_engine); the same workloads with PostgreSQL's
        # default jit on, interleaved, show what that setting is worth.
        jit_on = store.get_engine(f"postgresql+psycopg://relq@127.0.0.1:{port}/postgres")

        def _jit_on(dbapi_connection, _record):
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET jit = on")
            dbapi_connection.commit()

        sa.event.listen(jit_on, "connect", _jit_on)
        for w in WORKLOADS:
            if only and w.name not in only:
                continue
            try:
                w.relq(engine)
                w.relq(jit_on)
                runs, jit_runs = [], []
                for _ in range(max(3, repeat // 2)):
                    runs.append(_timed(w.relq, engine)[0])
                    jit_runs.append(_timed(w.relq, jit_on)[0])
                results.append(
                    {
                        "workload": w.name,
                        "relq_s": statistics.median(runs),
                        "relq_jit_on_s": statistics.median(jit_runs),
                        "runs": len(runs),
                    }
                )
            except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                results.append({"workload": w.name, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            log(f"  {results[-1]}")
        engine.dispose()
        jit_on.dispose()
    finally:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)
    return {"load_s": load_s, "derived_s": derived_s, "workloads": results}


def chdb_url(tier: str) -> str:
    return f"chdb:///{CACHE / (tier + '.chdb')}?database=relq"


def build_chdb(tier: str) -> float | None:
    """Copy the tier's DuckDB file, table by table, into a chDB store through RelQ's bulk path
    (once): both engines then hold exactly the same rows."""
    from relq import store
    from relq.store import schema

    marker = CACHE / f"{tier}.chdb.complete"
    if marker.exists():
        return None
    shutil.rmtree(CACHE / f"{tier}.chdb", ignore_errors=True)
    log(f"copying the {tier} tier into chDB ({CACHE / (tier + '.chdb')})")
    started = time.perf_counter()
    duck = store.get_engine(f"duckdb:///{db_path(tier)}")
    engine = store.get_engine(chdb_url(tier))
    store.create_schema(engine)
    with duck.connect() as src, engine.begin() as dst:
        con = src.connection.driver_connection
        for table in schema.metadata.sorted_tables:
            columns = ", ".join(f'"{c.name}"' for c in table.columns)
            reader = con.execute(f'SELECT {columns} FROM "{table.name}"').fetch_record_batch(1_000_000)  # noqa: S608
            rows = 0
            for batch in reader:
                rows += store.bulk_insert(dst, table, batch.to_pandas())
            log(f"  {table.name}: {rows:,} rows")
        store.refresh_derived(dst)
    duck.dispose()
    engine.dispose()
    marker.write_text("ok")
    return time.perf_counter() - started


def run_chdb(tier: str, repeat: int, only: set[str] | None) -> dict:
    """The relq side of each workload on DuckDB and on ClickHouse in-process (chDB) holding the
    same rows, interleaved, with a check that both give the same figures."""
    from bench.workloads import WORKLOADS
    from relq import store

    copy_s = build_chdb(tier)
    duck = store.get_engine(f"duckdb:///{db_path(tier)}")
    chdb = store.get_engine(chdb_url(tier))
    results = []
    for w in WORKLOADS:
        if only and w.name not in only:
            continue
        log(f"{w.name}: warm-up and agreement check (chDB)")
        try:
            _, duck_out = _timed(w.relq, duck)
            _, chdb_out = _timed(w.relq, chdb)
            times: dict[str, list[float]] = {"duckdb": [], "chdb": []}
            for _ in range(repeat):
                times["duckdb"].append(_timed(w.relq, duck)[0])
                times["chdb"].append(_timed(w.relq, chdb)[0])
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            results.append(
                {"workload": w.name, "page": w.page, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            )
            log(f"  !! {results[-1]['error']}")
            continue
        medians = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "workload": w.name,
            "page": w.page,
            "duckdb_s": medians["duckdb"],
            "chdb_s": medians["chdb"],
            "chdb_over_duckdb": medians["chdb"] / medians["duckdb"],
            "runs": repeat,
            "figures": len(duck_out),
            "disagree": _agree(duck_out, chdb_out)[:5],
        }
        log(f"  duckdb {row['duckdb_s']:.3f}s  chdb {row['chdb_s']:.3f}s  → {row['chdb_over_duckdb']:.2f}×")
        if row["disagree"]:
            log(f"  !! DuckDB and chDB disagree: {row['disagree'][:3]}")
        results.append(row)
    duck.dispose()
    chdb.dispose()
    return {"copy_s": copy_s, "workloads": results}


# --------------------------------------------------------------------------- report


def machine() -> dict:
    import duckdb
    import pandas
    import sqlalchemy

    return {
        "nproc": os.cpu_count(),
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pandas": pandas.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown(results: dict) -> str:
    lines = [f"### {results['tier']} tier — {results['machine']['when']}", ""]
    m = results["machine"]
    lines.append(
        f"nproc {m['nproc']}, {m['mem_gb']} GB RAM, Python {m['python']}, DuckDB {m['duckdb']}, "
        f"pandas {m['pandas']}, SQLAlchemy {m['sqlalchemy']}; medians of {results.get('repeat')} warm runs."
    )
    q = results.get("queries")
    if q:
        lines += [
            "",
            "| workload | page | relq s | DuckDB SQL s | pandas s | relq/SQL (≤1.5×) | pandas/relq (≥3×) | verdict |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in q["workloads"]:
            lines.append(
                f"| {r['workload']} | {r['page']} | {r['relq_s']:.3f} | {r['sql_s']:.3f} | {r['pandas_s']:.3f} | "
                f"{r['relq_over_sql']:.2f}× | {r['pandas_over_relq']:.1f}× | {r['verdict']} |"
            )
        loads = ", ".join(f"{k} {v['rows']:,} rows {v['seconds']:.1f}s" for k, v in q["loads"].items())
        lines += ["", f"pandas load (excluded from the pandas column): {loads}."]
        bad = [r for r in q["workloads"] if r["disagree_sql"] or r["disagree_pandas"]]
        lines.append(
            "All three sides computed the same figures for every workload."
            if not bad
            else "Disagreements: "
            + "; ".join(f"{r['workload']}: {r['disagree_sql'] + r['disagree_pandas']}" for r in bad)
        )
    if "import" in results:
        i = results["import"]
        lines += [
            "",
            f"Import of a {i['rows']:,}-row Qualtrics export ({i.get('csv_mb', 0):.0f} MB): "
            f"validated and stored (committed) in {i.get('seconds', float('nan')):.1f} s; then its comments read "
            f"for themes in {i.get('themes_s', float('nan')):.1f} s and today's churn-risk scores fitted and saved "
            f"in {i.get('scores_s', float('nan')):.1f} s ({i['process_wall_s']:.1f} s for the process "
            f"with Python start-up), peak RSS {i['peak_rss_mb']:.0f} MB. {i.get('error', '')}",
        ]
    if "upload" in results:
        u = results["upload"]
        lines += [
            "",
            f"Upload page, a {u['rows']:,}-row Qualtrics export ({u['csv_mb']:.0f} MB) in chromium: uploaded and "
            f"checked in {u['checked_s']:.1f} s; after the click, stored (the page says so) in "
            f"{u.get('stored_s', float('nan')):.1f} s, and its comments read for themes, the case rules and "
            f"alerts run and the page drawn again in {u['imported_s']:.1f} s; dashboard peak RSS {u['peak_rss_mb']:.0f} MB over the upload, the import and the "
            f"churn-risk fit after it ({u['before_upload_mb']:.0f} MB before the upload, "
            f"{u['checked_peak_mb']:.0f} MB at most until the check was shown, {u['held_after_check_mb']:.0f} MB "
            f"held while it is shown, {u['import_peak_mb']:.0f} MB at most until the page was drawn again, "
            f"{u['after_import_peak_mb']:.0f} MB at most in the 30 s after it; target < 2048 MB)"
            + (", exception on the page!" if u["exceptions"] else "."),
        ]
    if "memory" in results:
        mem = results["memory"]
        pages = ", ".join(
            f"{p['page']} {p['seconds']:.1f}s" + (" (exception!)" if p["exceptions"] else "")
            for p in mem["pages"]
        )
        lines += [
            "",
            f"Dashboard peak RSS (streamlit + children) over every page: {mem['peak_rss_mb']:.0f} MB "
            f"(target < 2048 MB). First visit per page: {pages}.",
        ]
    if "risk" in results:
        r = results["risk"]
        if "score_s" in r:
            verdict = "meets" if r["score_s"] <= r["target_s"] else "misses"
            lines += [
                "",
                f"Churn risk: scoring {r['customers_scored']:,} active customers (features in SQL, probability, "
                f"factors in words) {r['score_s']:.2f} s, median of {r['score_runs']} — {verdict} the "
                f"{r['target_s']:.0f} s target ({r['score_cpu_s']:.2f} s of CPU in all of its threads; load "
                f"average {r['load_average']:.1f} on {results['machine']['nproc']} cores). Fitting and "
                f"backtesting (first visit): {r['assess_s']:.1f} s on "
                f"{r['training_rows']:,} customer-snapshots; held-out AUC {r['backtest']['auc']['estimate']:.3f} "
                f"vs {r['backtest']['rule_auc']['estimate']:.3f} for the 90-day rule alone.",
            ]
        else:
            lines += ["", f"Churn risk: no score ({r['message']}); fit and backtest {r['assess_s']:.1f} s."]
    if "postgres" in results:
        pg = results["postgres"]
        lines += [
            "",
            f"PostgreSQL 15 (load {pg['load_s']:.0f} s), relq side only:",
            "",
            "| workload | relq on PostgreSQL s (jit off, RelQ's sessions) | with PostgreSQL's default jit on s |",
            "|---|---:|---:|",
        ]
        for r in pg["workloads"]:
            lines.append(
                f"| {r['workload']} | {r['relq_s']:.3f} | {r['relq_jit_on_s']:.3f} |"
                if "relq_s" in r
                else f"| {r['workload']} | {r['error']} | |"
            )
    if "chdb" in results:
        ch = results["chdb"]
        lines += [
            "",
            "relq on ClickHouse in-process (chDB) beside relq on DuckDB, same rows, interleaved"
            + (f" (copied into chDB in {ch['copy_s']:.0f} s)" if ch.get("copy_s") else "")
            + ":",
            "",
            "| workload | page | relq on DuckDB s | relq on chDB s | chDB / DuckDB | same figures |",
            "|---|---|---:|---:|---:|---|",
        ]
        for r in ch["workloads"]:
            if "error" in r:
                lines.append(f"| {r['workload']} | {r['page']} | | | | {r['error']} |")
                continue
            same = "yes" if not r["disagree"] else f"NO: {r['disagree'][:2]}"
            lines.append(
                f"| {r['workload']} | {r['page']} | {r['duckdb_s']:.3f} | {r['chdb_s']:.3f} | "
                f"{r['chdb_over_duckdb']:.2f}× | {same} ({r['figures']} figures) |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small tier, queries only (a smoke check)")
    parser.add_argument("--tier", choices=sorted(TIERS), default=None)
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed runs per side (default 5; 3 with --quick)"
    )
    parser.add_argument(
        "--sections", default=None, help="comma list: queries,import,upload,memory,postgres,chdb,risk"
    )
    parser.add_argument("--only", default=None, help="comma list of workload names")
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the tier's database")
    args = parser.parse_args(argv)
    tier = args.tier or ("small" if args.quick else "large")
    repeat = args.repeat or (3 if args.quick else 5)
    sections = set(
        (args.sections or ("queries" if args.quick else "queries,import,memory,postgres,risk")).split(",")
    )
    only = set(args.only.split(",")) if args.only else None

    build_s = build_tier(tier, force=args.rebuild)
    results: dict = {"tier": tier, "customers": TIERS[tier], "repeat": repeat, "machine": machine()}
    if build_s:
        results["build_s"] = build_s
    if "queries" in sections:
        results["queries"] = run_queries(tier, repeat, only)
    if "import" in sections:
        results["import"] = run_import(tier, args.import_rows)
    if "memory" in sections:
        results["memory"] = run_memory(tier)
    if "upload" in sections:
        results["upload"] = run_upload(tier, args.import_rows)
    if "postgres" in sections:
        results["postgres"] = run_postgres(tier, repeat, only)
    if "chdb" in sections:
        results["chdb"] = run_chdb(tier, repeat, only)
    if "risk" in sections:
        results["risk"] = run_risk(tier, repeat)
    stamp = "-".join(sorted(sections))
    (CACHE / f"{tier}-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    text = markdown(results)
    (CACHE / f"{tier}-{stamp}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
