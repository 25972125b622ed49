"""Who sees what: the sign-in gate, the role's pages and actions, personal data masked, small
groups suppressed for executives, and the audit log of every export."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from relq import store
from relq.core import auth
from relq.core.settings import load_settings
from relq.exceptions import RelqError
from relq.ui.session import fail_clearly, get_engine

__all__ = [
    "auth_configured",
    "role_map",
    "current_user_email",
    "current_role",
    "sign_in_gate",
    "navigation_for_role",
    "can",
    "require_action",
    "personal_columns_visible",
    "mask_personal",
    "customer_list_hidden_notice",
    "suppress_small_groups",
    "audit",
    "record_export",
    "audit_records",
    "LOCAL_USER",
]


LOCAL_USER = "local user"


def auth_configured() -> bool:
    """Sign-in is required when ``[auth]`` is set in .streamlit/secrets.toml."""
    try:
        return bool(st.secrets.get("auth"))
    except FileNotFoundError:  # no secrets.toml at all: local single-user mode
        return False


def _roles_file_version(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(ttl=60, show_spinner=False)
def _roles(path: str, version: float) -> auth.RoleMap:
    return auth.load_roles(path)


def role_map() -> auth.RoleMap:
    path = load_settings().roles_path
    return _roles(path, _roles_file_version(path))


def current_user_email() -> str:
    """The signed-in email, or "local user" in local single-user mode."""
    if not auth_configured():
        return LOCAL_USER
    return str(st.user.get("email") or "") if st.user.is_logged_in else ""


def current_role() -> str | None:
    """This session's role: admin in local single-user mode, else from the roles file."""
    if not auth_configured():
        return "admin"
    if not st.user.is_logged_in:
        return None
    try:
        return auth.role_for(current_user_email(), role_map())
    except RelqError as exc:
        fail_clearly(exc)


def sign_in_gate() -> str:
    """Called by the frame before anything else: the sign-in screen, or who is signed in.

    Returns the role; stops the run when nobody is signed in or the user has no role.
    """
    if not auth_configured():
        st.sidebar.caption(
            ":material/lock_open: **Local single-user mode** — bound to localhost; configure `[auth]` in "
            "`.streamlit/secrets.toml` to require sign-in."
        )
        return "admin"
    if not st.user.is_logged_in:
        st.title("RelQ — relationship quality")
        st.write("Sign in with your organisation's account to see the dashboard.")
        if importlib.util.find_spec("authlib") is None:
            st.error(
                "Sign-in is configured in .streamlit/secrets.toml but the Authlib package is missing. "
                "Install it with `pip install 'Authlib>=1.3.2'` and restart RelQ."
            )
        else:
            st.button("Sign in", type="primary", on_click=st.login)
        st.stop()
    role = current_role()
    email = current_user_email()
    if role is None:
        st.error(
            f"You are signed in as {email}, but no RelQ role is assigned to this address. "
            "Ask a RelQ admin to add you to the roles file (data/roles.toml)."
        )
        st.button("Sign out", on_click=st.logout)
        st.stop()
    st.sidebar.caption(f":material/person: {email} · {auth.ROLE_LABELS[role]}")
    st.sidebar.button("Sign out", on_click=st.logout, key="relq_sign_out")
    return role


def navigation_for_role(pages: dict[str, list], role: str | None, bookmarks: list = ()) -> dict[str, list]:
    """Only the pages ``role`` may open appear in the navigation; every other page keeps its URL
    but is hidden and answers with a refusal, so a bookmarked or typed URL is refused, not served.
    ``bookmarks`` are hidden pages of their own (another URL of a page), allowed like any other."""
    pages = {**pages, "": list(bookmarks)} if bookmarks else pages
    if role is None:  # nobody signed in (or no role): every URL is kept, hidden, for the sign-in gate
        return {"": [_refusal_page(page, role) for entries in pages.values() for page in entries]}
    allowed: dict[str, list] = {}
    refused = []
    for section, entries in pages.items():
        for page in entries:
            if auth.page_allowed(role, page.url_path):
                allowed.setdefault(section, []).append(page)
            else:
                refused.append(_refusal_page(page, role))
    if not allowed:
        st.error("Your role does not include any page. Ask a RelQ admin to check the roles file.")
        st.stop()
    if refused:  # a refused default page gives way: the first allowed page becomes the default
        allowed[next(iter(allowed))].extend(refused)
    return allowed


def _refusal_page(page, role: str | None):
    title = page.title
    label = auth.ROLE_LABELS.get(role, "no role")

    def refused() -> None:
        st.error(
            f"The {title} page is not available to your role ({label}). "
            "Ask a RelQ admin if you need it; the pages in the menu are the ones open to you."
        )

    return st.Page(refused, title=title, url_path=page.url_path or "home", visibility="hidden")


def can(action: str) -> bool:
    """Whether this session's role may perform ``action`` (relq.core.auth.ACTIONS)."""
    return auth.action_allowed(current_role(), action)


def require_action(action: str) -> None:
    """Stop the page with a sentence when this session's role may not perform ``action``."""
    if not can(action):
        label = auth.ROLE_LABELS.get(current_role(), "no role")
        st.warning(
            f"Your role ({label}) cannot {action.replace('_', ' ')}. "
            "Analysts and admins import data and edit the instrument; ask one of them."
        )
        st.stop()


def personal_columns_visible() -> bool:
    """Names, emails and customer lists: CX leads and above; executives see aggregates only."""
    return auth.can_see_personal_data(current_role())


def mask_personal(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without names and emails when this session's role may not see them."""
    return auth.mask_personal(frame, current_role())


def customer_list_hidden_notice() -> None:
    st.info(
        "Customer lists are hidden for your role: executives see aggregates only. "
        "A CX lead or analyst can pull the list of customers to act on."
    )


def suppress_small_groups(frame: pd.DataFrame, n_col: str = "n") -> pd.DataFrame:
    """For executives, drop groups under 5 customers (``n_col``) and say how many were hidden."""
    shown, hidden = auth.suppress_small_groups(frame, current_role(), n_col)
    if hidden:
        st.caption(
            f"{hidden} group(s) with fewer than {auth.MIN_GROUP_CUSTOMERS} customers are not shown "
            "(executives see only groups large enough to stay anonymous)."
        )
    return shown


def audit(action: str, detail: str | dict = "") -> None:
    """Record who did what and when in the audit log (never stops the page if it cannot)."""
    try:
        store.record_audit(get_engine(), current_user_email() or None, action, detail)
    except (RelqError, sa.exc.SQLAlchemyError) as exc:
        st.toast(f"The audit log could not record this {action}: {exc}")


def record_export(file_name: str, rows: int, columns: list[str]) -> None:
    """Record a download in the audit log (who, what, when); use as a download button's on_click."""
    audit("export", {"file": file_name, "rows": rows, "columns": columns, "role": current_role()})


def audit_records(engine, limit: int = 1000) -> pd.DataFrame:
    """The latest audit records; not cached, so an export shows up at once."""
    return store.audit_log(engine, limit)
