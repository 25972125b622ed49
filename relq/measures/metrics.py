"""Headline numbers aggregated where the data lives.

Each query returns sufficient statistics (counts, sums, sums of squares); relq.measures.stats turns them
into scores with n and 95% intervals (Methodology page → Definitions).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.measures import stats
from relq.store import schema
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

__all__ = [
    "Headline",
    "STATISTIC_KEYS",
    "headline",
    "sufficient_statistics",
    "statistics_difference",
    "headline_from_row",
    "trend",
]

R = schema.survey_responses


def _moments(column) -> list:
    """n, Σx, Σx² of a column (NULLs ignored), labelled by the column's name."""
    value = sa.cast(column, sa.Double)  # DuckDB's FLOAT is single precision
    return [
        sa.func.count(column).label(f"{column.name}_n"),
        sa.func.coalesce(sa.func.sum(value), 0.0).label(f"{column.name}_sum"),
        sa.func.coalesce(sa.func.sum(value * value), 0.0).label(f"{column.name}_sumsq"),
    ]


def _count_if(condition, label: str):
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0).label(label)


def sufficient_statistics(responses=R) -> list:
    """The select list of every headline statistic over survey_responses.

    ``responses`` may be any selectable with survey_responses' score columns (e.g. a subquery
    that adds a segment column).
    """
    c = responses.c
    return [
        sa.func.count().label("responses"),
        *[col for name in (*PILLARS, "rq", "ces") for col in _moments(c[name])],
        _count_if(c.nps >= 9, "promoters"),
        _count_if(c.nps.between(7, 8), "passives"),
        _count_if(c.nps <= 6, "detractors"),
        sa.func.count(c.csat).label("csat_n"),
        _count_if(c.csat >= 4, "csat_top2"),
    ]


STATISTIC_KEYS: tuple[str, ...] = (
    "responses",
    *[f"{name}_{part}" for name in (*PILLARS, "rq", "ces") for part in ("n", "sum", "sumsq")],
    "promoters",
    "passives",
    "detractors",
    "csat_n",
    "csat_top2",
)


def statistics_difference(total, part) -> dict:
    """The sufficient statistics of ``total`` minus those of ``part`` (e.g. the rest of a segment).

    Every statistic is a count or a sum, so the rest needs no query of its own.
    """
    t = total._mapping if hasattr(total, "_mapping") else total
    p = part._mapping if hasattr(part, "_mapping") else part
    return {key: t[key] - p[key] for key in STATISTIC_KEYS}


@dataclass(frozen=True)
class Headline:
    responses: int
    pillars: dict[str, stats.Interval]
    rq: stats.Interval
    nps: stats.NpsResult
    csat: stats.Interval
    ces: stats.Interval

    def as_dict(self) -> dict:
        return {
            "responses": self.responses,
            "pillars": {name: interval.as_dict("mean") for name, interval in self.pillars.items()},
            "rq": self.rq.as_dict("mean"),
            "nps": self.nps.as_dict(),
            "csat": self.csat.as_dict("score"),
            "ces": self.ces.as_dict("mean"),
        }


def headline_from_row(row) -> Headline:
    """Scores with intervals from one row of ``sufficient_statistics``."""
    m = row._mapping if hasattr(row, "_mapping") else row

    def mean_of(name: str) -> stats.Interval:
        return stats.mean_interval(int(m[f"{name}_n"]), float(m[f"{name}_sum"]), float(m[f"{name}_sumsq"]))

    return Headline(
        responses=int(m["responses"]),
        pillars={name: mean_of(name) for name in PILLARS},
        rq=mean_of("rq"),
        nps=stats.nps_interval(int(m["promoters"]), int(m["passives"]), int(m["detractors"])),
        csat=stats.csat_interval(int(m["csat_top2"]), int(m["csat_n"])),
        ces=mean_of("ces"),
    )


def headline(conn: Connection, flt: SegmentFilter = SegmentFilter()) -> Headline:
    """RQ, pillar means, NPS, CSAT and CES with n and 95% intervals for the filtered responses."""
    row = conn.execute(sa.select(*sufficient_statistics()).where(flt.response_clause())).one()
    return headline_from_row(row)


def trend(conn: Connection, flt: SegmentFilter = SegmentFilter(), freq: str = "month"):
    """Per month (or quarter): n and 95% interval of each pillar, RQ, NPS, CSAT and CES.

    Returns a tidy frame: period, metric, estimate, low, high, n.
    """
    import pandas as pd

    if freq not in ("month", "quarter"):
        raise ValueError(f"freq must be 'month' or 'quarter', not {freq!r}")
    period = sa.func.date_trunc(freq, R.c.submitted_at).label("period")
    rows = conn.execute(
        sa.select(period, *sufficient_statistics())
        .where(flt.response_clause())
        .group_by(period)
        .order_by(period)
    ).all()
    records = []
    for row in rows:
        head = headline_from_row(row)
        scores = {**head.pillars, "rq": head.rq, "csat": head.csat, "ces": head.ces}
        for name, interval in scores.items():
            records.append((row.period, name, interval.estimate, interval.low, interval.high, interval.n))
        records.append((row.period, "nps", head.nps.score, head.nps.low, head.nps.high, head.nps.n))
    frame = pd.DataFrame(records, columns=["period", "metric", "estimate", "low", "high", "n"])
    frame["period"] = pd.to_datetime(frame["period"])
    return frame
