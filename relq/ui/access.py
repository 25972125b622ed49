"""Who sees what: the sign-in gate (and the deployment checks before it), the role's pages and
actions, personal data masked, small views and groups withheld from executives, and the audit log
of every export."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from relq import store
from relq.core import auth, deployment
from relq.core.plaintext import plain
from relq.core.redact import NameMasker
from relq.core.settings import load_settings
from relq.exceptions import RelqError
from relq.store import privacy
from relq.ui.session import CACHE_TTL, data_version, fail_clearly, get_engine

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
    "audit_records",
    "LOCAL_USER",
    "deployment_gate",
    "owner_splits_allowed",
    "set_owner_splits",
    "allowed_dimensions",
    "name_masker",
    "small_view_gate",
    "small_group_gate",
    "SMALL_VIEW_SENTENCE",
    "view_size",
    "is_executive",
    "executive_kpis",
    "executive_trend",
    "executive_moves",
    "executive_survival",
    "minimum_customers",
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


def deployment_gate() -> None:
    """Refuse to serve anything when it would be unsafe: sign-in with a forgeable cookie secret
    (the example's placeholder, or one under 32 bytes), or local single-user mode (everyone an
    admin) on a server that does not listen on loopback only — the address it really runs with."""
    if auth_configured():
        problem = deployment.cookie_secret_problem(dict(st.secrets.get("auth") or {}))
    else:
        problem = deployment.local_mode_problem(st.get_option("server.address"))
    if problem:
        st.error(problem, icon=":material/gpp_bad:")
        st.stop()


def current_role() -> str | None:
    """This session's role: admin in local single-user mode, else from the roles file. Nothing is
    served when the deployment is unsafe (:func:`deployment_gate`)."""
    deployment_gate()
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
            f":material/lock_open: **Local single-user mode** — listening on "
            f"{st.get_option('server.address')} (this machine) only; configure `[auth]` in "
            "`.streamlit/secrets.toml` to require sign-in."
        )
        return "admin"
    if not st.user.is_logged_in:
        st.title("RelQ — relationship quality")
        st.write("Sign in with your organisation's account to see the dashboard.")
        missing = [name for name in ("authlib", "httpx") if importlib.util.find_spec(name) is None]
        if missing:  # st.login needs Authlib and the httpx client its Starlette integration uses
            st.error(
                "Sign-in is configured in .streamlit/secrets.toml but the package(s) "
                f"{', '.join(missing)} are missing: install the pinned requirements "
                "(`pip install -r requirements.txt`) and restart RelQ."
            )
        else:
            st.button("Sign in", type="primary", on_click=st.login)
        st.stop()
    role = current_role()
    email = current_user_email()
    if role is None:
        st.error(
            f"You are signed in as {plain(email)}, but no RelQ role is assigned to this address. "
            "Ask a RelQ admin to add you to the roles file (data/roles.toml)."
        )
        st.button("Sign out", on_click=st.logout)
        st.stop()
    st.sidebar.caption(f":material/person: {plain(email)} · {auth.ROLE_LABELS[role]}")
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


def is_executive() -> bool:
    """Executives see aggregates of at least 5 customers only."""
    return current_role() == "executive"


def personal_columns_visible() -> bool:
    """Names, emails and customer lists: CX leads and above; executives see aggregates only."""
    return auth.can_see_personal_data(current_role())


def mask_personal(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without names and emails when this session's role may not see them; comments keep
    their text with emails, phone numbers and the CRM's names masked."""
    role = current_role()
    if auth.can_see_personal_data(role):
        return frame
    text = any(str(c).lower() in auth.TEXT_COLUMNS for c in frame.columns)
    return auth.mask_personal(frame, role, name_masker(get_engine()) if text else None)


@st.cache_resource(ttl=CACHE_TTL, max_entries=4, show_spinner=False)
def _name_masker(_engine, url: str, version: int) -> NameMasker:
    with _engine.connect() as conn:
        return NameMasker(privacy.personal_names(conn))


def name_masker(engine) -> NameMasker:
    """Masks the names the CRM knows (customers, contacts, account owners), emails and phones."""
    return _name_masker(engine, str(engine.url), data_version())


# -- admin settings -------------------------------------------------------------------------


def owner_splits_allowed() -> bool:
    """Whether an admin allowed executives to see splits by account owner (default: no). Read from
    the store on every call (one primary-key lookup), so a change applies at once everywhere."""
    return bool(store.get_setting(get_engine(), auth.OWNER_SPLITS_SETTING, False))


def set_owner_splits(allowed: bool) -> None:
    """Store the admin's choice (with its audit row, in one transaction)."""
    store.set_setting(get_engine(), auth.OWNER_SPLITS_SETTING, bool(allowed), current_user_email() or None)


def allowed_dimensions(dimensions) -> list[str]:
    """The segment dimensions this role may split or filter by (no staff names for executives
    unless an admin allowed owner splits; never a personal column)."""
    role = current_role()
    owners = role == "executive" and owner_splits_allowed()
    return auth.dimensions_for(role, list(dimensions), owners)


# -- small views ----------------------------------------------------------------------------

SMALL_VIEW_SENTENCE = (
    f"The filters and choices in view cover fewer than {auth.MIN_GROUP_CUSTOMERS} customers, and "
    f"executives see only numbers about at least {auth.MIN_GROUP_CUSTOMERS} customers, so nothing is "
    "shown: widen the period or clear some filters."
)


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _view_size(_engine, url: str, flt, version: int) -> privacy.ViewSize:
    with _engine.connect() as conn:
        return privacy.view_size(conn, flt)


def view_size(engine, flt) -> privacy.ViewSize:
    """Respondents and customers the view ``flt`` covers (cached on the data version)."""
    return _view_size(engine, str(engine.url), flt, data_version())


def small_group_gate(customers: int) -> None:
    """For executives, stop the page with the sentence when what follows rests on fewer than
    5 customers (a page's own narrowing: a search, a chosen group)."""
    if auth.refuse_small_view(current_role(), customers):
        st.warning(SMALL_VIEW_SENTENCE, icon=":material/visibility_off:")
        st.stop()


def small_view_gate(engine, flt=None) -> None:
    """For executives, a view (the shared filters, from the sidebar or a URL, or a page's own
    narrowing) that covers fewer than 5 customers shows one sentence and nothing else."""
    if not is_executive():
        return
    if flt is None:
        from relq.ui.sidebar import current_filter

        flt = current_filter()
    if auth.refuse_small_view("executive", view_size(engine, flt).smallest()):
        st.warning(SMALL_VIEW_SENTENCE, icon=":material/visibility_off:")
        st.stop()


def customer_list_hidden_notice() -> None:
    st.info(
        "Customer lists are hidden for your role: executives see aggregates only. "
        "A CX lead or analyst can pull the list of customers to act on."
    )


def suppress_small_groups(
    frame: pd.DataFrame, n_col: str = "n", quiet: bool = False, group_col: str | None = None
) -> pd.DataFrame:
    """For executives, drop groups under 5 customers (``n_col``) and say how many were hidden
    (``group_col``: a tidy frame's group, counted once however many rows it has; ``quiet``: the
    same groups dropped from a second view of them, without saying it again)."""
    shown, hidden = auth.suppress_small_groups(frame, current_role(), n_col)
    if hidden and group_col:
        hidden = frame[group_col].nunique() - shown[group_col].nunique()
    if hidden and not quiet:
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


def audit_records(engine, limit: int = 1000) -> pd.DataFrame:
    """The latest audit records; not cached, so an export shows up at once."""
    return store.audit_log(engine, limit)


# -- groups under 5 customers, for executives ------------------------------------------------


def executive_kpis(engine, kpis: pd.DataFrame, periods) -> pd.DataFrame:
    """For executives, the overview's cards without a period of fewer than 5 respondents (and no
    delta against such a period); for other roles ``kpis`` as it is."""
    if not is_executive():
        return kpis
    from relq.analyses import small_groups
    from relq.ui.queries import cached_query

    now = cached_query(engine, privacy.respondents, periods.current)
    before = cached_query(engine, privacy.respondents, periods.previous) if periods.previous else None
    shown = small_groups.withhold_kpis(kpis, now, before)
    if len(shown) < len(kpis):
        st.caption(
            f"Scores of a period with fewer than {auth.MIN_GROUP_CUSTOMERS} customers are not shown "
            "(executives see only numbers about enough customers to stay anonymous)."
        )
    return shown


def executive_trend(engine, flt, trend: pd.DataFrame, freq: str = "month") -> pd.DataFrame:
    """For executives, a trend without the periods answered by fewer than 5 customers."""
    if not is_executive() or trend.empty:
        return trend
    from relq.analyses import small_groups
    from relq.ui.queries import cached_query

    counts = cached_query(engine, privacy.respondents_by_period, flt, freq=freq)
    return small_groups.withhold_periods(trend, counts)


def executive_moves(engine, moves: pd.DataFrame, periods) -> pd.DataFrame:
    """For executives, segment moves only of segments with at least 5 respondents in both periods."""
    if not is_executive() or moves.empty or periods.previous is None:
        return moves
    from relq.analyses import small_groups
    from relq.ui.queries import cached_query

    def counts(flt) -> pd.DataFrame:
        parts = [
            cached_query(
                engine, privacy.respondents_by_segment, flt.with_dimension(d, ()), dimension=d
            ).assign(dimension=d)
            for d in sorted(set(moves["dimension"]))
        ]
        return pd.concat(parts, ignore_index=True)

    return small_groups.withhold_moves(moves, counts(periods.current), counts(periods.previous))


def executive_survival(km):
    """For executives, survival curves only of segments with at least 5 customers."""
    if not is_executive():
        return km
    from relq.analyses import small_groups

    shown = small_groups.withhold_survival(km)
    if len(shown.summary) < len(km.summary):
        st.caption(
            f"{len(km.summary) - len(shown.summary)} group(s) with fewer than {auth.MIN_GROUP_CUSTOMERS} "
            "customers are not shown (executives see only groups large enough to stay anonymous)."
        )
    return shown


def minimum_customers() -> int:
    """The smallest group this role may see numbers about (5 for executives, else 0)."""
    return auth.MIN_GROUP_CUSTOMERS if is_executive() else 0
