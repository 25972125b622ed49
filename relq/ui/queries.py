"""Cached queries: each result is keyed on the filter, its options and the data version."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from relq.measures import metrics
from relq.store.filters import SegmentFilter
from relq.ui.session import CACHE_TTL, data_version

__all__ = [
    "cached_headline",
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
