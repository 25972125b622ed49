"""The real dashboard in Debian's chromium (Playwright): every page by its URL, a filter changed in
the sidebar, no error element anywhere; screenshots of the main pages for the README."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from relq import store

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"
URL_PATHS = re.findall(r'url_path="([a-z-]+)"', (ROOT / "app.py").read_text())
SCREENSHOTS = {"overview", "segments", "drivers", "voice", "data-quality", "quadrants", "retention"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, demo_company):
    path = tmp_path_factory.mktemp("browser") / "relq.duckdb"
    engine = store.get_engine(f"duckdb:///{path}")
    store.load_demo(engine, demo_company)
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "RELQ_DATABASE_URL": f"duckdb:///{path}", "RELQ_DEMO_CUSTOMERS": "1500"}
    log = open(path.parent / "streamlit.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError(
                "streamlit did not start: " + (path.parent / "streamlit.log").read_text()[-2000:]
            )
        time.sleep(0.5)
    yield base
    server.terminate()
    server.wait(timeout=20)
    log.close()


def _settle(page) -> None:
    """Wait until the script run is over: a title is shown and the running indicator is gone."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000, polling=250
    )
    page.wait_for_timeout(600)


def _errors(page) -> list[str]:
    return [e.inner_text()[:300] for e in page.query_selector_all(ERRORS)]


@pytest.mark.browser
def test_every_page_opens_by_url_and_survives_a_filter_change_in_chromium(dashboard):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        for url_path in URL_PATHS:
            page.goto(f"{dashboard}/{url_path}")
            _settle(page)
            assert not _errors(page), (url_path, _errors(page))
            if url_path in SCREENSHOTS:
                page.screenshot(path=str(SHOTS / f"{url_path}.png"), full_page=False)

        # Change a filter through the URL the sidebar writes (a bookmarked view): the numbers follow.
        page.goto(f"{dashboard}/overview")
        _settle(page)
        before = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        page.goto(f"{dashboard}/overview?seg.region=EMEA")
        _settle(page)
        assert not _errors(page), _errors(page)
        assert "seg.region=EMEA" in page.url
        after = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert after and after != before
        for url_path in ("segments", "drivers", "voice", "data-quality"):
            page.goto(f"{dashboard}/{url_path}?" + page.url.split("?", 1)[1])
            _settle(page)
            assert not _errors(page), (url_path, _errors(page))
        browser.close()
