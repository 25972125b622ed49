"""The session's store: the cached engine (with the demo company on first start), the data
version that keys every cached query, and store errors turned into sentences."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
import streamlit as st

from relq import store
from relq.core.plaintext import plain
from relq.core.settings import load_settings
from relq.exceptions import RelqError, WeightingError
from relq.ingest.demo import ensure_demo

__all__ = [
    "CACHE_TTL",
    "fail_clearly",
    "get_engine",
    "min_n",
    "data_version",
    "read_data_version",
    "bump_data_version",
    "demo_notice",
    "store_errors_as_sentences",
]


# Every cached result is keyed on the data version, which each import, undo and instrument edit
# changes: a result cannot go stale, so it is kept for a day (bounded by each cache's max_entries)
# rather than recomputed every few minutes for whoever comes back to a page.
CACHE_TTL = 24 * 3600


def fail_clearly(exc: Exception) -> None:
    """Show a RelQ error as a sentence and stop the page (no traceback)."""
    st.error(plain(str(exc)))  # may quote a file's name or columns: plain text
    st.stop()


@st.cache_resource(show_spinner=False)
def _engine(url: str):
    engine = store.get_engine(url)
    if store.create_schema(engine):
        # a store of another RelQ version: its stored tables were made again empty, and until they
        # are rebuilt every page reads the rows themselves — rebuild them now, in the background
        from relq.analyses.churn_risk import refresh_scores_in_background

        refresh_scores_in_background(engine)
    return engine


def get_engine():
    """The store's engine; on first start the demo company is created and loaded."""
    try:
        engine = _engine(load_settings().database_url)
        if "relq_demo_checked" not in st.session_state:
            if not store.has_data(engine, schema_made=True):  # _engine made it
                with st.spinner("First start: building the demo company (about 20 seconds)…"):
                    ensure_demo(engine)
                    # saved, so the Retention page reads them rather than fitting on its first
                    # visit; imported here, as lifelines adds a second to a fresh server's first page
                    from relq.analyses.churn_risk import refresh_scores

                    refresh_scores(engine)
                    st.cache_data.clear()
            st.session_state["relq_demo_checked"] = True
        return engine
    except RelqError as exc:
        fail_clearly(exc)


def min_n() -> int:
    return load_settings().min_n


def read_data_version(engine) -> int:
    """Read the store's data version (one count over a tiny table); the frame does it once at the
    start of every run, so a change made anywhere — this dashboard, another server, the CLI — is
    seen by the very next run."""
    version = store.data_version(engine)
    st.session_state["relq_data_version"] = version
    return version


def data_version() -> int:
    """The store's data version, which every import, undo, demo load and instrument edit changes —
    from this dashboard or from the CLI in another process. Every cached query is keyed on it."""
    if "relq_data_version" in st.session_state:
        return st.session_state["relq_data_version"]
    return read_data_version(get_engine())  # a page run on its own, outside the frame


def bump_data_version() -> None:
    """After this session changed the data (an import, an undo, an instrument or theme edit): record
    the change in the store, so every process's caches follow, forget this process's cached results
    at once, and rebuild what is derived from the data in the background (the purchase summary, the
    answer rows, the survey scores' month sums and whole-history sums, each customer's latest
    response per pillar pair, each account's latest survey waves, today's churn-risk scores:
    relq.analyses.churn_risk.refresh_scores_in_background), saved under the new version the pages
    read."""
    from relq.analyses.churn_risk import refresh_scores_in_background  # lifelines: not on every page

    engine = get_engine()
    with engine.begin() as conn:
        store.note_data_change(conn, "dashboard")
    st.cache_data.clear()
    refresh_scores_in_background(engine)


@st.cache_data(ttl=CACHE_TTL, show_spinner=False)
def _has_demo(_engine, url: str, version: int) -> bool:
    return store.has_demo(_engine, schema_made=True)


def demo_notice(engine) -> None:
    """Say plainly when the numbers come from the demo company, and how to load real data."""
    if _has_demo(engine, str(engine.url), data_version()):
        st.info(
            "**You are looking at demo data** — a generated company with about 12,000 customers. "
            "Load your own survey and CRM exports on the **Upload** page, or from a terminal with "
            "`python -m relq import FILE`; the first real import offers to remove the demo company.",
            icon=":material/science:",
        )


@contextlib.contextmanager
def store_errors_as_sentences(engine):
    """Turn a database that went down, or a DuckDB file another process holds, into a sentence
    saying what to do, with a retry button — never a traceback. A weighting that cannot be applied
    to the view (Methodology page → Weights) is a sentence too, and no number is shown."""
    try:
        yield
    except WeightingError as exc:  # e.g. raking on a dimension value nobody in view answers for
        st.warning(str(exc), icon=":material/balance:")
        st.stop()
    except sa.exc.OperationalError as exc:
        st.error(store.explain_connection_error(exc, engine), icon=":material/database_off:")
        st.button("Try again", key="relq_store_retry")
        st.stop()
