"""The benchmark workloads: each page's numbers three ways — relq, hand-written DuckDB SQL, pandas.

Every implementation returns a flat dict of the same figures, so the harness can check that the
three agree before it trusts any timing. The relq side calls exactly what the pages and the CLI
call; the SQL side is what a competent analyst would write by hand against the same file; the
pandas side works on the tables loaded in memory (load time is measured separately).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from relq import metrics
from relq.filters import SegmentFilter
from relq.instrument import configured_instrument
from relq.schema import PILLARS

__all__ = ["Workload", "WORKLOADS", "load_frames", "FRAME_TABLES"]

INSTRUMENT = configured_instrument()
SCORES = (*PILLARS, "rq", "ces")


@dataclass(frozen=True)
class Workload:
    name: str
    page: str
    relq: Callable  # (engine) -> dict
    sql: Callable  # (duckdb connection) -> dict
    pandas: Callable  # (frames dict) -> dict


# Tables (and columns) the pandas side loads into memory.
FRAME_TABLES = {
    "responses": "SELECT response_id, customer_id, submitted_at, nps, csat, ces, trust, commitment, "
    "satisfaction, rq FROM survey_responses",
    "customers": "SELECT customer_id, region, plan, acquired_at, churned_at FROM customers",
    "transactions": "SELECT customer_id, occurred_at, amount FROM transactions",
    "answers": "SELECT response_id, item_id, value FROM survey_answers",
}


def load_frames(con) -> dict[str, pd.DataFrame]:
    return {name: con.execute(query).df() for name, query in FRAME_TABLES.items()}


def _data_end_sql(con) -> date:
    row = con.execute(
        "SELECT greatest((SELECT max(occurred_at) FROM transactions), (SELECT max(submitted_at) "
        "FROM survey_responses), (SELECT max(opened_at) FROM tickets))"
    ).fetchone()
    return pd.Timestamp(row[0]).date()


# --------------------------------------------------------------------------- headline (Overview)


def _headline_figures(h: metrics.Headline) -> dict:
    out = {"responses": h.responses, "nps": h.nps.score, "nps_n": h.nps.n, "csat": h.csat.estimate}
    for name in PILLARS:
        out[f"{name}_mean"] = h.pillars[name].estimate
        out[f"{name}_n"] = h.pillars[name].n
    out["rq_mean"], out["ces_mean"] = h.rq.estimate, h.ces.estimate
    return out


def headline_relq(engine, flt=SegmentFilter()) -> dict:
    with engine.connect() as conn:
        return _headline_figures(metrics.headline(conn, flt))


HEADLINE_SELECT = """
    count(*) AS responses,
    100.0 * (count(*) FILTER (WHERE nps >= 9) - count(*) FILTER (WHERE nps <= 6)) / count(nps) AS nps,
    count(nps) AS nps_n,
    100.0 * count(*) FILTER (WHERE csat >= 4) / count(csat) AS csat,
    avg(trust) AS trust_mean, count(trust) AS trust_n,
    avg(commitment) AS commitment_mean, count(commitment) AS commitment_n,
    avg(satisfaction) AS satisfaction_mean, count(satisfaction) AS satisfaction_n,
    avg(rq) AS rq_mean, avg(ces) AS ces_mean,
    stddev_samp(trust), stddev_samp(commitment), stddev_samp(satisfaction), stddev_samp(rq),
    stddev_samp(ces)
"""


def _row_dict(cursor) -> dict:
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


def headline_sql(con) -> dict:
    row = _row_dict(con.execute(f"SELECT {HEADLINE_SELECT} FROM survey_responses"))  # noqa: S608
    return {k: v for k, v in row.items() if not k.startswith("stddev")}


def _headline_pandas(r: pd.DataFrame) -> dict:
    out = {
        "responses": len(r),
        "nps": 100.0 * ((r["nps"] >= 9).sum() - (r["nps"] <= 6).sum()) / r["nps"].count(),
        "nps_n": r["nps"].count(),
        "csat": 100.0 * (r["csat"] >= 4).sum() / r["csat"].count(),
    }
    described = r[list(SCORES)].agg(["mean", "count", "std"])
    for name in PILLARS:
        out[f"{name}_mean"] = described.loc["mean", name]
        out[f"{name}_n"] = described.loc["count", name]
    out["rq_mean"], out["ces_mean"] = described.loc["mean", "rq"], described.loc["mean", "ces"]
    return out


def headline_pandas(f) -> dict:
    return _headline_pandas(f["responses"])


# A typical executive filter: the last 12 months in EMEA on Growth and Enterprise plans.
FILTER_SINCE, FILTER_UNTIL = date(2025, 11, 1), date(2026, 10, 31)
FILTERED = SegmentFilter(
    since=FILTER_SINCE,
    until=FILTER_UNTIL,
    customer=(("region", ("EMEA",)), ("plan", ("Growth", "Enterprise"))),
)


def headline_filtered_relq(engine) -> dict:
    return headline_relq(engine, FILTERED)


def headline_filtered_sql(con) -> dict:
    row = _row_dict(
        con.execute(
            f"""SELECT {HEADLINE_SELECT} FROM survey_responses r JOIN customers c USING (customer_id)
                WHERE r.submitted_at >= ? AND r.submitted_at < ? AND c.region = 'EMEA'
                  AND c.plan IN ('Growth', 'Enterprise')""",  # noqa: S608
            [FILTER_SINCE, FILTER_UNTIL + timedelta(days=1)],
        )
    )
    return {k: v for k, v in row.items() if not k.startswith("stddev")}


def headline_filtered_pandas(f) -> dict:
    r, c = f["responses"], f["customers"]
    keep = c.loc[(c["region"] == "EMEA") & c["plan"].isin(["Growth", "Enterprise"]), "customer_id"]
    at = r["submitted_at"]
    part = r[
        (at >= pd.Timestamp(FILTER_SINCE))
        & (at < pd.Timestamp(FILTER_UNTIL + timedelta(days=1)))
        & r["customer_id"].isin(keep)
    ]
    return _headline_pandas(part)


# --------------------------------------------------------------------------- trend (Overview)


def _trend_figures(frame: pd.DataFrame) -> dict:
    """Per month: n and estimate of trust and NPS."""
    out = {"periods": frame["period"].nunique()}
    for row in frame[frame["metric"].isin(["trust", "nps"])].itertuples():
        out[f"{row.period:%Y-%m}_{row.metric}"] = row.estimate
        out[f"{row.period:%Y-%m}_{row.metric}_n"] = row.n
    return out


def trend_relq(engine) -> dict:
    with engine.connect() as conn:
        return _trend_figures(metrics.trend(conn, SegmentFilter()))


def trend_sql(con) -> dict:
    rows = con.execute(
        "SELECT date_trunc('month', submitted_at) AS period, avg(trust), count(trust), "
        "100.0 * (count(*) FILTER (WHERE nps >= 9) - count(*) FILTER (WHERE nps <= 6)) / count(nps), "
        "count(nps), stddev_samp(trust) FROM survey_responses GROUP BY 1 ORDER BY 1"
    ).fetchall()
    out = {"periods": len(rows)}
    for period, trust, trust_n, nps, nps_n, _ in rows:
        out[f"{period:%Y-%m}_trust"], out[f"{period:%Y-%m}_trust_n"] = trust, trust_n
        out[f"{period:%Y-%m}_nps"], out[f"{period:%Y-%m}_nps_n"] = nps, nps_n
    return out


def trend_pandas(f) -> dict:
    r = f["responses"]
    month = r["submitted_at"].dt.to_period("M")
    g = r.assign(promoter=r["nps"] >= 9, detractor=r["nps"] <= 6).groupby(month)
    agg = g.agg(
        trust=("trust", "mean"),
        trust_n=("trust", "count"),
        trust_sd=("trust", "std"),
        promoters=("promoter", "sum"),
        detractors=("detractor", "sum"),
        nps_n=("nps", "count"),
    )
    out = {"periods": len(agg)}
    for period, row in agg.iterrows():
        month = str(period)
        out[f"{month}_trust"], out[f"{month}_trust_n"] = row.trust, row.trust_n
        out[f"{month}_nps"] = 100.0 * (row.promoters - row.detractors) / row.nps_n
        out[f"{month}_nps_n"] = row.nps_n
    return out


# --------------------------------------------------------------------------- segments (region, plan)

SEGMENT_DIMENSIONS = ("region", "plan")


def segments_relq(engine) -> dict:
    from relq.comparisons import segment_scores

    out = {}
    with engine.connect() as conn:
        for dim in SEGMENT_DIMENSIONS:
            frame = segment_scores(conn, SegmentFilter(), dim)
            for row in frame[frame["metric"].isin(["trust", "nps"])].itertuples():
                out[f"{dim}={row.value}_{row.metric}"] = row.estimate
                out[f"{dim}={row.value}_{row.metric}_n"] = row.n
    return out


def segments_sql(con) -> dict:
    out = {}
    for dim in SEGMENT_DIMENSIONS:
        rows = con.execute(
            f"""SELECT coalesce(c.{dim}, '(no value)') AS value, grouping(c.{dim}) AS total,
                   avg(trust), count(trust), stddev_samp(trust),
                   count(*) FILTER (WHERE nps >= 9), count(*) FILTER (WHERE nps <= 6), count(nps)
                FROM survey_responses r LEFT JOIN customers c USING (customer_id)
                GROUP BY ROLLUP (c.{dim})"""  # noqa: S608
        ).fetchall()
        for value, total, trust, trust_n, _, p, d, n in rows:
            if total:
                continue  # the rest of each segment = total − segment, as relq does
            out[f"{dim}={value}_trust"], out[f"{dim}={value}_trust_n"] = trust, trust_n
            out[f"{dim}={value}_nps"], out[f"{dim}={value}_nps_n"] = 100.0 * (p - d) / n, n
    return out


def segments_pandas(f) -> dict:
    r, c = f["responses"], f["customers"]
    out = {}
    for dim in SEGMENT_DIMENSIONS:
        joined = r.merge(c[["customer_id", dim]], on="customer_id", how="left")
        joined[dim] = joined[dim].fillna("(no value)")
        g = joined.assign(promoter=joined["nps"] >= 9, detractor=joined["nps"] <= 6).groupby(dim)
        agg = g.agg(
            trust=("trust", "mean"),
            trust_n=("trust", "count"),
            trust_sd=("trust", "std"),
            promoters=("promoter", "sum"),
            detractors=("detractor", "sum"),
            nps_n=("nps", "count"),
        )
        for value, row in agg.iterrows():
            out[f"{dim}={value}_trust"], out[f"{dim}={value}_trust_n"] = row.trust, row.trust_n
            out[f"{dim}={value}_nps"] = 100.0 * (row.promoters - row.detractors) / row.nps_n
            out[f"{dim}={value}_nps_n"] = row.nps_n
    return out


# --------------------------------------------------------------------------- quadrants


def quadrants_relq(engine) -> dict:
    from relq.quadrants import quadrant_counts

    with engine.connect() as conn:
        return quadrant_counts(conn, SegmentFilter())


QUADRANT_CASE = """CASE WHEN x >= 50 AND y >= 50 THEN 'x_high_y_high' WHEN x >= 50 THEN 'x_high_y_low'
                        WHEN y >= 50 THEN 'x_low_y_high' ELSE 'x_low_y_low' END"""


def quadrants_sql(con) -> dict:
    rows = con.execute(
        f"""WITH latest AS (
              SELECT customer_id,
                     arg_max(trust, (submitted_at, response_id)) AS x,
                     arg_max(satisfaction, (submitted_at, response_id)) AS y
              FROM survey_responses
              WHERE customer_id IS NOT NULL AND trust IS NOT NULL AND satisfaction IS NOT NULL
              GROUP BY customer_id)
            SELECT {QUADRANT_CASE} AS q, count(*) FROM latest GROUP BY q"""  # noqa: S608
    ).fetchall()
    out = dict.fromkeys(("x_high_y_high", "x_high_y_low", "x_low_y_high", "x_low_y_low"), 0)
    out.update(dict(rows))
    return out


def quadrants_pandas(f) -> dict:
    r = f["responses"]
    r = r[r["customer_id"].notna() & r["trust"].notna() & r["satisfaction"].notna()]
    latest = r.sort_values(["submitted_at", "response_id"]).drop_duplicates("customer_id", keep="last")
    x, y = latest["trust"] >= 50, latest["satisfaction"] >= 50
    key = np.select([x & y, x, y], ["x_high_y_high", "x_high_y_low", "x_low_y_high"], "x_low_y_low")
    out = dict.fromkeys(("x_high_y_high", "x_high_y_low", "x_low_y_high", "x_low_y_low"), 0)
    out.update(pd.Series(key).value_counts().to_dict())
    return out


# --------------------------------------------------------------------------- cohorts (Retention)


def _cohort_figures(frame: pd.DataFrame) -> dict:
    out = {"cells": len(frame), "active_total": int(frame["active"].sum())}
    for row in frame[frame["k"].isin([0, 3, 12])].itertuples():
        out[f"{row.cohort}_size"] = row.size
        out[f"{row.cohort}_k{row.k}"] = row.share
    return out


def cohorts_relq(engine) -> dict:
    from relq.retention import cohort_activity

    with engine.connect() as conn:
        return _cohort_figures(cohort_activity(conn, SegmentFilter()))


def cohorts_sql(con) -> dict:
    end = _data_end_sql(con)
    rows = con.execute(
        """WITH first AS (SELECT customer_id, min(occurred_at) AS first_at FROM transactions GROUP BY 1),
            life AS (
              SELECT coalesce(c.customer_id, f.customer_id) AS customer_id,
                     coalesce(c.acquired_at, f.first_at::DATE) AS start_day
              FROM customers c FULL JOIN first f USING (customer_id)),
            cohort AS (SELECT customer_id, year(start_day) * 12 + month(start_day) - 1 AS cohort
                       FROM life WHERE start_day <= ?),
            sizes AS (SELECT cohort, count(*) AS size FROM cohort GROUP BY 1),
            active AS (
              SELECT c.cohort, year(t.occurred_at) * 12 + month(t.occurred_at) - 1 - c.cohort AS k,
                     count(DISTINCT t.customer_id) AS active
              FROM transactions t JOIN cohort c USING (customer_id) GROUP BY 1, 2 HAVING k >= 0)
           SELECT s.cohort, a.k, s.size, a.active FROM sizes s LEFT JOIN active a USING (cohort)""",
        [end],
    ).df()
    return _cohort_frame(rows, end)


def _cohort_frame(rows: pd.DataFrame, end: date) -> dict:
    """The same full grid relq returns (zeros where nobody bought), from (cohort, k, size, active)."""
    last = end.year * 12 + end.month - 1
    sizes = rows.groupby("cohort")["size"].first()
    grid = pd.DataFrame(
        [(c, k, s) for c, s in sizes.items() for k in range(last - int(c) + 1)],
        columns=["cohort", "k", "size"],
    )
    active = rows.dropna(subset=["k"]).astype({"k": int})[["cohort", "k", "active"]]
    frame = grid.merge(active, on=["cohort", "k"], how="left").fillna({"active": 0})
    frame["share"] = frame["active"] / frame["size"]
    frame["cohort"] = frame["cohort"].map(lambda i: f"{int(i) // 12:04d}-{int(i) % 12 + 1:02d}")
    return _cohort_figures(frame)


def cohorts_pandas(f) -> dict:
    c, t = f["customers"], f["transactions"]
    end = _data_end_pandas(f)
    first = t.groupby("customer_id")["occurred_at"].min().dt.normalize()
    life = c.set_index("customer_id")["acquired_at"].reindex(first.index.union(c["customer_id"]))
    start = life.fillna(first.reindex(life.index))
    start = start[start <= pd.Timestamp(end)]
    cohort = start.dt.year * 12 + start.dt.month - 1
    month = t["occurred_at"].dt.year * 12 + t["occurred_at"].dt.month - 1
    tc = pd.DataFrame({"customer_id": t["customer_id"], "cohort": t["customer_id"].map(cohort)})
    tc["k"] = month - tc["cohort"]
    tc = tc[tc["k"] >= 0].drop_duplicates(["customer_id", "cohort", "k"])
    active = tc.groupby(["cohort", "k"]).size().rename("active").reset_index()
    sizes = cohort.value_counts().rename("size").rename_axis("cohort").reset_index()
    rows = sizes.merge(active, on="cohort", how="left")
    return _cohort_frame(rows, end)


def _data_end_pandas(f) -> date:
    return max(f["transactions"]["occurred_at"].max(), f["responses"]["submitted_at"].max()).date()


# --------------------------------------------------------------------------- survival (Retention)


def lifetimes_relq(engine) -> dict:
    """The durations and events Kaplan–Meier needs (contract basis), fetched as relq fetches them."""
    from relq.retention import churn_basis, lifetimes

    with engine.connect() as conn:
        basis = churn_basis(conn)
        frame = pd.DataFrame(conn.execute(lifetimes(SegmentFilter(), basis)).fetchall())
    days = (pd.to_datetime(frame["end_day"]) - pd.to_datetime(frame["start_day"])).dt.days
    return {"customers": len(frame), "churned": int(frame["churned"].sum()), "days": int(days.sum())}


def lifetimes_sql(con) -> dict:
    end = _data_end_sql(con)
    row = con.execute(
        """WITH first AS (SELECT customer_id, min(occurred_at)::DATE AS first_at FROM transactions GROUP BY 1),
            life AS (
              SELECT coalesce(c.acquired_at, f.first_at) AS start_day,
                     c.churned_at IS NOT NULL AND c.churned_at <= ? AS churned,
                     CASE WHEN c.churned_at <= ? THEN c.churned_at ELSE ? END AS end_day
              FROM customers c FULL JOIN first f USING (customer_id))
           SELECT count(*), count(*) FILTER (WHERE churned), sum(end_day - start_day)
           FROM life WHERE start_day <= ?""",
        [end, end, end, end],
    ).fetchone()
    return {"customers": row[0], "churned": row[1], "days": int(row[2])}


def lifetimes_pandas(f) -> dict:
    c, t = f["customers"], f["transactions"]
    end = pd.Timestamp(_data_end_pandas(f))
    first = t.groupby("customer_id")["occurred_at"].min().dt.normalize()
    life = c.set_index("customer_id")[["acquired_at", "churned_at"]].reindex(
        first.index.union(c["customer_id"])
    )
    start = life["acquired_at"].fillna(first.reindex(life.index))
    churned = life["churned_at"].notna() & (life["churned_at"] <= end)
    end_day = life["churned_at"].where(churned, end)
    keep = start <= end
    return {
        "customers": int(keep.sum()),
        "churned": int(churned[keep].sum()),
        "days": int((end_day[keep] - start[keep]).dt.days.sum()),
    }


# --------------------------------------------------------------------------- reliability (Measurement)


def _alpha(var_items: list[float], var_total: float) -> float:
    k = len(var_items)
    return k / (k - 1) * (1 - sum(var_items) / var_total)


def reliability_relq(engine) -> dict:
    from relq.reliability import reliability

    with engine.connect() as conn:
        result = reliability(conn, SegmentFilter(), INSTRUMENT)
    out = {}
    for pillar, a in result.alpha.items():
        out[f"{pillar}_alpha"], out[f"{pillar}_n"] = a.alpha, a.n
    return out


def _recoded_sql(item) -> str:
    column = f'"{item.id}"'
    return f"({INSTRUMENT.scale_min + INSTRUMENT.scale_max:g} - {column})" if item.reverse else column


def reliability_sql(con) -> dict:
    pivot = ", ".join(
        f"max(value) FILTER (WHERE item_id = '{item.id}') AS \"{item.id}\"" for item in INSTRUMENT.items
    )
    select = []
    for pillar in PILLARS:
        items = INSTRUMENT.items_of(pillar)
        complete = " AND ".join(f'"{item.id}" IS NOT NULL' for item in items)
        recoded = [_recoded_sql(item) for item in items]
        select.append(f"count(*) FILTER (WHERE {complete})")
        select += [f"var_samp({x}) FILTER (WHERE {complete})" for x in recoded]
        select.append(f"var_samp({' + '.join(recoded)}) FILTER (WHERE {complete})")
    row = con.execute(
        f"WITH wide AS (SELECT response_id, {pivot} FROM survey_answers GROUP BY response_id) "  # noqa: S608
        f"SELECT {', '.join(select)} FROM wide"
    ).fetchone()
    out, at = {}, 0
    for pillar in PILLARS:
        k = len(INSTRUMENT.items_of(pillar))
        n, variances, total = row[at], row[at + 1 : at + 1 + k], row[at + 1 + k]
        out[f"{pillar}_alpha"], out[f"{pillar}_n"] = _alpha(list(variances), total), n
        at += k + 2
    return out


def reliability_pandas(f) -> dict:
    wide = f["answers"].pivot(index="response_id", columns="item_id", values="value")
    out = {}
    for pillar in PILLARS:
        items = INSTRUMENT.items_of(pillar)
        block = wide[[item.id for item in items]].dropna()
        for item in items:
            if item.reverse:
                block[item.id] = INSTRUMENT.scale_min + INSTRUMENT.scale_max - block[item.id]
        out[f"{pillar}_alpha"] = _alpha(list(block.var()), block.sum(axis=1).var())
        out[f"{pillar}_n"] = len(block)
    return out


# --------------------------------------------------------------------------- report --json


def report_relq(engine) -> dict:
    from relq.report import build_report

    report = build_report(engine)
    out = {"responses": report["responses"], "nps": report["nps"]["score"]}
    out.update({f"{p}_alpha": report["pillars"][p]["alpha"] for p in PILLARS})
    out.update(report["quadrants"]["counts"])
    return out


def _report_from(headline: dict, reliability: dict, quadrants: dict) -> dict:
    out = {"responses": headline["responses"], "nps": headline["nps"]}
    out.update({f"{p}_alpha": reliability[f"{p}_alpha"] for p in PILLARS})
    out.update(quadrants)
    return out


def report_sql(con) -> dict:
    return _report_from(headline_sql(con), reliability_sql(con), quadrants_sql(con))


def report_pandas(f) -> dict:
    return _report_from(headline_pandas(f), reliability_pandas(f), quadrants_pandas(f))


WORKLOADS: tuple[Workload, ...] = (
    Workload("headline", "Overview / report", headline_relq, headline_sql, headline_pandas),
    Workload(
        "headline, filtered",
        "Overview (12 months, EMEA, Growth+Enterprise)",
        headline_filtered_relq,
        headline_filtered_sql,
        headline_filtered_pandas,
    ),
    Workload("trend by month", "Overview", trend_relq, trend_sql, trend_pandas),
    Workload("segments: region, plan", "Segments", segments_relq, segments_sql, segments_pandas),
    Workload("quadrant counts", "Quadrants / report", quadrants_relq, quadrants_sql, quadrants_pandas),
    Workload("cohorts", "Retention / report", cohorts_relq, cohorts_sql, cohorts_pandas),
    Workload("KM durations", "Retention", lifetimes_relq, lifetimes_sql, lifetimes_pandas),
    Workload(
        "reliability (alpha)", "Measurement / report", reliability_relq, reliability_sql, reliability_pandas
    ),
    Workload("report --json", "CLI", report_relq, report_sql, report_pandas),
)


def engine_for(url: str):
    from relq import store

    return store.get_engine(url)


def raw_duckdb(engine):
    """The DuckDB connection under ``engine`` (same database instance, same buffer cache)."""
    raw = engine.raw_connection()
    return raw, raw.driver_connection
