"""Cached queries: each result is keyed on the filter, its options and the data version."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx
from threadpoolctl import threadpool_limits

from relq.analyses import drivers
from relq.measures import metrics
from relq.outputs import board_report
from relq.store.filters import SegmentFilter
from relq.ui.session import CACHE_TTL, data_version

__all__ = [
    "cached_drivers",
    "cached_headline",
    "cached_overview_kpis",
    "cached_segment_moves",
    "cached_trend",
    "cached_query",
    "read_side_by_side",
]

# One BLAS thread per call in the dashboard: its reads and decompositions already run side by side
# in threads of their own (read_side_by_side), and OpenBLAS's own threads then fight them — the
# Drivers page's two bootstraps of 613k customers took 1.83 s at once with OpenBLAS's two threads
# each, 1.14 s with one (their products are memory-bound: one thread computes them as fast).
threadpool_limits(1, user_api="blas")

# Engines whose connections may run queries at once from threads of one process. chdb (ClickHouse's
# engine in-process) is left out: its reads run one after another.
_SIDE_BY_SIDE = ("duckdb", "postgresql")


def read_side_by_side(engine, *reads: Callable[[], Any]) -> list:
    """Each of ``reads`` (independent cached reads, each opening its own connection) run at the same
    time in a thread of its own; their results in order, once all are done. A page's separate reads
    each leave a core idle part of the time (a query's first and last steps, turning rows into
    frames); side by side they overlap. The first error is raised here, as if read one by one.
    On an engine not in :data:`_SIDE_BY_SIDE`, or with one read, they run one after another."""
    if len(reads) < 2 or engine.dialect.name not in _SIDE_BY_SIDE:
        return [read() for read in reads]
    results: list = [None] * len(reads)
    errors: list[BaseException | None] = [None] * len(reads)

    def run(i: int) -> None:
        try:
            results[i] = reads[i]()
        except BaseException as exc:  # noqa: BLE001 - raised again in the script's thread below
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"relq-read-{i}") for i in range(len(reads))]
    ctx = get_script_run_ctx()
    for thread in threads:
        if ctx is not None:  # the session's caches, state and data version, as in the script's thread
            add_script_run_ctx(thread, ctx)
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results


@st.cache_data(ttl=CACHE_TTL, max_entries=128, show_spinner=False)
def _headline(_engine, url: str, flt: SegmentFilter, version: int):
    with _engine.connect() as conn:
        return metrics.headline(conn, flt)


def cached_headline(engine, flt: SegmentFilter):
    return _headline(engine, str(engine.url), flt, data_version())


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _trend(_engine, url: str, flt: SegmentFilter, freq: str, version: int) -> pd.DataFrame:
    with _engine.connect() as conn:
        return metrics.trend(conn, flt, freq)


def cached_trend(engine, flt: SegmentFilter, freq: str = "month") -> pd.DataFrame:
    return _trend(engine, str(engine.url), flt, freq, data_version())


@st.cache_data(ttl=CACHE_TTL, max_entries=256, show_spinner=False)
def _query(_engine, _func, url: str, name: str, flt: SegmentFilter, version: int, options: tuple):
    with _engine.connect() as conn:
        return _func(conn, flt, **dict(options))


def cached_query(engine, func, flt: SegmentFilter, **options):
    """``func(conn, flt, **options)`` cached on the filter, the options and the data version.

    ``func`` is a relq function taking a connection and a SegmentFilter; options must be hashable.
    """
    name = f"{func.__module__}.{func.__qualname__}"
    return _query(engine, func, str(engine.url), name, flt, data_version(), tuple(sorted(options.items())))


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _period_sums(_engine, url: str, now: SegmentFilter, before: SegmentFilter, names: tuple, version: int):
    with _engine.connect() as conn:
        return board_report.period_sums_by_dimension(conn, now, before, names)


@st.cache_data(ttl=CACHE_TTL, max_entries=32, show_spinner=False)
def _segment_moves(_engine, url: str, current: SegmentFilter, previous: SegmentFilter, version: int):
    def sums(now: SegmentFilter, before: SegmentFilter, names: tuple) -> pd.DataFrame:
        return _period_sums(_engine, url, now, before, names, version)

    with _engine.connect() as conn:
        return board_report.segment_moves(conn, current, previous, sums=sums)


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _overview_kpis(_engine, url: str, flt: SegmentFilter, periods: board_report.Periods, version: int):
    def sums(now: SegmentFilter, before: SegmentFilter, names: tuple) -> pd.DataFrame:
        return _period_sums(_engine, url, now, before, names, version)

    with _engine.connect() as conn:
        return board_report.overview_kpis(conn, flt, sums=sums, periods=periods)


def cached_overview_kpis(engine, flt: SegmentFilter, periods: board_report.Periods):
    """The Overview's cards for ``periods`` (:func:`board_report.overview_periods` of the view, read
    once for the page): the two periods' sums are the total row of the read the segment moves of the
    same view make (:func:`cached_segment_moves`), so the page reads them once."""
    return _overview_kpis(engine, str(engine.url), flt, periods, data_version())


def cached_segment_moves(engine, current: SegmentFilter, previous: SegmentFilter) -> pd.DataFrame:
    """The Overview's segment moves, each dimension's sums cached on their own: after a dimension is
    chosen, its segments are compared in the view without it — sums the page already read."""
    return _segment_moves(engine, str(engine.url), current, previous, data_version())


# Kept as read, not copied: driver_importance only reads them (a million customers' rows are
# ~100 MB, which a copy per run would cost).
@st.cache_resource(ttl=CACHE_TTL, max_entries=4, show_spinner=False)
def _driver_moments(
    _engine, url: str, flt: SegmentFilter, dimension: str | None, version: int
) -> pd.DataFrame:
    with _engine.connect() as conn:
        return drivers.customer_moments(conn, flt, dimension)


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _drivers(
    _engine, url: str, flt: SegmentFilter, dimension: str | None, version: int, _read_by: str | None
):
    moments = _driver_moments(_engine, url, flt, _read_by, version)
    return drivers.driver_importance(None, flt, dimension, moments=moments)


def cached_driver_moments(engine, flt: SegmentFilter, read_by: str | None) -> pd.DataFrame:
    """The customers' sums :func:`cached_drivers` decomposes, read with ``read_by``'s segments — read
    before two decompositions run side by side, so that they share one read."""
    return _driver_moments(engine, str(engine.url), flt, read_by, data_version())


def cached_drivers(engine, flt: SegmentFilter, dimension: str | None, read_by: str | None) -> pd.DataFrame:
    """The Drivers page's decomposition, overall (``dimension`` None) or per segment, from the
    customers' sums read once with ``read_by``'s segments — the dimension the page segments by — so
    the overall and the per-segment figures of a view cost one read (the overall is kept whichever
    dimension it was computed from: its figures do not depend on it)."""
    return _drivers(engine, str(engine.url), flt, dimension, data_version(), dimension or read_by)
