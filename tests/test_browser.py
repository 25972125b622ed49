"""The real dashboard in Debian's chromium (Playwright): every page by its URL, a filter changed in
the sidebar, no error element anywhere; screenshots of the main pages for the README.

The first URL opened on the fresh server is a page other than the default: until st.navigation has
run once, Streamlit would serve a file in pages/ alone, without the frame (see pages/components.py).
"""

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
# The default page (overview) last, so the server's first request is a direct page URL.
URL_PATHS = sorted(
    re.findall(r'url_path="([a-z-]+)"', (ROOT / "app.py").read_text()), key=lambda p: p == "overview"
)
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
    found = [e.inner_text()[:300] for e in page.query_selector_all(ERRORS)]
    return found + [d.inner_text()[:300] for d in page.query_selector_all('[role="dialog"]')]


def _choose_in_sidebar(page, expander: str, label: str, option: str) -> None:
    """Open a sidebar expander and pick an option in one of its multiselects, as a user does.

    The dropdown can miss a click that lands while the expander is still opening, so the click
    is retried (at most three times) until the option is listed.
    """
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text(expander, exact=True).click()
    box = sidebar.locator('[data-testid="stMultiSelect"]').filter(has_text=label)
    box.wait_for(state="visible", timeout=30_000)
    choice = page.get_by_role("option", name=option)
    for attempt in range(3):
        box.locator("input").click()
        try:
            choice.wait_for(state="visible", timeout=10_000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
    choice.click()
    page.keyboard.press("Escape")


@pytest.mark.browser
def test_every_page_opens_by_url_and_survives_a_filter_change_in_chromium(dashboard):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        for url_path in URL_PATHS:
            page.goto(f"{dashboard}/{'' if url_path == 'overview' else url_path}")  # the default page is /
            _settle(page)
            assert not _errors(page), (url_path, _errors(page))
            # served through the frame: the shared filters are in the sidebar
            assert page.locator('[data-testid="stSidebar"]').get_by_text("Filters").count(), url_path
            if url_path in SCREENSHOTS:
                page.screenshot(path=str(SHOTS / f"{url_path}.png"), full_page=False)

        # Change a filter in the sidebar as a user would: the numbers follow and the URL keeps it.
        page.goto(f"{dashboard}/")
        _settle(page)
        before = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        _choose_in_sidebar(page, "Segments", "Region", "EMEA")
        page.wait_for_url(re.compile(r"seg\.region=EMEA"), timeout=30_000)
        _settle(page)
        assert not _errors(page), _errors(page)
        after = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert after and after != before
        for url_path in ("segments", "drivers", "voice", "data-quality"):
            page.goto(f"{dashboard}/{url_path}?" + page.url.split("?", 1)[1])
            _settle(page)
            assert not _errors(page), (url_path, _errors(page))
        browser.close()
