"""How well the questionnaire measures: Cronbach's α, item statistics, pillar correlations, HTMT.

Everything is aggregated in the database. The stored raw answers (``survey_answers``) are pivoted
to one row per response by conditional aggregation, reverse-keyed items are recoded
(``min + max − x``), and one Core query returns, per pillar, the number of listwise-complete
responses, the item sums and the item cross-products. :func:`relq.measures.stats.covariance_from_sums`
turns those into covariance matrices; α, its Feldt interval, corrected item–total correlations
and α-if-deleted follow in :mod:`relq.measures.stats`. The same query runs on DuckDB and PostgreSQL.

:func:`recompute_indices` rewrites the stored pillar indices and RQ from the raw answers after
the instrument changes, in one ``UPDATE … FROM`` on the database side (no rows travel).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations, combinations_with_replacement

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from relq import store
from relq.core.instrument import Instrument, min_answered
from relq.measures import stats
from relq.measures.customer_sums import cell_stat_rows, cell_stats, on_source, save_cell_stats
from relq.store import dialects, schema
from relq.store.database import read_frame
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

__all__ = [
    "HTMT_WARNING",
    "Reliability",
    "reliability",
    "item_sums",
    "HTMT_RESAMPLES",
    "customer_item_sums",
    "htmt_intervals",
    "pillar_correlations",
    "answer_distribution",
    "has_answers",
    "recompute_indices",
    "answer_rows_ready",
    "answer_recipe",
    "save_segment_items",
    "save_answer_rows",
]

R = schema.survey_responses
A = schema.survey_answers

# Henseler, Ringle & Sarstedt (2015): above 0.90 two constructs are hard to tell apart.
HTMT_WARNING = 0.90
# Rule of thumb for a corrected item-total correlation that carries little of the pillar.
WEAK_ITEM_TOTAL_R = 0.30
HTMT_RESAMPLES = 200
HTMT_SEED = 20240601


def _recoded(item, instrument: Instrument):
    """The answer on the item's scale, reverse-keyed when needed; out-of-scale answers are NULL."""
    lo, hi = instrument.scale_min, instrument.scale_max
    value = sa.cast(A.c.value, sa.Double)  # DuckDB's FLOAT is single precision; sums need double
    if item.reverse:
        value = sa.literal(lo + hi, sa.Double) - value
    return sa.case(
        (sa.and_(A.c.item_id == item.id, A.c.value.between(lo, hi)), value),
        else_=sa.null(),
    )


def _recoded_columns(instrument: Instrument, positions) -> list:
    """Per response (grouped by response_id): c<i>, the recoded answer to the item at place i."""
    return [sa.func.max(_recoded(instrument.items[i], instrument)).label(f"c{i}") for i in positions]


def _pivot_rows(instrument: Instrument, positions) -> sa.Select:
    """One row per stored response answering any of the items at ``positions``: c<i>, the recoded
    answers (columns named by the item's place in the instrument)."""
    columns = _recoded_columns(instrument, positions)
    ids = [instrument.items[i].id for i in positions]
    return sa.select(A.c.response_id, *columns).where(A.c.item_id.in_(ids)).group_by(A.c.response_id)


def _pivot(
    instrument: Instrument, flt: SegmentFilter, positions: list[int] | None = None, stored: bool = False
):
    """One row per filtered response: c0..c{k-1}, the recoded answers in instrument order (only
    the columns at ``positions`` when given: fewer answers read). With ``stored`` (see
    :func:`answer_rows_ready`) they are read from the answer rows pivoted after the last change of
    the data; a response without any of the chosen answers then has a row of NULLs, which every
    statistic here leaves out as incomplete."""
    chosen = range(len(instrument.items)) if positions is None else positions
    if stored:
        query = sa.select(AR.c.response_id, *(AR.c[f"c{i}"] for i in chosen))
        if not flt.is_empty:  # the rows carry what the filter reads: no join of the responses
            query = query.where(on_source(AR, flt.response_clause()))
        return query.subquery("answers_wide")
    query = _pivot_rows(instrument, chosen)
    if not flt.is_empty:
        # Joining 11M answers to 1M responses costs twice the pivot itself (bench/RESULTS.md):
        # pay for the join only when there is something to filter on.
        query = query.select_from(A.join(R, A.c.response_id == R.c.response_id)).where(flt.response_clause())
    return query.subquery("answers_wide")


# --------------------------------------------------------------------------- stored answer rows

AR = schema.answer_rows
C = schema.customers
_ANSWER_ROWS = "answers"
# the response's columns a view's filter reads, kept on each answer row (customer_sums.on_source)
_CARRIED = ("submitted_at", "customer_id", "wave", *schema.QUALITY_FLAGS)


def answer_recipe(instrument: Instrument) -> str:
    """Everything besides the data that the answer rows depend on: items in order, their keying, the scale."""
    return json.dumps(
        {
            "items": [[item.id, bool(item.reverse)] for item in instrument.items],
            "scale": [instrument.scale_min, instrument.scale_max],
        }
    )


def _storable(bind, instrument: Instrument) -> bool:
    return not dialects.is_clickhouse(bind) and len(instrument.items) <= schema.ANSWER_COLUMNS


def answer_rows_ready(conn: Connection, instrument: Instrument) -> bool:
    """Whether the stored answer rows (:func:`save_answer_rows`) were pivoted from the current data
    version with this instrument, so they may stand in for the answers themselves."""
    return _storable(conn, instrument) and store.derived_current(
        conn, _ANSWER_ROWS, recipe=answer_recipe(instrument)
    )


def save_answer_rows(engine, instrument: Instrument | None = None) -> bool:
    """Pivot the stored answers to one row per response with ``instrument`` (the configured one by
    default), in one transaction on the database side, marked with the data version and the
    instrument: the recoded item answers, and over all the response's answers how many there are,
    the lowest and highest, and how many lie outside the scale (the data-quality checks). False when
    there is nothing to store: ClickHouse, or more items than the table holds."""
    from relq.core.instrument import configured_instrument

    instrument = instrument or configured_instrument()
    if not _storable(engine, instrument):
        return False
    k = len(instrument.items)
    recipe = answer_recipe(instrument)
    with store.rebuilding_derived(engine, _ANSWER_ROWS, (AR,), recipe) as (conn, _end):
        lo, hi = instrument.scale_min, instrument.scale_max
        pivot = (
            sa.select(
                A.c.response_id,
                *_recoded_columns(instrument, range(k)),
                sa.func.count(A.c.value).label("answers"),
                sa.func.min(A.c.value).label("lowest"),
                sa.func.max(A.c.value).label("highest"),
                sa.func.coalesce(
                    sa.func.sum(sa.case((sa.or_(A.c.value < lo, A.c.value > hi), 1), else_=0)), 0
                ).label("out_of_scale"),
            )
            .group_by(A.c.response_id)
            .subquery("pivot")
        )
        carried = [R.c[name] for name in _CARRIED]
        rows = sa.select(pivot.c.response_id, *carried, *list(pivot.c)[1:]).select_from(
            pivot.outerjoin(R, R.c.response_id == pivot.c.response_id)
        )
        names = [
            "response_id",
            *_CARRIED,
            *(f"c{i}" for i in range(k)),
            *("answers", "lowest", "highest", "out_of_scale"),
        ]
        conn.execute(AR.insert().from_select(names, rows))
    return True


def _positions(instrument: Instrument) -> dict[str, list[int]]:
    ids = instrument.item_ids
    return {p: [ids.index(item.id) for item in instrument.items_of(p)] for p in PILLARS}


def item_sums(
    conn: Connection, flt: SegmentFilter, instrument: Instrument, pillars: tuple[str, ...] | None = None
) -> dict[str, dict]:
    """Sufficient statistics of the item answers, from one query.

    Per pillar, over responses answering all its items (listwise): ``n``, ``sums`` (Σxᵢ) and
    ``cross`` (Σxᵢxⱼ), after reverse coding. Under the key ``"all"``: the same over responses
    answering every item of the instrument (for HTMT). Items keep the instrument's order.
    With ``pillars``, only those pillars' blocks (no ``"all"``), reading only their items' answers.
    """
    positions = _positions(instrument)
    stored = answer_rows_ready(conn, instrument)
    if pillars is None:
        groups = {**positions, "all": list(range(len(instrument.items)))}
        wide = _pivot(instrument, flt, stored=stored)
    else:
        groups = {p: positions[p] for p in pillars}
        wide = _pivot(instrument, flt, sorted({i for p in pillars for i in positions[p]}), stored)
    x = {int(c.name[1:]): c for c in wide.c if c.name.startswith("c")}
    if (
        stored
        and flt.whole_history
        and flt.picks_cells()
        and store.derived_current(conn, _SEGMENT_ITEMS, recipe=answer_recipe(instrument))
    ):
        row = _segment_item_sums(conn, flt, groups)
    else:
        row = _split_sums(conn, wide, x, groups) if stored else _case_sums(conn, wide, x, groups)
    out = {}
    for name, idx in groups.items():
        k = len(idx)
        sums = np.array([float(row[f"{name}__s{i}"] or 0.0) for i in idx])
        cross = np.zeros((k, k))
        for a, b in combinations_with_replacement(range(k), 2):
            cross[a, b] = cross[b, a] = float(row[f"{name}__c{idx[a]}_{idx[b]}"] or 0.0)
        out[name] = {
            "n": int(row[f"{name}__n"]),
            "item_ids": [instrument.items[i].id for i in idx],
            "sums": sums,
            "cross": cross,
        }
    return out


def _case_sums(conn: Connection, wide, x: dict, groups: dict[str, list[int]]) -> dict:
    """Every group's sums in one pass, each sum taking only the rows complete on its group: for a
    pivot computed in the query, which one pass reads once."""
    select = []
    for name, idx in groups.items():
        complete = sa.and_(*[x[i].isnot(None) for i in idx])
        select.append(sa.func.coalesce(sa.func.sum(sa.case((complete, 1), else_=0)), 0).label(f"{name}__n"))
        for i in idx:
            select.append(sa.func.sum(sa.case((complete, x[i]))).label(f"{name}__s{i}"))
        for i, j in combinations_with_replacement(idx, 2):
            select.append(sa.func.sum(sa.case((complete, x[i] * x[j]))).label(f"{name}__c{i}_{j}"))
    return dict(conn.execute(sa.select(*select).select_from(wide)).one()._mapping)


def _split_sums(conn: Connection, wide, x: dict, groups: dict[str, list[int]]) -> dict:
    """The sums of :func:`_case_sums` from the stored answer rows, with the rows split instead of
    each sum testing its group's condition (118 tests a row; 2.4 s on PostgreSQL, 0.39 s on DuckDB
    at a million responses, against 0.68 and 0.17 s split): one part sums the rows complete on every
    item (the ``"all"`` group), and one per pillar the rows complete on the pillar but not on every
    item; a pillar's sums are its part plus its items' share of the first. Without ``"all"``, each
    pillar's part is all its complete rows. Every part a plain sum over the rows it keeps, in one
    statement (UNION ALL, one row per part)."""
    rows = {r.part: r._mapping for r in conn.execute(sa.union_all(*_split_parts(wide, x, groups)))}
    return _from_parts(rows, groups, "all" in groups)


def _split_parts(wide, x: dict, groups: dict[str, list[int]], keys: list | None = None) -> list:
    """:func:`_split_sums`' parts, one SELECT each (columns part, n, s<i>, c<i>_<j>, NULL where the
    part does not hold the item); with ``keys``, per value of those columns too (grouped by them)."""
    positions = sorted(x)
    pairs = list(combinations_with_replacement(positions, 2))
    complete = {name: sa.and_(*[x[i].isnot(None) for i in idx]) for name, idx in groups.items()}
    parts = []
    for name, idx in groups.items():
        keep = [complete[name]] + ([sa.not_(complete["all"])] if _shares_all(groups, name) else [])
        chosen = set(idx)

        def total(value, *used, chosen=chosen):
            return sa.func.sum(value) if set(used) <= chosen else sa.cast(sa.null(), sa.Double)

        part = (
            sa.select(
                *(keys or []),
                sa.literal(name).label("part"),
                sa.cast(sa.func.count(), sa.Double).label("n"),
                *(sa.cast(total(x[i], i), sa.Double).label(f"s{i}") for i in positions),
                *(sa.cast(total(x[i] * x[j], i, j), sa.Double).label(f"c{i}_{j}") for i, j in pairs),
            )
            .select_from(wide)
            .where(*keep)
        )
        parts.append(part.group_by(*keys) if keys else part)
    return parts


def _from_parts(rows: Mapping[str, Mapping], groups: dict[str, list[int]], split_by_all: bool) -> dict:
    """Each group's sums from the parts' rows (part → stat → sum; a part without rows sums to 0): a
    pillar's part, plus the ``"all"`` part's share of its items when the rows were split by it."""
    out: dict = {}
    for name, idx in groups.items():
        share = [rows.get(name, {})] + ([rows.get("all", {})] if split_by_all and name != "all" else [])

        def total(stat: str, share=share) -> float:
            return sum(float(r.get(stat) or 0.0) for r in share)

        out[f"{name}__n"] = int(total("n"))
        for i in idx:
            out[f"{name}__s{i}"] = total(f"s{i}")
        for i, j in combinations_with_replacement(idx, 2):
            out[f"{name}__c{i}_{j}"] = total(f"c{i}_{j}")
    return out


# --------------------------------------------------------------------------- stored segment sums

SI = schema.segment_items
_SEGMENT_ITEMS = "segment items"


def save_segment_items(engine, instrument: Instrument | None = None) -> bool:
    """Rebuild the reliability sums of each segment cell (``segment_items``) from the stored answer
    rows, in one transaction, marked with the data version and the instrument: the parts of
    :func:`_split_sums` (every item; per pillar, complete on it but not on every item) per
    combination of ``schema.SEGMENT_SUM_DIMENSIONS``, one row per statistic. False when there is
    nothing to build from (ClickHouse, or answer rows not of the current data and instrument)."""
    from relq.core.instrument import configured_instrument

    instrument = instrument or configured_instrument()
    if not _storable(engine, instrument):
        return False
    with engine.connect() as conn:
        if not answer_rows_ready(conn, instrument):
            return False
    with store.rebuilding_derived(engine, _SEGMENT_ITEMS, (SI,), answer_recipe(instrument)) as (conn, _end):
        k = len(instrument.items)
        groups = {**_positions(instrument), "all": list(range(k))}
        wide = AR.outerjoin(C, C.c.customer_id == AR.c.customer_id)
        cells = [C.c[d].label(d) for d in schema.SEGMENT_SUM_DIMENSIONS]
        x = {i: AR.c[f"c{i}"] for i in range(k)}
        # one statement per part: their UNION ALL, grouped by cell over ten million answer rows, never
        # finished on DuckDB 1.4 (its threads waiting on one another), while each part takes 1.6 s
        frame = pd.concat([read_frame(conn, part) for part in _split_parts(wide, x, groups, cells)])
        save_cell_stats(conn, SI, cell_stat_rows(frame, keys=("part",)))
    return True


def _segment_item_sums(conn: Connection, flt: SegmentFilter, groups: dict[str, list[int]]) -> dict:
    """:func:`_split_sums` added up from the stored segment cells, for a view over the whole history
    that picks its customers by segment cells (``SegmentFilter.picks_cells``)."""
    rows: dict[str, dict[str, float]] = {}
    for part, stat, value in cell_stats(conn, SI, flt, keys=("part",)):
        rows.setdefault(part, {})[stat] = value
    return _from_parts(rows, groups, True)


def _shares_all(groups: dict[str, list[int]], name: str) -> bool:
    """Whether group ``name``'s sums include the rows complete on every item (a pillar beside ``"all"``)."""
    return name != "all" and "all" in groups


def customer_item_sums(conn: Connection, flt: SegmentFilter, instrument: Instrument) -> dict:
    """Per customer, over their responses answering every item (reverse-coded): ``n`` (responses),
    ``sums`` (customers × k, Σxᵢ) and ``cross`` (customers × k × k, Σxᵢxⱼ), in instrument order.

    Unit: the customer (an unmatched response is a customer of its own) -- the clusters a
    bootstrap over customers resamples. One grouped query: per customer first, then in Python
    only per-customer sums. Their totals equal :func:`item_sums`' ``"all"`` block.
    """
    wide = _pivot(instrument, flt, stored=answer_rows_ready(conn, instrument))
    k = len(instrument.items)
    x = [wide.c[f"c{i}"] for i in range(k)]
    complete = sa.and_(*[c.isnot(None) for c in x])
    customer = sa.func.coalesce(R.c.customer_id, R.c.response_id)
    pairs = list(combinations_with_replacement(range(k), 2))
    rows = read_frame(
        conn,
        sa.select(
            sa.func.count().label("n"),
            *[sa.func.sum(x[i]).label(f"s{i}") for i in range(k)],
            *[sa.func.sum(x[i] * x[j]).label(f"c{i}_{j}") for i, j in pairs],
        )
        .select_from(wide.join(R, R.c.response_id == wide.c.response_id))
        .where(complete)
        .group_by(customer)
        .order_by(customer),  # a fixed order, so a seeded bootstrap draws the same customers
    )
    data = rows.to_numpy(dtype=float).reshape(len(rows), 1 + k + len(pairs))
    cross = np.zeros((len(rows), k, k))
    for column, (i, j) in enumerate(pairs, start=1 + k):
        cross[:, i, j] = cross[:, j, i] = data[:, column]
    return {"n": data[:, 0], "sums": data[:, 1 : 1 + k], "cross": cross}


def htmt_intervals(
    conn: Connection,
    flt: SegmentFilter,
    instrument: Instrument,
    resamples: int = HTMT_RESAMPLES,
    seed: int = HTMT_SEED,
) -> pd.DataFrame:
    """HTMT of each pillar pair with a percentile bootstrap 95% interval over customers.

    Each resample draws customers with replacement (all of a customer's responses together),
    rebuilds the item correlations from their per-customer sums and recomputes HTMT.
    Returns a, b, htmt, low, high, customers, resamples.
    """
    per = customer_item_sums(conn, flt, instrument)
    customers = len(per["n"])
    groups = _positions(instrument)
    point = _htmt_from(per["n"].sum(), per["sums"].sum(axis=0), per["cross"].sum(axis=0), groups)
    rng = np.random.default_rng(seed)
    draws = []
    if customers >= 2:
        flat = np.column_stack([per["n"], per["sums"], per["cross"].reshape(customers, -1)])
        chunk = max(1, min(resamples, 2_000_000 // customers))
        k = per["sums"].shape[1]
        for start in range(0, resamples, chunk):
            size = min(chunk, resamples - start)
            weights = np.stack(
                [np.bincount(rng.integers(0, customers, customers), minlength=customers) for _ in range(size)]
            )
            totals = weights.astype(float) @ flat
            for row in totals:
                draws.append(
                    _htmt_from(row[0], row[1 : 1 + k], row[1 + k :].reshape(k, k), groups)["htmt"].to_numpy()
                )
    draws = np.array(draws) if draws else np.full((1, len(point)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN pairs (an item without variance)
        low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    return point.assign(low=low, high=high, customers=customers, resamples=resamples if customers >= 2 else 0)


def _htmt_from(n: float, sums: np.ndarray, cross: np.ndarray, groups: dict[str, list[int]]) -> pd.DataFrame:
    if n < 2:
        return pd.DataFrame(
            [{"a": a, "b": b, "htmt": np.nan} for a, b in combinations(PILLARS, 2)],
            columns=["a", "b", "htmt"],
        )
    cov = stats.covariance_from_sums(int(round(n)), sums, cross)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = stats.correlation_from_cov(cov)
    ratio = stats.htmt(np.nan_to_num(corr, nan=0.0), groups)
    if np.isnan(corr).any():
        ratio["htmt"] = np.nan
    return ratio


@dataclass(frozen=True)
class Reliability:
    """α per pillar, item statistics and HTMT for one filter."""

    alpha: dict[str, stats.AlphaResult]
    items: (
        pd.DataFrame
    )  # pillar, item_id, text, reverse, n, mean, sd, item_total_r, alpha_if_deleted, weakens
    htmt: pd.DataFrame  # a, b, htmt, n, warning
    item_correlations: pd.DataFrame  # item × item correlation matrix (responses answering every item)

    @property
    def weak_items(self) -> pd.DataFrame:
        return self.items[self.items["weakens"]]


def _pillar_alpha(block: dict) -> stats.AlphaResult:
    k = len(block["item_ids"])
    if k < 2:
        return stats.AlphaResult(float("nan"), float("nan"), float("nan"), block["n"], k)
    cov = stats.covariance_from_sums(block["n"], block["sums"], block["cross"])
    return stats.cronbach_alpha(cov, block["n"])


def reliability(conn: Connection, flt: SegmentFilter, instrument: Instrument) -> Reliability:
    """Cronbach's α (Feldt 95% interval), item statistics and HTMT, from one aggregate query.

    An item "weakens" its pillar when α would rise without it, or when its corrected item–total
    correlation is below 0.30.
    """
    sums = item_sums(conn, flt, instrument)
    alphas: dict[str, stats.AlphaResult] = {}
    frames = []
    for pillar in PILLARS:
        block = sums[pillar]
        alphas[pillar] = alpha = _pillar_alpha(block)
        n, k = block["n"], len(block["item_ids"])
        cov = stats.covariance_from_sums(n, block["sums"], block["cross"])
        if k >= 2:
            table = stats.item_statistics(cov, block["item_ids"])
        else:
            table = pd.DataFrame(
                {"item_id": block["item_ids"], "item_total_r": np.nan, "alpha_if_deleted": np.nan}
            )
        table.insert(0, "pillar", pillar)
        table["n"] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            table["mean"] = block["sums"] / n if n else np.nan
        table["sd"] = np.sqrt(np.diag(cov)) if n >= 2 else np.nan
        weakens = (table["alpha_if_deleted"] > alpha.alpha) | (table["item_total_r"] < WEAK_ITEM_TOTAL_R)
        table["weakens"] = weakens.fillna(False).astype(bool)
        frames.append(table)
    items = pd.concat(frames, ignore_index=True)
    texts = {item.id: item for item in instrument.items}
    items.insert(2, "text", items["item_id"].map(lambda i: texts[i].text))
    items.insert(3, "reverse", items["item_id"].map(lambda i: texts[i].reverse))
    items = items[
        [
            "pillar",
            "item_id",
            "text",
            "reverse",
            "n",
            "mean",
            "sd",
            "item_total_r",
            "alpha_if_deleted",
            "weakens",
        ]
    ]

    every = sums["all"]
    cov_all = stats.covariance_from_sums(every["n"], every["sums"], every["cross"])
    corr = stats.correlation_from_cov(cov_all) if every["n"] >= 2 else np.full(cov_all.shape, np.nan)
    ratio = (
        stats.htmt(np.nan_to_num(corr, nan=0.0), _positions(instrument))
        if every["n"] >= 2
        else (
            pd.DataFrame(
                [{"a": a, "b": b, "htmt": np.nan} for a, b in combinations(PILLARS, 2)],
                columns=["a", "b", "htmt"],
            )
        )
    )
    if every["n"] >= 2 and np.isnan(corr).any():
        ratio["htmt"] = np.nan  # an item without variance: HTMT is undefined, not 0
    ratio["n"] = every["n"]
    ratio["warning"] = ratio.apply(_htmt_warning, axis=1)
    item_corr = pd.DataFrame(corr, index=every["item_ids"], columns=every["item_ids"])
    return Reliability(alphas, items, ratio, item_corr)


def _htmt_warning(row) -> str:
    if pd.notna(row["htmt"]) and row["htmt"] > HTMT_WARNING:
        return (
            f"HTMT {row['htmt']:.2f} > {HTMT_WARNING:.2f}: customers hardly tell {row['a']} and {row['b']} "
            "apart; read the two pillars together or revise their items."
        )
    return ""


def pillar_correlations(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> pd.DataFrame:
    """Pearson r between each pair of pillar indices with its Fisher-z 95% interval.

    Over responses having both indices (pairwise), from n, Σa, Σb, Σa², Σb², Σab in one query.
    Returns a, b, r, low, high, n.
    """
    select = []
    for a, b in combinations(PILLARS, 2):
        both = sa.and_(R.c[a].isnot(None), R.c[b].isnot(None))
        x, y = sa.cast(R.c[a], sa.Double), sa.cast(R.c[b], sa.Double)
        key = f"{a}__{b}"
        select += [
            sa.func.coalesce(sa.func.sum(sa.case((both, 1), else_=0)), 0).label(f"{key}__n"),
            sa.func.sum(sa.case((both, x))).label(f"{key}__sa"),
            sa.func.sum(sa.case((both, y))).label(f"{key}__sb"),
            sa.func.sum(sa.case((both, x * x))).label(f"{key}__saa"),
            sa.func.sum(sa.case((both, y * y))).label(f"{key}__sbb"),
            sa.func.sum(sa.case((both, x * y))).label(f"{key}__sab"),
        ]
    row = conn.execute(sa.select(*select).where(flt.response_clause())).one()._mapping
    records = []
    for a, b in combinations(PILLARS, 2):
        key = f"{a}__{b}"
        n = int(row[f"{key}__n"])
        val = {s: float(row[f"{key}__{s}"] or 0.0) for s in ("sa", "sb", "saa", "sbb", "sab")}
        cov = stats.covariance_from_sums(
            n,
            np.array([val["sa"], val["sb"]]),
            np.array([[val["saa"], val["sab"]], [val["sab"], val["sbb"]]]),
        )
        r = float(stats.correlation_from_cov(cov)[0, 1]) if n >= 2 else float("nan")
        interval = (
            stats.pearson_interval(r, n) if not np.isnan(r) else stats.Interval(np.nan, np.nan, np.nan, n)
        )
        records.append({"a": a, "b": b, "r": r, "low": interval.low, "high": interval.high, "n": n})
    return pd.DataFrame(records, columns=["a", "b", "r", "low", "high", "n"])


def has_answers(conn: Connection, flt: SegmentFilter, instrument: Instrument) -> bool:
    """Whether any response in view has an answer to an instrument item: the first one found
    answers it (the database stops there), where :func:`answer_distribution` counts them all.

    While the stored answer rows are current (:func:`answer_rows_ready`) they answer it from the
    response's own columns: a row in view with a recoded answer has one; with none, only an answer
    outside the scale (stored as NULL) could still be one, so the answers themselves are asked only
    when a row in view has such an answer. Otherwise the answers are read alone, the responses in
    view only as the ids they may belong to: a join would make DuckDB build the whole join before it
    stops (14 s on ten million responses), and the ids of a region's responses cost 1.5 s there."""
    if answer_rows_ready(conn, instrument):
        in_view = [on_source(AR, flt.response_clause())] if not flt.is_empty else []
        answered = sa.or_(*(AR.c[f"c{i}"].is_not(None) for i in range(len(instrument.items))))
        if conn.execute(sa.select(sa.literal(1)).where(*in_view, answered).limit(1)).first() is not None:
            return True
        outside = sa.select(sa.literal(1)).where(*in_view, AR.c.out_of_scale > 0).limit(1)
        if conn.execute(outside).first() is None:
            return False
    query = (
        sa.select(sa.literal(1))
        .select_from(A)
        .where(A.c.item_id.in_(instrument.item_ids), A.c.value.isnot(None))
        .limit(1)
    )
    if not flt.is_empty:
        query = query.where(A.c.response_id.in_(sa.select(R.c.response_id).where(flt.response_clause())))
    return conn.execute(query).first() is not None


def answer_distribution(conn: Connection, flt: SegmentFilter, instrument: Instrument) -> pd.DataFrame:
    """Counts per answer value for every instrument item (raw answers, before reverse coding).

    Returns pillar, item_id, text, value, count, share (of the item's answers), in instrument order.
    """
    query = (
        sa.select(A.c.item_id, A.c.value, sa.func.count().label("count"))
        .select_from(A.join(R, A.c.response_id == R.c.response_id))
        .where(A.c.item_id.in_(instrument.item_ids), A.c.value.isnot(None))
        .group_by(A.c.item_id, A.c.value)
    )
    if not flt.is_empty:
        query = query.where(flt.response_clause())
    frame = pd.DataFrame(conn.execute(query).all(), columns=["item_id", "value", "count"])
    columns = ["pillar", "item_id", "text", "value", "count", "share"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    order = {item_id: i for i, item_id in enumerate(instrument.item_ids)}
    frame["count"] = frame["count"].astype(int)
    frame["value"] = frame["value"].astype(float)
    frame["share"] = frame["count"] / frame.groupby("item_id")["count"].transform("sum")
    frame["pillar"] = frame["item_id"].map(lambda i: instrument.item(i).pillar)
    frame["text"] = frame["item_id"].map(lambda i: instrument.item(i).text)
    frame = frame.assign(_o=frame["item_id"].map(order)).sort_values(["_o", "value"]).drop(columns="_o")
    return frame[columns].reset_index(drop=True)


def _index_query(instrument: Instrument):
    """Per response with answers: the three pillar indices and RQ, as the Methodology page defines them."""
    lo, hi = instrument.scale_min, instrument.scale_max
    select = [A.c.response_id]
    for pillar in PILLARS:
        items = instrument.items_of(pillar)
        recoded = [_recoded(item, instrument) for item in items]
        answered = sum((sa.func.count(value) for value in recoded), start=sa.literal(0, sa.Integer))
        total = sum((sa.func.coalesce(sa.func.sum(value), 0.0) for value in recoded), start=sa.literal(0.0))
        index = sa.case(
            (
                answered >= min_answered(len(items)),
                100.0 * (total / sa.cast(answered, sa.Double) - lo) / (hi - lo),
            ),
            else_=sa.null(),
        )
        select.append(sa.cast(index, sa.Double).label(pillar))
    per_pillar = (
        sa.select(*select)
        .where(A.c.item_id.in_(instrument.item_ids))
        .group_by(A.c.response_id)
        .subquery("indices")
    )
    rq = (per_pillar.c.trust + per_pillar.c.commitment + per_pillar.c.satisfaction) / 3.0
    return per_pillar, rq


def recompute_indices(engine: Engine, instrument: Instrument) -> int:
    """Rewrite every response's pillar indices and RQ from its stored answers; returns the rows updated.

    One ``UPDATE … FROM`` runs inside the database, so a million responses never leave it.
    Responses whose answers no longer reach ⌈2k/3⌉ items of a pillar get no index for it;
    responses with no stored answers keep what they had (nothing to recompute from).
    """
    indices, rq = _index_query(instrument)
    # Answers for items the instrument no longer has: those responses lose every index.
    stale = sa.and_(
        R.c.response_id.in_(sa.select(A.c.response_id)),
        R.c.response_id.notin_(sa.select(A.c.response_id).where(A.c.item_id.in_(instrument.item_ids))),
    )
    with engine.begin() as conn:
        conn.execute(
            R.update()
            .values(
                trust=indices.c.trust,
                commitment=indices.c.commitment,
                satisfaction=indices.c.satisfaction,
                rq=rq,
            )
            .where(R.c.response_id == indices.c.response_id)
        )
        conn.execute(R.update().values(trust=None, commitment=None, satisfaction=None, rq=None).where(stale))
        # DuckDB reports no rowcount for UPDATE … FROM: count the responses that have answers.
        updated = conn.execute(
            sa.select(sa.func.count()).select_from(R).where(R.c.response_id.in_(sa.select(A.c.response_id)))
        ).scalar_one()
    return int(updated)
