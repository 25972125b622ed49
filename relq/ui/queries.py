"""Cached queries: each result is keyed on the filter, its options and the data version."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from relq.analyses import drivers
from relq.measures import metrics
from relq.outputs import board_report
from relq.store.filters import SegmentFilter
from relq.ui.session import CACHE_TTL, data_version

__all__ = [
    "cached_drivers",
    "cached_headline",
    "cached_segment_moves",
    "cached_trend",
    "cached_query",
]


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


def cached_drivers(engine, flt: SegmentFilter, dimension: str | None, read_by: str | None) -> pd.DataFrame:
    """The Drivers page's decomposition, overall (``dimension`` None) or per segment, from the
    customers' sums read once with ``read_by``'s segments — the dimension the page segments by — so
    the overall and the per-segment figures of a view cost one read (the overall is kept whichever
    dimension it was computed from: its figures do not depend on it)."""
    return _drivers(engine, str(engine.url), flt, dimension, data_version(), dimension or read_by)
