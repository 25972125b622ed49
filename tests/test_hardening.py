"""Small holes closed: malformed URL values are ignored, text from data is never Markdown, a CLI
import shows in a running dashboard at once, and a database URL RelQ cannot use gets one sentence
with its password masked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from relq import store
from relq.core.plaintext import plain
from relq.ingest import import_file
from relq.store.filters import SegmentFilter

ROOT = Path(__file__).resolve().parent.parent


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RELQ_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "relq", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


# ── 11. malformed URL values ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "query",
    [
        {"since": "9999-12-31", "until": "0001-01-01"},
        {"since": "0001-01-01", "until": "2025-01-01"},
        {"since": "2025-13-45", "until": "yesterday"},
        {"quadrant": "x_sideways_y_up", "wave": "\x00", "exclude": "flag_nothing"},
        {"seg.region": "EMEA\x00", "seg.": "x", "seg.plan": "P" * 5000},
    ],
)
def test_malformed_or_out_of_range_url_values_are_ignored(demo_env, query):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.metric  # the overview of everything, as without those values


def test_the_url_filter_keeps_only_values_it_can_use():
    flt = SegmentFilter.from_query_params(
        {
            "since": "9999-12-31",
            "until": "2025-02-01",
            "quadrant": "bogus",
            "seg.region": "EMEA|\x00|" + "x" * 600,
            "seg.bad\x00": "y",
        }
    )
    assert flt.since is None and flt.until == date(2025, 2, 1)
    assert flt.quadrant is None and flt.customer == (("region", ("EMEA",)),)
    swapped = SegmentFilter.from_query_params({"since": "2025-03-01", "until": "2025-01-01"})
    assert (swapped.since, swapped.until) == (date(2025, 1, 1), date(2025, 3, 1))
    assert SegmentFilter.from_query_params({"quadrant": "x_high_y_low"}).quadrant == "x_high_y_low"


# ── 12. data is plain text ──────────────────────────────────────────────────────────────────

HOSTILE = "![b](http://127.0.0.1:9/relq-pixel.png) $x$ :red[y] **z**"


def test_plain_text_has_no_markdown_left():
    escaped = plain(HOSTILE)
    for markup in ("![", "$x$", ":red[", "**"):
        assert markup not in escaped
    assert not re.search(r"(?<!\\)\]\(", escaped)  # no link or image: its ] is escaped
    assert escaped.replace("\\", "") == HOSTILE  # every character is still there, as written


def test_an_imported_header_is_a_plain_text_label_in_the_sidebar(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    engine = store.get_engine(url)
    store.create_schema(engine)
    data = f'customer_id,name,"{HOSTILE}"\nC1,Acme,a\nC2,Beta,b\n'.encode()
    import_file(engine, data, file_name="crm.csv", kind="customers")
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    labels = [m.label for m in at.sidebar.multiselect]
    assert any("relq-pixel" in label.replace("\\", "") for label in labels)
    assert not any("![" in label or re.search(r"(?<!\\)\]\(", label) for label in labels)


def test_an_import_refusal_quoting_a_header_is_plain_text_on_the_upload_page(tmp_path, monkeypatch):
    from relq.exceptions import ImportRejected
    from relq.ingest import prepare_import

    data = f"{HOSTILE},other\n1,2\n".encode()
    with pytest.raises(ImportRejected) as refused:
        prepare_import(data, file_name="x.csv")
    assert "![b]" in str(refused.value)  # the sentence quotes the header …

    def page(message: str):
        from relq import ui
        from relq.exceptions import ImportRejected

        ui.fail_clearly(ImportRejected(message))

    at = AppTest.from_function(page, args=(str(refused.value),), default_timeout=30).run()
    assert at.error and "![" not in at.error[0].value  # … and the page shows it as text


# ── 13. a CLI import shows at once ──────────────────────────────────────────────────────────


def test_a_cli_import_shows_in_the_running_dashboard_on_its_next_run(tmp_path, demo_company, monkeypatch):
    url = f"duckdb:///{tmp_path / 'relq.duckdb'}"
    engine = store.get_engine(url)
    store.load_demo(engine, demo_company)
    engine.dispose()
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    before = next(c.value for c in at.caption if " in view" in c.value and c.value.startswith("n = "))

    survey = tmp_path / "survey.csv"
    survey.write_bytes(b"response_id,submitted_at,nps\nNEW1,2026-08-01 10:00,9\nNEW2,2026-08-02 10:00,3\n")
    run = _cli(url, "import", str(survey))
    assert run.returncode == 0, run.stderr

    at.run()  # the same session, its caches warm: the next page view
    after = next(c.value for c in at.caption if " in view" in c.value and c.value.startswith("n = "))
    count = int(before.split(" responses")[0].removeprefix("n = ").replace(",", ""))
    assert after.startswith(f"n = {count + 2:,} responses")  # the two new ones, unmatched: "and 2 unmatched"


def test_every_change_of_the_data_changes_the_store_version(engine):
    versions = [store.data_version(engine)]
    result = import_file(engine, b"response_id,submitted_at,nps\nR1,2025-01-02,9\n", file_name="s.csv")
    versions.append(store.data_version(engine))
    store.undo_import(engine, result.import_id)
    versions.append(store.data_version(engine))
    import_file(engine, b"response_id,submitted_at,nps\nR1,2025-01-02,9\n", file_name="s.csv")
    versions.append(store.data_version(engine))
    assert len(set(versions)) == len(versions)


# ── 14. a database URL RelQ cannot use ──────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://relq:s3cret-pw@db.example/relq", "needs the Python database driver 'MySQLdb'"),
        (
            "oracle+nothing://relq:s3cret-pw@db.example/relq",
            "names a database driver SQLAlchemy does not know",
        ),
        ("nonsense:s3cret-pw", "is not a database URL"),
    ],
)
def test_an_unusable_database_url_gets_one_sentence_without_its_password(url, says):
    run = _cli(url, "report", "--json")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert says in run.stderr and "s3cret-pw" not in run.stderr


def test_the_dashboard_says_the_same_without_the_password(monkeypatch):
    monkeypatch.setenv("RELQ_DATABASE_URL", "mysql://relq:s3cret-pw@db.example/relq")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert at.error and "MySQLdb" in at.error[0].value and "s3cret" not in at.error[0].value
