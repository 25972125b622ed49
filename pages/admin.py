"""Admin: who has which role, a test digest, and the audit log of every export, import, case change,
alert and send (who, what, when)."""

import streamlit as st

from relq import ui
from relq.core import auth
from relq.core.settings import load_settings

ui.framed()  # first: a fresh server's first request is served through the frame

engine = ui.get_engine()
ui.require_action("view_audit")

st.title("Access and audit")

st.subheader("Who has which role")
roles_path = load_settings().roles_path
if not ui.auth_configured():
    st.info(
        "RelQ runs in **local single-user mode**: no sign-in, and whoever opens it on this machine is "
        "an admin. To require sign-in, configure `[auth]` in `.streamlit/secrets.toml` (see "
        "`.streamlit/secrets.example.toml`) and give people roles in the roles file."
    )
members = ui.role_map().members()
if members.empty and ui.auth_configured():
    st.warning(
        f"The roles file {roles_path} is missing or empty, so nobody who signs in has a role. "
        "Copy data/roles.example.toml to data/roles.toml and add your team."
    )
elif not members.empty:
    st.caption(f"From {roles_path}. An exact email wins over its domain. Edit the file to change roles.")
    st.dataframe(members, hide_index=True, width="stretch")
st.caption(
    " · ".join(
        f"**{auth.ROLE_LABELS[r]}**: "
        + (", ".join(a.replace("_", " ") for a in auth.ACTIONS if auth.action_allowed(r, a)) or "view")
        + ("; names and emails" if auth.can_see_personal_data(r) else "; aggregates only")
        for r in auth.ROLES
    )
)

st.subheader("What executives see")
allowed = ui.owner_splits_allowed()
choice = st.toggle(
    "Executives may see splits by account owner",
    value=allowed,
    key="admin_owner_splits",
    help="Account owners are staff, and their names are personal data. Off (the default): executives "
    "get no owner dimension anywhere — filters, segment explorer, retention, board report.",
)
if choice != allowed:
    ui.set_owner_splits(choice)
    st.rerun()
st.caption(
    "Executives always see aggregates only: no customer list, no comment word for word, and nothing "
    "about fewer than 5 customers."
)

ui.send_test_digest(engine)

st.subheader("Audit log")
log = ui.audit_records(engine)
if log.empty:
    st.write("Nothing recorded yet: every export and import will appear here with who did it and when.")
    st.stop()
actions = sorted(log["action"].dropna().unique())
chosen = st.multiselect("Actions", actions, default=actions, key="admin_audit_actions")
shown = log[log["action"].isin(chosen)]
if shown.empty:
    st.write("No audit records match the chosen actions.")
    st.stop()
st.caption(f"The latest {len(shown):,} records, newest first.")
st.dataframe(shown, hide_index=True, width="stretch")
ui.download_csv(shown, "relq-audit-log.csv", key="admin_audit_download")
