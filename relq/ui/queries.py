"""Cached queries: each result is keyed on the filter, its options and the data version."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from relq.measures import metrics
from relq.outputs import board_report
from relq.store.filters import SegmentFilter
from relq.ui.session import CACHE_TTL, data_version

__all__ = [
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
