"""Who sees what: the roles file, role → pages, actions and personal data, sign-in and the audit log.

Pure rules are checked directly; the frame is driven with AppTest, whose ``user`` dict stands in
for ``st.user`` and whose ``secrets`` turns sign-in on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from relq import store
from relq.core import auth
from relq.exceptions import SettingError

ROOT = Path(__file__).resolve().parent.parent
AUTH_SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-only-cookie-secret-of-more-than-32-bytes",
    "client_id": "relq-test",
    "client_secret": "relq-test",
    "server_metadata_url": "https://login.example.com/.well-known/openid-configuration",
}
ROLES_TOML = """
[users]
"boss@example.com" = "executive"
"lead@example.com" = "cx_lead"
"ana@example.com" = "analyst"
"root@example.com" = "admin"

[domains]
"partner.example" = "cx_lead"
"""
EMAIL = {
    "executive": "boss@example.com",
    "cx_lead": "lead@example.com",
    "analyst": "ana@example.com",
    "admin": "root@example.com",
}


# ── the roles file and the rules ─────────────────────────────────────────────────────────────


def test_roles_file_maps_emails_before_domains_case_insensitively():
    roles = auth.parse_roles(ROLES_TOML + '"example.com" = "executive"\n')
    assert auth.role_for("Lead@Example.com", roles) == "cx_lead"
    assert auth.role_for("someone@example.com", roles) == "executive"
    assert auth.role_for("x@partner.example", roles) == "cx_lead"
    assert auth.role_for("x@elsewhere.org", roles) is None
    assert auth.role_for("", roles) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[users]\n"a@b.c" = "boss"', "not one of executive, cx_lead, analyst, admin"),
        ('[users]\n"not-an-email" = "admin"', "is not an email address"),
        ('[people]\n"a@b.c" = "admin"', "unknown section"),
        ("[users\n", "not valid TOML"),
    ],
)
def test_a_wrong_roles_file_says_what_is_wrong(text, says):
    with pytest.raises(SettingError, match=says):
        auth.parse_roles(text)


def test_the_documented_example_roles_file_parses():
    roles = auth.load_roles(ROOT / "data" / "roles.example.toml")
    assert set(roles.users.values()) | set(roles.domains.values()) <= set(auth.ROLES)
    assert not roles.members().empty


def test_a_missing_roles_file_gives_nobody_a_role(tmp_path):
    assert auth.role_for("root@example.com", auth.load_roles(tmp_path / "absent.toml")) is None


@pytest.mark.parametrize(
    ("role", "allowed", "refused"),
    [
        ("executive", {"overview", "quadrants", "retention", "methodology"}, {"upload", "admin"}),
        ("cx_lead", {"overview", "quadrants", "retention"}, {"upload", "admin"}),
        ("analyst", {"overview", "upload", "measurement"}, {"admin"}),
        ("admin", {"overview", "upload", "measurement", "admin"}, set()),
        (None, set(), {"overview", "upload", "admin"}),
    ],
)
def test_role_decides_pages(role, allowed, refused):
    assert all(auth.page_allowed(role, p) for p in allowed)
    assert not any(auth.page_allowed(role, p) for p in refused)


def test_only_analysts_and_admins_import_undo_and_edit_and_only_admins_read_the_audit():
    for action in ("import", "undo_import", "edit_instrument", "edit_templates"):
        assert [r for r in auth.ROLES if auth.action_allowed(r, action)] == ["analyst", "admin"]
    assert [r for r in auth.ROLES if auth.action_allowed(r, "view_audit")] == ["admin"]
    with pytest.raises(ValueError, match="unknown action"):
        auth.action_allowed("admin", "drop_tables")


def test_names_and_emails_are_masked_for_executives_only():
    frame = pd.DataFrame({"customer_id": ["C1"], "name": ["Acme"], "email": ["a@acme.example"], "rq": [70.0]})
    assert list(auth.mask_personal(frame, "executive").columns) == ["customer_id", "rq"]
    for role in ("cx_lead", "analyst", "admin"):
        pd.testing.assert_frame_equal(auth.mask_personal(frame, role), frame)


def test_groups_under_five_customers_are_never_shown_to_executives():
    groups = pd.DataFrame({"region": ["EU", "US", "APAC"], "customers": [5, 4, 120]})
    shown, hidden = auth.suppress_small_groups(groups, "executive", n_col="customers")
    assert shown["region"].tolist() == ["EU", "APAC"] and hidden == 1
    shown, hidden = auth.suppress_small_groups(groups, "cx_lead", n_col="customers")
    assert len(shown) == 3 and hidden == 0
    with pytest.raises(ValueError, match="no 'n' column"):
        auth.suppress_small_groups(groups, "executive")


# ── the frame, with AppTest standing in for st.user ──────────────────────────────────────────


@pytest.fixture
def roles_file(tmp_path, monkeypatch):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES_TOML, encoding="utf-8")
    monkeypatch.setenv("RELQ_ROLES", str(path))
    return path


def signed_in(email: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = dict(AUTH_SECRETS)
    at.user = {"is_logged_in": True, "email": email} if email else {"is_logged_in": False}
    return at


def open_url_path(at: AppTest, url_path: str) -> AppTest:
    """What a typed or bookmarked URL does: ask the server for the page registered at ``url_path``."""
    at._page_hash = next(h for h, i in at._registered_pages.items() if i.get("url_pathname") == url_path)
    return at.run()


def test_without_auth_relq_runs_in_local_single_user_mode_and_says_so(demo_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert any("Local single-user mode" in c.value and "localhost" in c.value for c in at.sidebar.caption)
    assert at.metric  # the overview, as an admin


def test_with_auth_configured_a_visitor_sees_only_the_sign_in_screen(demo_env, roles_file):
    at = signed_in(None).run()
    assert not at.exception
    assert not at.metric
    assert any("Sign in" in b.label for b in at.button)


def test_a_signed_in_user_without_a_role_is_refused_with_whom_to_ask(demo_env, roles_file):
    at = signed_in("stranger@elsewhere.org").run()
    assert not at.exception
    assert not at.metric
    assert any("no RelQ role" in e.value and "stranger@elsewhere.org" in e.value for e in at.error)


@pytest.mark.parametrize("role", ["executive", "cx_lead", "analyst", "admin"])
def test_the_navigation_lists_only_the_pages_of_the_role(demo_env, roles_file, role):
    at = signed_in(EMAIL[role]).run()
    assert not at.exception
    assert any(EMAIL[role] in c.value for c in at.sidebar.caption)
    registered = {i["url_pathname"]: bool(i.get("script_path")) for i in at._registered_pages.values()}
    served = {p for p, real in registered.items() if real}  # refused pages are hidden stand-ins
    assert ("upload" in served) == (role in ("analyst", "admin"))
    assert ("admin" in served) == (role == "admin")
    assert {"retention", "quadrants"} & served or "retention" not in registered


@pytest.mark.parametrize(
    ("role", "page"), [("executive", "upload"), ("cx_lead", "admin"), ("analyst", "admin")]
)
def test_a_direct_url_to_a_page_outside_the_role_is_refused(demo_env, roles_file, role, page):
    at = signed_in(EMAIL[role]).run()
    open_url_path(at, page)
    assert not at.exception
    assert any("not available to your role" in e.value for e in at.error)
    assert not at.title  # the page itself did not run


def test_an_admin_opens_the_admin_page_with_roles_and_the_audit_log(demo_env, roles_file):
    engine = store.get_engine(demo_env)
    store.record_audit(engine, "ana@example.com", "import", {"file": "survey.csv", "rows": 12})
    at = signed_in(EMAIL["admin"]).run()
    at.switch_page("pages/admin.py").run()
    assert not at.exception
    frames = [d.value for d in at.dataframe]
    assert any("boss@example.com" in set(f.get("who", [])) for f in frames)
    assert any("import" in set(f.get("action", [])) for f in frames)


def test_the_admin_page_alone_refuses_a_role_that_may_not_read_the_audit(demo_env, roles_file):
    at = AppTest.from_file(str(ROOT / "pages" / "admin.py"), default_timeout=60)
    at.secrets["auth"] = dict(AUTH_SECRETS)
    at.user = {"is_logged_in": True, "email": EMAIL["analyst"]}
    at.run()
    assert not at.exception
    assert not at.dataframe
    assert any("cannot view audit" in w.value for w in at.warning)


SCRIPT = """
import pandas as pd
import streamlit as st
from relq import ui

frame = pd.DataFrame({"customer_id": ["C1"], "name": ["Acme"], "email": ["=cmd|' /C calc'!A0"], "rq": [70.0]})
st.dataframe(ui.mask_personal(frame))
st.write("personal" if ui.personal_columns_visible() else "aggregates only")
ui.download_csv(frame, "customers.csv", key="dl")
"""


@pytest.mark.parametrize(("role", "columns"), [("executive", 2), ("cx_lead", 4)])
def test_exports_mask_personal_data_by_role_and_are_audited(
    tmp_path, monkeypatch, roles_file, downloads, role, columns
):
    url = f"duckdb:///{tmp_path / 'audit.duckdb'}"
    monkeypatch.setenv("RELQ_DATABASE_URL", url)
    engine = store.get_engine(url)
    store.create_schema(engine)
    store.record_audit(engine, None, "setup", "")  # an imports-free store is fine for this script
    script = tmp_path / "script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    at = AppTest.from_file(str(script), default_timeout=60)
    at.secrets["auth"] = dict(AUTH_SECRETS)
    at.user = {"is_logged_in": True, "email": EMAIL[role]}
    at.session_state["relq_demo_checked"] = True  # no demo company for this small script
    at.run()
    assert not at.exception
    assert at.dataframe[0].value.shape[1] == columns
    assert at.markdown[0].value == ("aggregates only" if role == "executive" else "personal")
    log = store.audit_log(engine)
    assert log[log["action"] == "export"].empty  # drawing the button makes no file and records nothing
    assert not dict(downloads)  # and no file is on the server yet
    data = downloads["customers.csv"]  # what the browser does on a click
    log = store.audit_log(engine)
    export = log[log["action"] == "export"]
    assert export["user_email"].tolist() == [EMAIL[role]]
    assert "customers.csv" in export["detail"].iloc[0]
    assert ('"name"' in export["detail"].iloc[0]) == (role != "executive")
    assert (b"Acme" in data) == (role != "executive")


@pytest.mark.parametrize("page", ["pages/quadrants.py", "pages/retention.py"])
def test_customer_lists_are_hidden_from_executives_and_shown_to_cx_leads(demo_env, roles_file, page):
    hidden = "Customer lists are hidden for your role"
    executive = signed_in(EMAIL["executive"]).run()
    executive.switch_page(page).run()
    assert not executive.exception
    assert any(hidden in i.value for i in executive.info)
    assert not any({"email"} & set(d.value.columns) for d in executive.dataframe)

    lead = signed_in(EMAIL["cx_lead"]).run()
    lead.switch_page(page).run()
    assert not lead.exception
    assert not any(hidden in i.value for i in lead.info)
    assert any("customer_id" in d.value.columns for d in lead.dataframe)  # the list to act on
