"""The UI boundary: cached engine and queries, the shared filters, and small display components.

Pages import from here; ``relq`` never imports streamlit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from relq import auth, catalog, charts, metrics, store
from relq.exceptions import RelqError
from relq.exports import to_safe_csv
from relq.filters import SegmentFilter
from relq.settings import load_settings


def _run_through_the_frame() -> None:
    """Serve every page through app.py's st.navigation, even on a server's very first request.

    Until st.navigation has run once, Streamlit (1.67, pinned) treats a folder named pages/ next
    to the entry script as legacy auto-discovered pages: a first request for a direct URL such as
    /measurement would run that page alone, without the frame, its filters and role checks.
    RelQ's pages live in pages/ by design, so switch the legacy mode off and rerun through the
    frame; the browser test opens a direct URL first to cover this.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_run_through_the_frame()

__all__ = [
    "get_engine",
    "current_filter",
    "filter_sidebar",
    "cached_headline",
    "cached_trend",
    "score_card",
    "format_interval",
    "download_csv",
    "record_export",
    "fail_clearly",
    "min_n",
    "FILTER_DIMENSIONS",
    "auth_configured",
    "current_user_email",
    "current_role",
    "sign_in_gate",
    "navigation_for_role",
    "can",
    "require_action",
    "personal_columns_visible",
    "mask_personal",
    "suppress_small_groups",
    "audit",
    "store_errors_as_sentences",
]

FILTER_DIMENSIONS = ("region", "industry", "plan", "value_tier", "lifecycle_stage", "cohort")
FLAG_LABELS = {
    "flag_duplicate": "duplicates",
    "flag_speeder": "speeders",
    "flag_straightliner": "straight-liners",
    "flag_out_of_range": "out-of-range answers",
}


def fail_clearly(exc: Exception) -> None:
    """Show a RelQ error as a sentence and stop the page (no traceback)."""
    st.error(str(exc))
    st.stop()


@st.cache_resource(show_spinner=False)
def _engine(url: str):
    engine = store.get_engine(url)
    store.create_schema(engine)
    return engine


def get_engine():
    """The store's engine; on first start the demo company is created and loaded."""
    try:
        engine = _engine(load_settings().database_url)
        if "relq_demo_checked" not in st.session_state:
            if not store.has_data(engine):
                with st.spinner("First start: building the demo company (about 20 seconds)…"):
                    store.ensure_demo(engine)
                    st.cache_data.clear()
            st.session_state["relq_demo_checked"] = True
        return engine
    except RelqError as exc:
        fail_clearly(exc)


def min_n() -> int:
    return load_settings().min_n


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _options(_engine, url: str, name: str, version: int) -> list[str]:
    with _engine.connect() as conn:
        if name == "__waves__":
            return catalog.waves(conn)
        if name == "__dimensions__":
            return catalog.dimensions(conn)
        return catalog.dimension_values(conn, name)


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def _bounds(_engine, url: str, version: int):
    with _engine.connect() as conn:
        return catalog.period_bounds(conn)


def data_version() -> int:
    """Bumped after an import or undo so cached queries are recomputed."""
    return st.session_state.setdefault("relq_data_version", 0)


def bump_data_version() -> None:
    st.session_state["relq_data_version"] = data_version() + 1
    st.cache_data.clear()


def _init_widgets_from_url(engine) -> None:
    """On a session's first run, seed the filter widgets from the URL query string."""
    if st.session_state.get("relq_filter_seeded"):
        return
    flt = SegmentFilter.from_query_params(st.query_params.to_dict())
    if flt.since and flt.until:
        st.session_state["flt_period"] = tuple(sorted((flt.since, flt.until)))
    st.session_state["flt_waves"] = list(flt.waves)
    for name, values in flt.customer:
        st.session_state[f"flt_dim_{name}"] = list(values)
    st.session_state["flt_quadrant"] = flt.quadrant or ""
    st.session_state["flt_exclude"] = [FLAG_LABELS[f] for f in flt.exclude_flags]
    st.session_state["relq_filter_seeded"] = True


def _clear_filters() -> None:
    for key in list(st.session_state):
        if str(key).startswith("flt_"):
            del st.session_state[key]
    st.query_params.clear()
    st.session_state["relq_filter_seeded"] = True


def filter_sidebar(engine) -> SegmentFilter:
    """The shared filters in the sidebar; they live in the URL so a view can be bookmarked."""
    _init_widgets_from_url(engine)
    url = str(engine.url)
    version = data_version()
    sb = st.sidebar
    sb.header("Filters")
    bounds = _bounds(engine, url, version)
    since = until = None
    if bounds:
        lo, hi = bounds
        period = sb.date_input(
            "Period (survey submitted)",
            value=st.session_state.get("flt_period", (lo, hi)),
            min_value=date(1970, 1, 1),
            max_value=date(2100, 12, 31),
            key="flt_period",
            help="Inclusive dates. The previous period of equal length is used for deltas.",
        )
        if isinstance(period, (tuple, list)) and len(period) == 2:
            since, until = period
            if (since, until) == (lo, hi):
                since = until = None  # the whole history: no period restriction in the URL
    waves = sb.multiselect("Survey wave", _options(engine, url, "__waves__", version), key="flt_waves")
    flt = SegmentFilter(since=since, until=until, waves=tuple(waves))
    dims = list(FILTER_DIMENSIONS) + [
        d for d in _options(engine, url, "__dimensions__", version) if d not in FILTER_DIMENSIONS + ("owner",)
    ]
    with sb.expander("Segments", expanded=any(st.session_state.get(f"flt_dim_{d}") for d in dims)):
        for name in dims:
            values = st.multiselect(
                name.replace("_", " ").capitalize(),
                _options(engine, url, name, version),
                key=f"flt_dim_{name}",
            )
            flt = flt.with_dimension(name, values)
    quadrant = _quadrant_choice(sb)
    excluded = sb.multiselect(
        "Exclude flagged responses",
        list(FLAG_LABELS.values()),
        key="flt_exclude",
        help="By default every stored response counts; excluding flagged ones is your visible choice.",
    )
    label_to_flag = {v: k for k, v in FLAG_LABELS.items()}
    flt = SegmentFilter(
        since=flt.since,
        until=flt.until,
        waves=flt.waves,
        customer=flt.customer,
        quadrant=quadrant or None,
        exclude_flags=tuple(label_to_flag[x] for x in excluded),
    )
    sb.button("Clear all filters", on_click=_clear_filters, width="stretch")
    params = flt.to_query_params()
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state["relq_filter"] = flt
    return flt


def _quadrant_choice(sb) -> str:
    from relq.quadrants import QUADRANT_NAMES

    keys = [""] + list(QUADRANT_NAMES)
    if st.session_state.get("flt_quadrant") not in keys:
        st.session_state["flt_quadrant"] = ""
    return sb.selectbox(
        "Quadrant (trust × satisfaction at 50)",
        keys,
        format_func=lambda k: "All customers" if not k else QUADRANT_NAMES[k],
        key="flt_quadrant",
    )


def current_filter() -> SegmentFilter:
    """The frame's filter for this run (empty when a page runs alone, as in tests)."""
    return st.session_state.get("relq_filter", SegmentFilter())


@st.cache_data(ttl=600, max_entries=128, show_spinner=False)
def _headline(_engine, url: str, flt: SegmentFilter, version: int):
    with _engine.connect() as conn:
        return metrics.headline(conn, flt)


def cached_headline(engine, flt: SegmentFilter):
    return _headline(engine, str(engine.url), flt, data_version())


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _trend(_engine, url: str, flt: SegmentFilter, freq: str, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return metrics.trend(conn, flt, freq)


def cached_trend(engine, flt: SegmentFilter, freq: str = "month") -> pd.DataFrame:
    return _trend(engine, str(engine.url), flt, freq, data_version())


def format_interval(low: float, high: float, digits: int = 1) -> str:
    return f"[{charts.format_number(low, digits)}, {charts.format_number(high, digits)}]"


def score_card(
    label: str,
    estimate: float,
    low: float,
    high: float,
    n: int,
    *,
    digits: int = 1,
    delta: float | None = None,
    significant: bool | None = None,
    lower_is_better: bool = False,
    container=None,
) -> None:
    """A KPI with its n and 95% interval; small n is greyed and says so; a delta is marked
    significant only when the test says it is."""
    box = container or st
    small = n < min_n()
    value = charts.format_number(estimate, digits)
    delta_text = None
    if delta is not None and not (isinstance(delta, float) and math.isnan(delta)):
        # short enough for a card: the caption above the cards names the two periods
        mark = " ✱ significant" if significant else ", not significant"
        delta_text = f"{delta:+.{digits}f}{mark}"
    box.metric(
        label,
        value if not small else f"{value} (n<{min_n()})",
        delta=delta_text,
        delta_color=("inverse" if lower_is_better else "normal") if significant else "off",
        help=f"n = {n:,}; 95% interval {format_interval(low, high, digits)}."
        + (f" Fewer than {min_n()} answers: too few to trust or rank." if small else ""),
    )
    box.caption(
        f"n = {n:,} · 95% CI {format_interval(low, high, digits)}"
        + (" · :grey[small sample]" if small else "")
    )


def download_csv(
    frame: pd.DataFrame, file_name: str, label: str = "Download CSV", key: str | None = None
) -> None:
    """A formula-safe CSV download of ``frame``, with personal columns masked for roles that may
    not see them; each download is recorded in the audit log (who, what, when)."""
    frame = mask_personal(frame)
    st.download_button(
        label,
        to_safe_csv(frame),
        file_name=file_name,
        mime="text/csv",
        key=key,
        on_click=record_export,
        args=(file_name, len(frame), [str(c) for c in frame.columns]),
    )


@st.cache_data(ttl=600, show_spinner=False)
def _has_demo(_engine, url: str, version: int) -> bool:
    return store.has_demo(_engine)


def demo_notice(engine) -> None:
    """Say plainly when the numbers come from the demo company, and how to load real data."""
    if _has_demo(engine, str(engine.url), data_version()):
        st.info(
            "**You are looking at demo data** — a generated company with about 12,000 customers. "
            "Load your own survey and CRM exports on the **Upload** page, or from a terminal with "
            "`python -m relq import FILE`; the first real import offers to remove the demo company.",
            icon=":material/science:",
        )


# ── Who sees what (relq.auth): sign-in, role gate, personal data, audit, store errors ──────────

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


def navigation_for_role(pages: dict[str, list], role: str | None) -> dict[str, list]:
    """Only the pages ``role`` may open appear in the navigation; every other page keeps its URL
    but is hidden and answers with a refusal, so a bookmarked or typed URL is refused, not served."""
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
    """Whether this session's role may perform ``action`` (relq.auth.ACTIONS)."""
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


@contextlib.contextmanager
def store_errors_as_sentences(engine):
    """Turn a database that went down, or a DuckDB file another process holds, into a sentence
    saying what to do, with a retry button — never a traceback."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        st.error(store.explain_connection_error(exc, engine), icon=":material/database_off:")
        st.button("Try again", key="relq_store_retry")
        st.stop()


# --------------------------------------------------------------------------- dashboards (issue 7)


@st.cache_data(ttl=600, max_entries=256, show_spinner=False)
def _query(_engine, _func, url: str, name: str, flt: SegmentFilter, version: int, options: tuple):
    with _engine.connect() as conn:
        return _func(conn, flt, **dict(options))


def cached_query(engine, func, flt: SegmentFilter, **options):
    """``func(conn, flt, **options)`` cached on the filter, the options and the data version.

    ``func`` is a relq function taking a connection and a SegmentFilter; options must be hashable.
    """
    name = f"{func.__module__}.{func.__qualname__}"
    return _query(engine, func, str(engine.url), name, flt, data_version(), tuple(sorted(options.items())))


def nothing_matches(message: str = "") -> None:
    """The sentence shown when the filters select no survey response; stops the page."""
    st.warning(
        message or "No survey responses match the current filters. Widen the period or clear the filters."
    )
    st.stop()


def table_with_download(frame: pd.DataFrame, file_name: str, key: str, **dataframe_args) -> None:
    """A sortable table and its formula-safe CSV download, side by side as on every page."""
    st.dataframe(frame, hide_index=True, width="stretch", **dataframe_args)
    download_csv(frame, file_name, label=f"Download {file_name}", key=key)
