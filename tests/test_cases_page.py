"""The Cases and Alerts pages and the open-cases widget, driven with AppTest as each role: a CX lead
opens cases from the at-risk list and works one to resolved; a stale save shows a sentence; an
executive sees counts and no name; an analyst adds an alert rule; an admin sends a test digest."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from smtp_server import MailBox
from streamlit.testing.v1 import AppTest

from relq import store
from relq.store import cases, schema

ROOT = Path(__file__).resolve().parent.parent
AUTH_SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-only-cookie-secret-of-more-than-32-bytes",
    "client_id": "relq-test",
    "client_secret": "relq-test",
    "server_metadata_url": "https://login.example.com/.well-known/openid-configuration",
}
ROLES = """
[users]
"boss@example.com" = "executive"
"lead@example.com" = "cx_lead"
"ana@example.com" = "analyst"
"root@example.com" = "admin"
"""


@pytest.fixture
def env(duckdb_demo, tmp_path, monkeypatch):
    """The pages on a private copy of the demo company (they write cases), with a roles file."""
    roles = tmp_path / "roles.toml"
    roles.write_text(ROLES, encoding="utf-8")
    monkeypatch.setenv("RELQ_ROLES", str(roles))
    monkeypatch.setenv("RELQ_DATABASE_URL", str(duckdb_demo.url))
    return duckdb_demo


def as_user(email: str, page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.secrets["auth"] = dict(AUTH_SECRETS)
    at.user = {"is_logged_in": True, "email": email}
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _shown(elements) -> list[str]:
    """What the reader sees: Markdown escapes removed (data-bearing sentences are escaped)."""
    return [e.value.replace("\\", "") for e in elements]


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_a_cx_lead_opens_cases_from_the_at_risk_list_and_works_one_to_resolved(env):
    at = as_user("lead@example.com", "pages/retention.py")
    assert "ret_cases_which" not in [r.key for r in at.radio]  # nothing computed until it is opened
    at.session_state["ret_cases_box"] = True  # the expander computes its choices once opened
    at.run()
    widget = at.radio(key="ret_cases_which")
    chosen = at.multiselect(key="ret_cases_chosen")
    picked = [label.rsplit("(", 1)[1].rstrip(")") for label in chosen.options[:2]]  # "Company (C000123)"
    chosen.select(picked[0]).select(picked[1]).run()
    assert _button(at, "Open 2 cases").disabled is False
    _button(at, "Open 2 cases").click().run()
    assert not at.exception
    assert any("Opened 2 cases (at risk)" in s.value for s in at.success)
    assert widget.value == "Choose customers"
    with env.connect() as conn:
        opened = cases.case_table(conn, reasons=["at_risk"])
    assert len(opened) == 2 and set(opened["status"]) == {"Open"}
    assert opened["detail"].str.len().gt(0).all()  # the at-risk reasons travel with the case

    at = as_user("lead@example.com", "pages/cases.py")
    at.radio(key="cases_view").set_value("All cases").run()
    at.multiselect(key="cases_reason").select("at_risk").run()
    case_id = int(at.selectbox(key="cases_chosen").value)
    assert case_id in set(opened["case_id"])
    # a form: its values go in together with the click on Save
    at.selectbox(key=f"case_status_{case_id}_1").select("resolved")
    at.selectbox(key=f"case_outcome_{case_id}_1").select("Issue fixed")
    at.text_area(key=f"case_note_{case_id}_1").input("Called, fixed their invoice")
    _button(at, "Save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(f"Case #{case_id} saved: Resolved" in text for text in _shown(at.success))
    with env.connect() as conn:
        case = cases.get_case(conn, case_id)
    assert (case["status"], case["outcome"], case["updated_by"]) == (
        "resolved",
        "Issue fixed",
        "lead@example.com",
    )
    log = store.audit_log(env)
    assert {"case_open", "case_update"} <= set(log["action"])


def test_a_stale_save_on_the_page_gets_a_sentence_and_saves_nothing(env):
    (case_id,) = cases.open_cases(env, ["C000001"], "comment", user="x", source="test").opened
    at = as_user("lead@example.com", "pages/cases.py")
    at.radio(key="cases_view").set_value("All cases").run()
    at.multiselect(key="cases_reason").select("comment").run()
    at.selectbox(key="cases_chosen").select(case_id).run()
    # someone else saves while the lead has the case open
    cases.update_case(env, case_id, 1, user="ben@example.com", owner="Ben")
    at.selectbox(key=f"case_status_{case_id}_1").select("contacted")
    _button(at, "Save").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert "was changed by ben@example.com" in error and "Reload the case" in error
    with env.connect() as conn:
        case = cases.get_case(conn, case_id)
    assert (case["status"], case["owner"], case["version"]) == ("open", "Ben", 2)
    _button(at, "Reload the case").click().run()
    assert at.selectbox(key=f"case_status_{case_id}_2") is not None  # the form now starts from version 2


def test_an_executive_sees_case_counts_and_never_a_name(env):
    at = as_user("boss@example.com", "pages/cases.py")
    assert [m.label for m in at.metric] == ["Open", "Contacted", "Overdue", "Resolved", "No answer"]
    columns = {c for d in at.dataframe for c in d.value.columns}
    assert columns and not columns & {"company", "customer_id", "owner", "name", "email", "detail"}
    with env.connect() as conn:
        companies = set(conn.execute(sa.select(schema.customers.c.company)).scalars())
    shown = " ".join(str(v) for d in at.dataframe for v in d.value.to_numpy().ravel())
    assert not any(c in shown for c in companies if c)
    assert not at.expander or all("Open cases" not in e.label for e in at.expander)


def test_the_alerts_page_is_refused_to_executives_and_an_analyst_adds_a_rule(env):
    boss = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    boss.secrets["auth"] = dict(AUTH_SECRETS)
    boss.user = {"is_logged_in": True, "email": "boss@example.com"}
    boss.run()
    boss._page_hash = next(h for h, i in boss._registered_pages.items() if i.get("url_pathname") == "alerts")
    boss.run()  # what a typed or bookmarked /alerts does
    assert any("not available to your role" in e.value for e in boss.error) and not boss.title
    at = as_user("ana@example.com", "pages/alerts.py")
    at.text_input(key="alert_name_new").input("Enterprise NPS falls").run()
    at.selectbox(key="alert_dim_new").select("plan").run()
    at.selectbox(key="alert_value_new_plan").select("Enterprise").run()
    at.text_area(key="alert_recipients_new").input("lead@example.com\nnot an address").run()
    _button(at, "Save the rule").click().run()
    assert any("neither an email address nor a webhook URL" in e.value for e in at.error)
    at.text_area(key="alert_recipients_new").input("lead@example.com").run()
    _button(at, "Save the rule").click().run()
    assert any("Saved rule #" in s.value for s in at.success)
    at = as_user("ana@example.com", "pages/alerts.py")
    assert any(
        "NPS (plan Enterprise) falls significantly" in str(d.value.get("watches", "")) for d in at.dataframe
    )


def test_an_admin_sends_a_test_digest_from_the_admin_page(env, monkeypatch):
    box = MailBox().start()
    try:
        monkeypatch.setenv("RELQ_SMTP_URL", f"smtp://127.0.0.1:{box.port}")
        at = as_user("root@example.com", "pages/admin.py")
        at.text_input(key="admin_digest_to").input("lead@example.com").run()
        _button(at, "Send a test digest").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert any("Digest queued for lead@example.com" in text for text in _shown(at.success))
        assert box.to("lead@example.com")
        at.text_input(key="admin_digest_to").input("nobody@example.net").run()
        _button(at, "Send a test digest").click().run()
        assert any("nobody@example.net has no role" in text for text in _shown(at.error))
    finally:
        box.stop()
