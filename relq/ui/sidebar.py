"""The shared filters in the sidebar, kept in the URL so a view can be bookmarked."""

from __future__ import annotations

import streamlit as st

from relq.core.plaintext import plain
from relq.store import catalog
from relq.store import themes as stored_themes
from relq.store.filters import (
    DEFAULT_RAKE,
    EARLIEST_DAY,
    LATEST_DAY,
    WEIGHT_LABELS,
    WEIGHT_SCHEMES,
    SegmentFilter,
    Weighting,
)
from relq.ui.session import CACHE_TTL, data_version

__all__ = [
    "filter_sidebar",
    "current_filter",
    "FILTER_DIMENSIONS",
    "FLAG_LABELS",
]


FILTER_DIMENSIONS = ("region", "industry", "plan", "value_tier", "lifecycle_stage", "cohort")
FLAG_LABELS = {
    "flag_duplicate": "duplicates",
    "flag_speeder": "speeders",
    "flag_straightliner": "straight-liners",
    "flag_out_of_range": "out-of-range answers",
}


@st.cache_data(ttl=CACHE_TTL, max_entries=64, show_spinner=False)
def _options(_engine, url: str, name: str, version: int) -> list[str]:
    with _engine.connect() as conn:
        if name == "__waves__":
            return catalog.waves(conn)
        if name == "__dimensions__":
            return catalog.dimensions(conn)
        if name == "__themes__":
            return stored_themes.theme_names(conn)
        return catalog.dimension_values(conn, name)


@st.cache_data(ttl=CACHE_TTL, max_entries=8, show_spinner=False)
def _bounds(_engine, url: str, version: int):
    with _engine.connect() as conn:
        return catalog.period_bounds(conn)


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
    st.session_state["flt_themes"] = list(flt.themes)
    st.session_state["flt_weight"] = flt.weighting.scheme
    st.session_state["flt_rake"] = list(flt.weighting.rake)
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
            min_value=EARLIEST_DAY,
            max_value=LATEST_DAY,
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
                plain(name.replace("_", " ").capitalize()),  # an imported header: plain text, never Markdown
                _options(engine, url, name, version),
                key=f"flt_dim_{name}",
            )
            flt = flt.with_dimension(name, values)
    quadrant = _quadrant_choice(sb)
    themes = _theme_choice(sb, engine, url, version)
    excluded = sb.multiselect(
        "Exclude flagged responses",
        list(FLAG_LABELS.values()),
        key="flt_exclude",
        help="By default every stored response counts; excluding flagged ones is your visible choice.",
    )
    label_to_flag = {v: k for k, v in FLAG_LABELS.items()}
    weighting = _weighting_choice(sb, _options(engine, url, "__dimensions__", version))
    flt = SegmentFilter(
        since=flt.since,
        until=flt.until,
        waves=flt.waves,
        customer=flt.customer,
        quadrant=quadrant or None,
        exclude_flags=tuple(label_to_flag[x] for x in excluded),
        themes=tuple(themes),
        weighting=weighting,
    )
    sb.button("Clear all filters", on_click=_clear_filters, width="stretch")
    params = flt.to_query_params()
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state["relq_filter"] = flt
    return flt


def _quadrant_choice(sb) -> str:
    from relq.analyses.quadrants import QUADRANT_NAMES

    keys = [""] + list(QUADRANT_NAMES)
    if st.session_state.get("flt_quadrant") not in keys:
        st.session_state["flt_quadrant"] = ""
    return sb.selectbox(
        "Quadrant (trust × satisfaction at 50)",
        keys,
        format_func=lambda k: "All customers" if not k else QUADRANT_NAMES[k],
        key="flt_quadrant",
    )


def _theme_choice(sb, engine, url: str, version: int) -> list[str]:
    """Comment themes as a filter, like a region or a plan (a theme no longer in force drops out)."""
    names = _options(engine, url, "__themes__", version)
    chosen = [t for t in st.session_state.get("flt_themes", []) if t in names]
    if chosen != st.session_state.get("flt_themes", []):
        st.session_state["flt_themes"] = chosen
    return sb.multiselect(
        "Comment theme",
        names,
        key="flt_themes",
        help="Keeps the responses whose comment mentions any of these themes (Comment themes page).",
    )


def _weighting_choice(sb, dims: list[str]) -> Weighting:
    """ "Count each: response · customer · annual value · raked to the customer base", and the
    raking dimensions; both live in the URL (``weight``, ``rake``)."""
    if st.session_state.get("flt_weight") not in WEIGHT_SCHEMES:
        st.session_state["flt_weight"] = "response"
    scheme = sb.radio(
        "Count each",
        list(WEIGHT_SCHEMES),
        format_func=lambda s: WEIGHT_LABELS[s],
        key="flt_weight",
        horizontal=True,
        help="response: what do our responses say · customer: what does the average customer feel · "
        "annual value: what does our revenue feel · raked: what would the whole customer base say. "
        "Every interval treats each customer as a cluster, whatever you count.",
    )
    rake = DEFAULT_RAKE
    if scheme == "raked":
        options = list(dims) or list(DEFAULT_RAKE)
        chosen = [d for d in st.session_state.get("flt_rake", list(DEFAULT_RAKE)) if d in options]
        st.session_state["flt_rake"] = chosen or [d for d in DEFAULT_RAKE if d in options]
        picked = sb.multiselect(
            "Rake on",
            options,
            key="flt_rake",
            format_func=lambda d: d.replace("_", " ").capitalize(),
            help="The responding customers are weighted (iterative proportional fitting) so that, on each of "
            "these dimensions, they match the customers active in the period.",
        )
        if picked:
            rake = tuple(picked)
        else:
            sb.caption(
                ":orange[Choose at least one dimension to rake on; region and plan are used meanwhile.]"
            )
    return Weighting(scheme, rake)


def current_filter() -> SegmentFilter:
    """The frame's filter for this run (empty when a page runs alone, as in tests)."""
    return st.session_state.get("relq_filter", SegmentFilter())
