"""A CX lead's loop in the real dashboard (Debian's chromium through Playwright, on a freshly
started server opened at ``/`` first): open cases from the at-risk list, work one to resolved, see
it on the Cases page. Screenshots for the README: docs/screenshots/cases-*.png."""

from __future__ import annotations

import re

import pytest
from test_browser import CHROMIUM_ARGS, SHOTS, _errors, _fresh_dashboard, _idle, _settle


@pytest.fixture
def cases_dashboard(tmp_path_factory, demo_company):
    """A server of its own on the demo company, started for this test (its first request is ours)."""
    yield from _fresh_dashboard(tmp_path_factory, demo_company)


def _pick(page, testid: str, label: str, option, scope=None) -> str:
    """Open a select widget by its label and click the first option named ``option`` (text or
    pattern); returns the option's text. Retried while the widget is still settling."""
    box = (scope or page).locator(f'[data-testid="{testid}"]').filter(has_text=label).first
    box.wait_for(state="visible", timeout=60_000)
    exact = isinstance(option, str)  # "At risk", not "High-value account turning at risk"
    choice = (
        page.get_by_role("option", name=option, exact=exact)
        if exact
        else page.get_by_role("option", name=option)
    )
    # The list can close under the pointer while a rerun redraws the page: open it again and retry
    # (at most three times) until the option is read and clicked.
    for attempt in range(3):
        box.get_by_role("combobox").first.click()
        try:
            choice.first.wait_for(state="visible", timeout=10_000)
            text = choice.first.inner_text(timeout=5_000)
            choice.first.click(timeout=5_000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            _settle(page)
    page.keyboard.press("Escape")
    _settle(page)  # the pick reruns the page: wait until it is drawn again
    return text


def _metric(page, label: str) -> int:
    card = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return int(card.locator('[data-testid="stMetricValue"]').inner_text().replace(",", ""))


@pytest.mark.browser
def test_a_cx_lead_opens_cases_from_the_at_risk_list_works_one_to_resolved_and_sees_it(cases_dashboard):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    base = cases_dashboard
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(f"{base}/")  # a fresh server's first request, as a newcomer makes it
        _idle(page)
        assert not _errors(page)

        # 1. Retention and churn → At risk → open cases for two customers
        page.goto(f"{base}/retention")
        _settle(page)
        page.get_by_role("tab", name="At risk").click()
        expander = page.get_by_text(re.compile(r"^Open cases for these customers \(\d[\d,]*\)$"))
        expander.wait_for(state="visible", timeout=60_000)
        expander.click()
        main = page.locator('[data-testid="stMain"]')
        customer = re.compile(r"\(C\d+\)$")  # "Company (C000123)", not the widget's "Select all"
        first = _pick(page, "stMultiSelect", "Customers to call", customer, scope=main)
        second = _pick(page, "stMultiSelect", "Customers to call", customer, scope=main)
        assert first != second
        page.get_by_role("button", name="Open 2 cases").click()
        page.get_by_text(re.compile(r"Opened 2 cases \(at risk\)")).wait_for(timeout=60_000)
        assert not _errors(page), _errors(page)
        page.screenshot(path=str(SHOTS / "cases-open-from-at-risk.png"), full_page=False)

        # 2. The Cases page: all cases, reason at risk — ours are there, newest first
        page.goto(f"{base}/cases")
        _settle(page)
        resolved_before = _metric(page, "Resolved")
        page.get_by_text("All cases", exact=True).click()
        _settle(page)
        _pick(page, "stMultiSelect", "Reason", "At risk", scope=main)
        _settle(page)
        case_box = main.locator('[data-testid="stSelectbox"]').filter(has_text="Case").first
        shown = case_box.get_by_role("combobox").input_value()
        case_id = re.search(r"#(\d+)", shown).group(1)
        company = first.rsplit(" (", 1)[0]
        assert "At risk" in shown and "Open" in shown
        assert company in shown or second.rsplit(" (", 1)[0] in shown
        page.screenshot(path=str(SHOTS / "cases-list.png"), full_page=False)

        # 3. Work it to resolved: status, outcome, a note, save
        form = main.locator('[data-testid="stForm"]').first
        _pick(page, "stSelectbox", "Status", "Resolved", scope=form)
        _pick(page, "stSelectbox", "Outcome", "Issue fixed", scope=form)
        form.locator("textarea").fill("Called the account manager; the invoice error is fixed.")
        form.get_by_role("button", name="Save", exact=True).click()
        page.get_by_text(re.compile(rf"Case #{case_id} saved: Resolved")).wait_for(timeout=60_000)
        _settle(page)
        assert not _errors(page), _errors(page)
        assert _metric(page, "Resolved") == resolved_before + 1

        # 4. …and see it among the resolved cases, with its history
        _pick(page, "stMultiSelect", "Status", "Resolved", scope=main)
        _settle(page)
        _pick(page, "stSelectbox", "Case", re.compile(rf"^#{case_id} · "), scope=main)
        _settle(page)
        header = main.get_by_text(re.compile(rf"Case #{case_id} · .* · Resolved · owner"))
        header.wait_for(timeout=60_000)
        main.get_by_text(re.compile(rf"History of case #{case_id}")).click()
        # the history table (a data grid) holds the note
        page.get_by_text(re.compile("^Called the account manager")).first.wait_for(
            state="attached", timeout=30_000
        )
        assert not _errors(page), _errors(page)
        page.screenshot(path=str(SHOTS / "cases-resolved.png"), full_page=True)

        page.get_by_role("tab", name="Did it work").click()
        caveat = page.get_by_text(re.compile("^This is observational, not an experiment"))
        caveat.wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"^\d+ closed cases\.")).scroll_into_view_if_needed()
        assert not _errors(page), _errors(page)
        page.screenshot(path=str(SHOTS / "cases-did-it-work.png"), full_page=False)
        browser.close()
