"""A dashboard that does not fall over, and the security basics.

- Every page in app.py's navigation survives an empty store, a one-customer store and filters
  that match nothing (AppTest through the frame, as the server runs it).
- A DuckDB file held by another process, or a PostgreSQL server that is down, gives one clear
  sentence saying what to do — in the CLI and in the dashboard — never a traceback.
- SQL takes values only as bound parameters; no user data goes through ``unsafe_allow_html``;
  CSV exports are formula-safe; uploads have type and size limits; secrets stay out of git.
"""

from __future__ import annotations

import ast
import csv
import io
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from relq import store
from relq.core.exports import to_safe_csv
from relq.ingest import import_file

ROOT = Path(__file__).resolve().parent.parent
PAGE_FILES = sorted(set(re.findall(r"[\"'](pages/[\w/]+\.py)[\"']", (ROOT / "app.py").read_text())))


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def empty_db_url(tmp_path_factory):
    """A store with RelQ's schema and one import whose every row was rejected: no data at all."""
    path = tmp_path_factory.mktemp("empty") / "relq.duckdb"
    engine = store.get_engine(f"duckdb:///{path}")
    store.create_schema(engine)
    import_file(engine, _csv("customer_id,name,acquired_at", ",Nobody,not a date"), file_name="junk.csv")
    engine.dispose()
    return f"duckdb:///{path}"


@pytest.fixture(scope="module")
def one_customer_db_url(tmp_path_factory):
    """A store holding a single customer with two purchases, a ticket and one survey answer."""
    path = tmp_path_factory.mktemp("one") / "relq.duckdb"
    engine = store.get_engine(f"duckdb:///{path}")
    store.create_schema(engine)
    files = {
        "customers.csv": _csv(
            "customer_id,name,email,region,industry,plan,acquired_at,annual_value",
            "C1,Solo Ltd,solo@solo.example,EU,Retail,Pro,2024-01-15,5000",
        ),
        "transactions.csv": _csv(
            "transaction_id,customer_id,occurred_at,amount", "T1,C1,2024-02-01,100", "T2,C1,2024-05-01,120"
        ),
        "tickets.csv": _csv(
            "ticket_id,customer_id,opened_at,first_response_at,resolved_at,channel,status",
            "K1,C1,2024-03-01 09:00,2024-03-01 10:00,2024-03-02 09:00,email,solved",
        ),
        "survey.csv": _csv(
            "response_id,customer_id,submitted_at,nps,csat,ces,"
            "trust_1,trust_2,trust_3,trust_4,commitment_1,commitment_2,commitment_3,commitment_4,"
            "satisfaction_1,satisfaction_2,satisfaction_3,comment",
            "R1,C1,2024-04-01 12:00,9,5,2,6,6,6,2,5,5,5,3,6,6,2,Helpful team",
        ),
    }
    for name, data in files.items():
        import_file(engine, data, file_name=name)
    engine.dispose()
    return f"duckdb:///{path}"


def _run_every_page(url: str, monkeypatch, query_params: dict | None = None) -> dict[str, list[str]]:
    """Open every page of the navigation in one session; return each page's problems."""
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(query_params or {})
    at.run()
    problems = {}
    for page in PAGE_FILES:
        at.switch_page(page).run()
        found = [e.value for e in at.exception]
        if not (at.main.children or at.error or at.warning or at.info):
            found.append("the page showed nothing")
        problems[page] = found
    return problems


def test_the_navigation_names_the_pages_this_test_opens():
    assert "pages/overview.py" in PAGE_FILES and "pages/admin.py" in PAGE_FILES
    assert all((ROOT / p).is_file() for p in PAGE_FILES), PAGE_FILES


def test_every_page_survives_an_empty_store(empty_db_url, monkeypatch):
    problems = _run_every_page(empty_db_url, monkeypatch)
    assert not {p: e for p, e in problems.items() if e}


def test_every_page_survives_a_single_customer(one_customer_db_url, monkeypatch):
    problems = _run_every_page(one_customer_db_url, monkeypatch)
    assert not {p: e for p, e in problems.items() if e}


def test_every_page_survives_filters_that_match_nothing(demo_db_url, monkeypatch):
    problems = _run_every_page(demo_db_url, monkeypatch, {"since": "1990-01-01", "until": "1990-01-31"})
    assert not {p: e for p, e in problems.items() if e}


# ── a busy DuckDB file, a server that is down ───────────────────────────────────────────────

HOLD_LOCK = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('CREATE TABLE IF NOT EXISTS "
    "held(x INT)'); print('holding', flush=True); time.sleep(120)"
)


@pytest.fixture
def held_duckdb(tmp_path):
    """A DuckDB file another process holds open for writing (as the CLI does during an import)."""
    path = tmp_path / "relq.duckdb"
    engine = store.get_engine(f"duckdb:///{path}")
    store.create_schema(engine)
    engine.dispose()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    yield f"duckdb:///{path}"
    holder.kill()
    holder.wait()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RELQ_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "relq", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


def test_the_cli_on_a_duckdb_file_held_by_another_process_says_what_to_do(held_duckdb):
    run = _cli(held_duckdb, "report", "--json")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "in use by another RelQ process" in run.stderr and "try again" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_the_dashboard_on_a_duckdb_file_held_by_another_process_says_what_to_do(held_duckdb, monkeypatch):
    monkeypatch.setattr(store.database, "DUCKDB_LOCK_WAIT_SECONDS", 0.5)
    monkeypatch.setenv("RELQ_DATABASE_URL", held_duckdb)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("in use by another RelQ process" in e.value for e in at.error)


def test_the_cli_can_import_while_the_dashboard_has_the_store_open(tmp_path):
    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    dashboard = store.get_engine(url)  # as the running dashboard holds it: engine cached, queries done
    store.create_schema(dashboard)
    with dashboard.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    survey = tmp_path / "survey.csv"
    survey.write_bytes(_csv("response_id,submitted_at,nps", "R1,2025-01-02 10:00,9", "R2,2025-01-03 10:00,3"))
    run = _cli(url, "import", str(survey))
    assert run.returncode == 0, run.stderr
    with dashboard.connect() as conn:  # and the dashboard sees the new rows on its next query
        assert conn.execute(sa.text("SELECT count(*) FROM survey_responses")).scalar_one() == 2
        audit = conn.execute(sa.text("SELECT action, user_email FROM audit_log")).all()
    assert [a for a, _ in audit] == ["import"] and audit[0][1].startswith("cli")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cli_with_the_database_server_down_says_what_to_do():
    run = _cli(f"postgresql+psycopg://relq@127.0.0.1:{_closed_port()}/relq", "report", "--json")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "Cannot reach the database" in run.stderr and "server is running" in run.stderr


def test_the_dashboard_with_the_database_server_down_says_what_to_do(monkeypatch):
    monkeypatch.setenv("RELQ_DATABASE_URL", f"postgresql+psycopg://relq@127.0.0.1:{_closed_port()}/relq")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("Cannot reach the database" in e.value for e in at.error)


def test_a_database_lost_in_the_middle_of_a_page_gives_a_sentence_and_a_retry(postgres_engine):
    def page(url: str) -> None:
        import sqlalchemy as sa
        import streamlit as st

        from relq import ui

        engine = sa.create_engine(url)
        with ui.store_errors_as_sentences(engine):
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        st.write("not reached")

    url = postgres_engine.url.render_as_string(hide_password=False)
    at = AppTest.from_function(page, args=(url,), default_timeout=30).run()
    assert not at.exception
    assert any("Cannot reach the database" in e.value for e in at.error)
    assert [b.label for b in at.button] == ["Try again"]


# ── security basics ─────────────────────────────────────────────────────────────────────────

SQL_CALLS = {"text", "execute", "exec_driver_sql", "copy", "executemany", "sql"}
# Statements built with f-strings from RelQ's own schema names (never from a user), documented
# where they are written.
KNOWN_SCHEMA_NAME_SQL = {
    ("relq/store/database.py", "_native_insert"),
    ("relq/store/database.py", "refresh_derived"),
    # a statement SQLAlchemy compiled (its values bound) asked for its column types, LIMIT 0
    ("relq/store/database.py", "_postgres_numbers"),
    # ClickHouse: session settings, the customer-field lookup table, a temporary join table for
    # UPDATE … FROM, the import lock queue (holder = a uuid RelQ made) — names, never user values.
    *(
        ("relq/store/dialects.py", name)
        for name in (
            "configure",
            "_session",
            "refresh_lookups",
            "_update_from_via_join_table",
            "_drop_join_tables",
            "acquire",
            "release",
        )
    ),
}


def _formatted_sql_calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for call in [n for n in ast.walk(func) if isinstance(n, ast.Call)]:
            name = getattr(call.func, "attr", getattr(call.func, "id", None))
            if name not in SQL_CALLS or not call.args:
                continue
            first = call.args[0]
            formatted = (
                isinstance(first, ast.JoinedStr)
                or (isinstance(first, ast.BinOp) and isinstance(first.op, (ast.Mod, ast.Add)))
                or (isinstance(first, ast.Call) and getattr(first.func, "attr", None) == "format")
            )
            if formatted:
                yield func.name, call.lineno


def test_sql_takes_values_only_as_bound_parameters():
    found = []
    for path in sorted((ROOT / "relq").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        found += [
            (rel, fn, line)
            for fn, line in _formatted_sql_calls(path)
            if (rel, fn) not in KNOWN_SCHEMA_NAME_SQL
        ]
    assert not found, f"SQL built by string formatting (use bound parameters or Core): {found}"


def test_the_bound_parameter_check_catches_an_interpolated_value(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def find(conn, name):\n    return conn.execute(text(f\"SELECT * FROM c WHERE n = '{name}'\"))\n"
    )
    assert list(_formatted_sql_calls(bad)) == [("find", 2)]


def test_no_page_renders_html_unescaped():
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
        if "unsafe_allow_html" in p.read_text(encoding="utf-8") or "st.html(" in p.read_text(encoding="utf-8")
    ]
    assert not offenders


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_exports_neutralise_formula_cells_and_headers(start):
    frame = pd.DataFrame({f"{start}head": [f"{start}SUM(A1:A9)", "plain", None], "n": [1, -2, 3]})
    text = to_safe_csv(frame).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))  # as a spreadsheet splits rows and cells
    assert rows[0] == [f"'{start}head", "n"]
    assert rows[1] == [f"'{start}SUM(A1:A9)", "1"]
    assert rows[2:] == [["plain", "-2"], ["", "3"]]  # numbers stay numbers


def test_uploads_have_a_size_limit_and_a_list_of_types():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert 0 < config["server"]["maxUploadSize"] <= 500
    assert config["server"]["address"] in ("localhost", "127.0.0.1")
    for page in sorted((ROOT / "pages").glob("*.py")):
        tree = ast.parse(page.read_text(encoding="utf-8"))
        for call in [n for n in ast.walk(tree) if isinstance(n, ast.Call)]:
            if getattr(call.func, "attr", None) == "file_uploader":
                assert any(k.arg == "type" for k in call.keywords), (
                    f"{page.name}: file_uploader without type="
                )


def test_secrets_stay_out_of_git_and_the_examples_are_documented():
    ignored = subprocess.run(
        ["git", "check-ignore", ".streamlit/secrets.toml", "data/roles.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ignored.stdout.split() == [".streamlit/secrets.toml", "data/roles.toml"]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ".streamlit/secrets.toml" not in tracked
    example = tomllib.loads((ROOT / ".streamlit" / "secrets.example.toml").read_text())
    assert {"redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url"} <= set(
        example["auth"]
    )
