"""The real dashboard in Debian's chromium (Playwright), as a newcomer meets it: a freshly started
server opened at ``/`` first, watched from the first paint until the page is idle — Streamlit's list
of the files in pages/, an error element or "Page not found" must never appear, not even once. Then
every page by its URL (``/overview`` included), a filter changed in the sidebar, no error element
anywhere; screenshots of the main pages for the README.

Until st.navigation has run once, Streamlit treats pages/ in its legacy way (lists its files, may
run one alone); relq/ui/frame.py explains how RelQ keeps that from ever reaching the screen.
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
# ("home" is the name the default page reserves; it is served at / and bookmarked as /overview.)
URL_PATHS = sorted(set(re.findall(r'url_path="([a-z-]+)"', (ROOT / "app.py").read_text())) - {"home"})
PAGE_TITLES = set(re.findall(r'title="([^"]+)"', (ROOT / "app.py").read_text()))
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


@pytest.fixture
def fresh_dashboard(tmp_path_factory, demo_company):
    """A server of its own, started for one test, so its first request is the test's."""
    yield from _fresh_dashboard(tmp_path_factory, demo_company)


def _fresh_dashboard(tmp_path_factory, demo_company, extra_args=(), extra_env=None, port=None, prepare=None):
    path = tmp_path_factory.mktemp("browser") / "relq.duckdb"
    engine = store.get_engine(f"duckdb:///{path}")
    store.load_demo(engine, demo_company)
    if prepare is not None:
        prepare(engine)
    engine.dispose()
    port = port or _free_port()
    env = {
        **os.environ,
        "RELQ_DATABASE_URL": f"duckdb:///{path}",
        "RELQ_DEMO_CUSTOMERS": "1500",
        **(extra_env or {}),
    }
    log = open(path.parent / "streamlit.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "serve.py",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            *extra_args,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    _wait_until_up(f"{base}/_stcore/health", server, path.parent / "streamlit.log")
    yield base
    server.terminate()
    server.wait(timeout=20)
    log.close()


def _wait_until_up(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError(f"{url} did not answer: " + log_path.read_text()[-2000:])
        time.sleep(0.5)


SETTLED_JS = """() => !document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSpinner"]')
  && !!document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]')"""


def _settle(page) -> None:
    """Wait until the script run is over: a title is shown, no running indicator or spinner is left
    (a screenshot for the README must not show "Computing…"), and it stays so for 0.6 s."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=60_000)
    for _ in range(2):  # a run that had not started at the first look is waited for at the second
        page.wait_for_function(SETTLED_JS, timeout=90_000, polling=250)
        page.wait_for_timeout(600)


def _errors(page) -> list[str]:
    found = [e.inner_text()[:300] for e in page.query_selector_all(ERRORS)]
    return found + [d.inner_text()[:300] for d in page.query_selector_all('[role="dialog"]')]


def _choose_in_sidebar(page, expander: str, label: str, option: str) -> None:
    """Open a sidebar expander and pick an option in one of its multiselects, as a user does.

    The dropdown can miss a click that lands while the expander is still opening, and its options
    are drawn anew when the page reruns under it (CI once saw the option detached as it was
    clicked), so opening it and clicking the option are retried together (at most three times).
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
            choice.click(timeout=10_000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
    page.keyboard.press("Escape")


# Records, from the first paint on, every distinct state of the sidebar's links, the error elements
# and a "Page not found" notice (a MutationObserver sees each change, not a sample of them).
WATCH_FIRST_SCREEN = """
window.__relqSeen = [];
new MutationObserver(() => {
  if (!document.body) return;
  const state = JSON.stringify({
    links: [...document.querySelectorAll('[data-testid="stSidebar"] a')].map(a => a.innerText.trim()),
    errors: document.querySelectorAll('ERRORS').length,
    notFound: document.body.innerText.includes('Page not found'),
  });
  const seen = window.__relqSeen;
  if (seen[seen.length - 1] !== state) seen.push(state);
}).observe(document, {subtree: true, childList: true, characterData: true});
""".replace("ERRORS", ERRORS.replace("'", "\\'"))


def _idle(page) -> None:
    """Until the app's script state is no longer running and the main area has its title."""
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=90_000)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=90_000)


@pytest.mark.browser
def test_a_fresh_server_opened_at_root_shows_relqs_own_menu_then_every_page_and_a_filter_change(
    fresh_dashboard,
):
    """A newcomer's first visit: ``/`` on a fresh server shows only RelQ's menu from the first
    paint; then every page by its URL (a bookmark, ``/overview`` included) is drawn with the
    shared filters and no error; a region chosen in the sidebar moves the numbers and the URL
    keeps it for the next pages. Screenshots of the main pages for the README."""
    import json

    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base = fresh_dashboard
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.add_init_script(WATCH_FIRST_SCREEN)
        started = time.monotonic()
        page.goto(f"{base}/")
        _idle(page)
        idle_after = time.monotonic() - started
        seen = [json.loads(s) for s in page.evaluate("window.__relqSeen")]
        print(f"first open of / on a fresh server: idle after {idle_after:.1f} s, {len(seen)} states")
        assert seen, "the observer saw nothing"
        for state in seen:
            assert not state["errors"] and not state["notFound"], state
            # only RelQ's menu, never Streamlit's list of files ("app", "data quality", …)
            icons_stripped = {
                next((t for t in PAGE_TITLES if link.endswith(t)), link) for link in state["links"]
            }
            assert icons_stripped <= PAGE_TITLES, state["links"]
        assert any("Overview" in link for link in seen[-1]["links"])
        assert page.locator('[data-testid="stMain"] h1').first.inner_text() == "Executive overview"

        # every page's URL is a bookmark, /overview included
        for url_path in URL_PATHS:
            page.goto(f"{base}/{url_path}")
            _settle(page)
            assert not _errors(page), (url_path, _errors(page))
            assert "Page not found" not in page.inner_text("body"), url_path
            # served through the frame: the shared filters are in the sidebar
            assert page.locator('[data-testid="stSidebar"]').get_by_text("Filters").count(), url_path
            if url_path in SCREENSHOTS:
                page.screenshot(path=str(SHOTS / f"{url_path}.png"), full_page=False)

        # Change a filter in the sidebar as a user would: the numbers follow and the URL keeps it.
        page.goto(f"{base}/")
        _settle(page)
        before = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        _choose_in_sidebar(page, "Segments", "Region", "EMEA")
        page.wait_for_url(re.compile(r"seg\.region=EMEA"), timeout=30_000)
        _settle(page)
        assert not _errors(page), _errors(page)
        after = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        assert after and after != before
        for url_path in ("segments", "drivers", "voice", "data-quality"):
            page.goto(f"{base}/{url_path}?" + page.url.split("?", 1)[1])
            _settle(page)
            assert not _errors(page), (url_path, _errors(page))
        browser.close()


# ── sign-in through a real OpenID Connect provider on loopback ───────────────────────────────

ROLES_TOML = '[users]\n"boss@example.com" = "executive"\n"ana@example.com" = "analyst"\n'


@pytest.fixture
def oidc_provider(tmp_path):
    """oidc-provider-mock (a real OpenID Connect provider for tests) on a loopback port."""
    port = _free_port()
    log_path = tmp_path / "oidc.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    provider = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    _wait_until_up(f"{base}/.well-known/openid-configuration", provider, log_path)
    yield base
    provider.terminate()
    provider.wait(timeout=20)
    log.close()


@pytest.fixture
def signed_in_dashboard(tmp_path_factory, demo_company, oidc_provider, tmp_path):
    """A fresh RelQ server with sign-in configured against the provider and a roles file."""
    import secrets

    port = _free_port()
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        'client_id = "relq"\n'
        'client_secret = "relq-secret"\n'
        f'server_metadata_url = "{oidc_provider}/.well-known/openid-configuration"\n',
        encoding="utf-8",
    )
    roles = tmp_path / "roles.toml"
    roles.write_text(ROLES_TOML, encoding="utf-8")
    yield from _fresh_dashboard(
        tmp_path_factory,
        demo_company,
        extra_args=("--secrets.files", str(secrets_file)),
        extra_env={"RELQ_ROLES": str(roles)},
        port=port,
    )


@pytest.mark.browser
def test_sign_in_round_trip_through_a_real_openid_provider_gives_the_role_from_the_roles_file(
    signed_in_dashboard,
):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{signed_in_dashboard}/")  # a fresh server, opened at / first
        page.get_by_role("button", name="Sign in").click(timeout=90_000)
        page.wait_for_url(re.compile(r"/oauth2/authorize"), timeout=60_000)  # the provider's own page
        page.fill('input[name="sub"]', "boss@example.com")
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(re.compile(re.escape(signed_in_dashboard) + r"/?(\?.*)?$"), timeout=60_000)
        _idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("boss@example.com · Executive").wait_for(timeout=60_000)
        assert page.locator('[data-testid="stMain"] h1').first.inner_text() == "Executive overview"
        links = sidebar.locator("a").all_inner_texts()
        assert any("Overview" in link for link in links)
        assert not any("Upload" in link or "Access and audit" in link for link in links)  # not an executive's
        assert not _errors(page), _errors(page)
        browser.close()


# ── text from data is plain text: an imported header never makes the browser fetch anything ──


@pytest.fixture
def pixel_server():
    """A loopback HTTP server counting the requests it gets (a tracking pixel's host)."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


@pytest.fixture
def hostile_dashboard(tmp_path_factory, demo_company, pixel_server):
    from relq.ingest import import_file

    url, _ = pixel_server
    header = f"![b]({url}/header.png)"

    def prepare(engine):
        data = f'customer_id,name,"{header}"\nH1,Hostile One,"![v]({url}/value.png)"\nH2,Hostile Two,x\n'
        import_file(engine, data.encode(), file_name="crm.csv", kind="customers")

    yield from _fresh_dashboard(tmp_path_factory, demo_company, prepare=prepare)


@pytest.mark.browser
def test_an_imported_markdown_image_header_is_shown_as_text_and_never_fetched(
    hostile_dashboard, pixel_server
):
    from playwright.sync_api import sync_playwright

    _, hits = pixel_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{hostile_dashboard}/")
        _idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Segments", exact=True).click()
        sidebar.get_by_text("header.png", exact=False).first.wait_for(timeout=30_000)  # shown, as text
        for url_path in ("segments", "drivers"):
            page.goto(f"{hostile_dashboard}/{url_path}")
            _idle(page)
        page.wait_for_timeout(1000)
        browser.close()
    assert hits == []


@pytest.mark.browser
def test_a_file_uploaded_in_chromium_is_checked_imported_and_the_upload_box_is_empty_again(fresh_dashboard):
    """The real upload path (the file travels through Streamlit's uploader, not a test's bytes): a
    Qualtrics export is checked and imported with a click; then the box is empty for the next file
    and the file is not offered for import again."""
    from playwright.sync_api import sync_playwright

    sample = ROOT / "data" / "samples" / "qualtrics_survey.csv"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(f"{fresh_dashboard}/")  # a newcomer's first request
        _idle(page)
        page.goto(f"{fresh_dashboard}/upload")
        _idle(page)
        page.locator("input[type=file]").set_input_files(str(sample))
        page.get_by_text("Qualtrics (3 header rows)", exact=False).first.wait_for(timeout=60_000)
        assert page.locator('[data-testid="stFileChip"]').count() == 1
        page.get_by_role("button", name=re.compile(r"^Import 4 rows")).click()
        # said as soon as the rows are stored, while the comments are read and the rules run …
        page.get_by_text(re.compile(r"4 of 4 rows imported as survey")).first.wait_for(timeout=90_000)
        # … then the page is drawn again with what followed (the sentence about today's scores)
        page.get_by_text("churn-risk scores are being fitted in the background").wait_for(timeout=90_000)
        _idle(page)
        assert not _errors(page), _errors(page)
        assert page.locator('[data-testid="stFileChip"]').count() == 0  # ready for the next file
        assert page.get_by_role("button", name=re.compile(r"^Import \d")).count() == 0
        browser.close()
