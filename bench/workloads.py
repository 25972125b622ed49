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

from relq.core.instrument import configured_instrument
from relq.measures import metrics
from relq.store.filters import SegmentFilter
from relq.store.schema import PILLARS

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


def _grouped_sql(con, group: str, source: str, params=()) -> pd.DataFrame:
    """Every headline score (n, mean/score, sd) per group, in one hand-written query."""
    return con.execute(
        f"SELECT {group} AS grp, {HEADLINE_SELECT} FROM {source} GROUP BY 1 ORDER BY 1",  # noqa: S608
        list(params),
    ).df()


def _grouped_pandas(frame: pd.DataFrame, key) -> pd.DataFrame:
    """The same per-group scores with pandas."""
    g = frame.assign(
        promoter=frame["nps"] >= 9, detractor=frame["nps"] <= 6, top2=frame["csat"] >= 4
    ).groupby(key, dropna=False)
    agg = g.agg(
        responses=("nps", "size"),
        promoters=("promoter", "sum"),
        detractors=("detractor", "sum"),
        nps_n=("nps", "count"),
        top2=("top2", "sum"),
        csat_n=("csat", "count"),
        **{f"{name}_mean": (name, "mean") for name in SCORES},
        **{f"{name}_n": (name, "count") for name in SCORES},
        **{f"{name}_sd": (name, "std") for name in SCORES},
    )
    agg["nps"] = 100.0 * (agg["promoters"] - agg["detractors"]) / agg["nps_n"]
    agg["csat"] = 100.0 * agg["top2"] / agg["csat_n"]
    return agg.reset_index(names="grp")


def _group_figures(frame: pd.DataFrame, label) -> dict:
    out = {}
    for row in frame.itertuples():
        name = label(row.grp)
        out[f"{name}_trust"], out[f"{name}_trust_n"] = row.trust_mean, row.trust_n
        out[f"{name}_nps"], out[f"{name}_nps_n"] = row.nps, row.nps_n
        out[f"{name}_rq"], out[f"{name}_csat"] = row.rq_mean, row.csat
    return out


def trend_sql(con) -> dict:
    frame = _grouped_sql(con, "date_trunc('month', submitted_at)", "survey_responses")
    return {"periods": len(frame), **_group_figures(frame, lambda p: f"{p:%Y-%m}")}


def trend_pandas(f) -> dict:
    r = f["responses"]
    frame = _grouped_pandas(r, r["submitted_at"].dt.to_period("M"))
    return {"periods": len(frame), **_group_figures(frame, str)}


def _trend_figures(frame: pd.DataFrame) -> dict:
    """Per month: n and estimate of trust, NPS, RQ and CSAT."""
    out = {"periods": frame["period"].nunique()}
    for row in frame[frame["metric"].isin(["trust", "nps", "rq", "csat"])].itertuples():
        out[f"{row.period:%Y-%m}_{row.metric}"] = row.estimate
        if row.metric in ("trust", "nps"):
            out[f"{row.period:%Y-%m}_{row.metric}_n"] = row.n
    return out


def trend_relq(engine) -> dict:
    with engine.connect() as conn:
        return _trend_figures(metrics.trend(conn, SegmentFilter()))


# --------------------------------------------------------------------------- segments (region, plan)

SEGMENT_DIMENSIONS = ("region", "plan")


def segments_relq(engine) -> dict:
    from relq.measures.comparisons import segment_scores

    out = {}
    with engine.connect() as conn:
        for dim in SEGMENT_DIMENSIONS:
            frame = segment_scores(conn, SegmentFilter(), dim)
            for row in frame[frame["metric"].isin(["trust", "nps", "rq", "csat"])].itertuples():
                out[f"{dim}={row.value}_{row.metric}"] = row.estimate
                if row.metric in ("trust", "nps"):
                    out[f"{dim}={row.value}_{row.metric}_n"] = row.n
    return out


def segments_sql(con) -> dict:
    out = {}
    for dim in SEGMENT_DIMENSIONS:
        # The rest of each segment is the total minus the segment, as relq does: one query each.
        frame = _grouped_sql(
            con,
            f"coalesce(c.{dim}, '(no value)')",
            "survey_responses r LEFT JOIN customers c USING (customer_id)",
        )
        out.update(_group_figures(frame, lambda v, dim=dim: f"{dim}={v}"))
    return out


def segments_pandas(f) -> dict:
    r, c = f["responses"], f["customers"]
    out = {}
    for dim in SEGMENT_DIMENSIONS:
        joined = r.merge(c[["customer_id", dim]], on="customer_id", how="left")
        frame = _grouped_pandas(joined, joined[dim].fillna("(no value)"))
        out.update(_group_figures(frame, lambda v, dim=dim: f"{dim}={v}"))
    return out


# --------------------------------------------------------------------------- quadrants


def quadrants_relq(engine) -> dict:
    from relq.analyses.quadrants import quadrant_counts

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
    from relq.analyses.retention import cohort_activity

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
            months AS (SELECT DISTINCT customer_id, year(occurred_at) * 12 + month(occurred_at) - 1 AS m
                       FROM transactions),
            active AS (
              SELECT c.cohort, m.m - c.cohort AS k, count(*) AS active
              FROM months m JOIN cohort c USING (customer_id) WHERE m.m >= c.cohort GROUP BY 1, 2)
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


def _duration_figures(frame: pd.DataFrame) -> dict:
    return {
        "cells": len(frame),
        "customers": int(frame["weight"].sum()),
        "churned": int((frame["weight"] * frame["event"]).sum()),
        "days": int((frame["weight"] * frame["duration"]).sum()),
    }


def durations_relq(engine) -> dict:
    """The weighted duration/event table Kaplan–Meier is fitted on (relq.analyses.survival.duration_table)."""
    from relq.analyses.survival import duration_table

    with engine.connect() as conn:
        return _duration_figures(duration_table(conn, SegmentFilter()))


def durations_sql(con) -> dict:
    end = _data_end_sql(con)
    frame = con.execute(
        """WITH first AS (SELECT customer_id, min(occurred_at)::DATE AS first_at FROM transactions GROUP BY 1),
            life AS (
              SELECT coalesce(c.acquired_at, f.first_at) AS start_day,
                     CASE WHEN c.churned_at <= ? THEN 1 ELSE 0 END AS event,
                     CASE WHEN c.churned_at <= ? THEN c.churned_at ELSE ? END AS end_day
              FROM customers c FULL JOIN first f USING (customer_id))
           SELECT end_day - start_day AS duration, event, count(*) AS weight
           FROM life WHERE start_day <= ? AND end_day >= start_day GROUP BY 1, 2""",
        [end, end, end, end],
    ).df()
    return _duration_figures(frame)


def durations_pandas(f) -> dict:
    c, t = f["customers"], f["transactions"]
    end = pd.Timestamp(_data_end_pandas(f))
    first = t.groupby("customer_id")["occurred_at"].min().dt.normalize()
    life = c.set_index("customer_id")[["acquired_at", "churned_at"]].reindex(
        first.index.union(c["customer_id"])
    )
    start = life["acquired_at"].fillna(first.reindex(life.index))
    churned = life["churned_at"].notna() & (life["churned_at"] <= end)
    end_day = life["churned_at"].where(churned, end)
    table = pd.DataFrame({"duration": (end_day - start).dt.days, "event": churned.astype(int)})
    table = table[(start <= end) & (table["duration"] >= 0)]
    return _duration_figures(table.groupby(["duration", "event"]).size().rename("weight").reset_index())


# --------------------------------------------------------------------------- drivers


DRIVER_VARIABLES = (*PILLARS, "nps")
SAMPLE_SEED, SAMPLE_ROWS = "20240601", 20_000


def _driver_figures(moments: pd.DataFrame, sample: pd.DataFrame) -> dict:
    out = {"sample_rows": len(sample), "sample_trust_sum": float(sample["trust"].sum())}
    for row in moments.itertuples():
        out[f"{row.segment}_n"] = row.n
        out[f"{row.segment}_customers"] = row.customers
        out[f"{row.segment}_s0"] = row.s_0
        out[f"{row.segment}_c0_3"] = row.c_0_3
    return out


def drivers_relq(engine) -> dict:
    """The drivers page's inputs: item moments by region and the bootstrap sample."""
    from relq.analyses.drivers import moments, sample_rows

    with engine.connect() as conn:
        return _driver_figures(moments(conn, SegmentFilter(), "region"), sample_rows(conn, SegmentFilter()))


def drivers_sql(con) -> dict:
    cols = list(DRIVER_VARIABLES)
    complete = " AND ".join(f"r.{c} IS NOT NULL" for c in cols)
    sums = ", ".join(f"sum(r.{c}::DOUBLE) AS s_{i}" for i, c in enumerate(cols))
    cross = ", ".join(
        f"sum(r.{a}::DOUBLE * r.{b}) AS c_{i}_{j}"
        for i, a in enumerate(cols)
        for j, b in enumerate(cols)
        if j >= i
    )
    moments = con.execute(
        f"""SELECT coalesce(c.region, '(no value)') AS segment, count(*) AS n,
                   count(DISTINCT r.customer_id) AS customers, {sums}, {cross}
            FROM survey_responses r LEFT JOIN customers c USING (customer_id) WHERE {complete}
            GROUP BY 1"""  # noqa: S608
    ).df()
    sample = con.execute(
        f"""SELECT {", ".join(f"r.{c}" for c in cols)} FROM survey_responses r WHERE {complete}
            ORDER BY md5(r.response_id || ?) LIMIT ?""",  # noqa: S608
        [SAMPLE_SEED, SAMPLE_ROWS],
    ).df()
    return _driver_figures(moments, sample)


def drivers_pandas(f) -> dict:
    import hashlib

    r, c = f["responses"], f["customers"]
    cols = list(DRIVER_VARIABLES)
    r = r.dropna(subset=cols)
    joined = r.merge(c[["customer_id", "region"]], on="customer_id", how="left")
    joined["segment"] = joined["region"].fillna("(no value)")
    parts = {
        "n": joined.groupby("segment").size(),
        "customers": joined.groupby("segment")["customer_id"].nunique(),
    }
    for i, a in enumerate(cols):
        parts[f"s_{i}"] = joined.groupby("segment")[a].sum()
        for j in range(i, len(cols)):
            parts[f"c_{i}_{j}"] = (joined[a] * joined[cols[j]]).groupby(joined["segment"]).sum()
    moments = pd.DataFrame(parts).reset_index(names="segment")
    key = [hashlib.md5((rid + SAMPLE_SEED).encode()).hexdigest() for rid in r["response_id"]]
    sample = r.assign(_key=key).sort_values("_key").head(SAMPLE_ROWS)
    return _driver_figures(moments, sample)


# --------------------------------------------------------------------------- reliability (Measurement)


def _alpha(var_items: list[float], var_total: float) -> float:
    k = len(var_items)
    return k / (k - 1) * (1 - sum(var_items) / var_total)


def reliability_relq(engine) -> dict:
    from relq.measures.reliability import reliability

    with engine.connect() as conn:
        result = reliability(conn, SegmentFilter(), INSTRUMENT)
    out = {}
    for pillar, a in result.alpha.items():
        out[f"{pillar}_alpha"], out[f"{pillar}_n"] = a.alpha, a.n
    out["items_n"] = int(result.htmt["n"].iloc[0])
    out["r_trust_4_satisfaction_3"] = result.item_correlations.loc["trust_4", "satisfaction_3"]
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
    # The Measurement page also shows item statistics and HTMT: every item correlation over the
    # responses answering every item (reverse-coded), as relq's same query gives them.
    everything = " AND ".join(f'"{item.id}" IS NOT NULL' for item in INSTRUMENT.items)
    recoded_all = [_recoded_sql(item) for item in INSTRUMENT.items]
    select.append(f"count(*) FILTER (WHERE {everything})")
    pairs = [(i, j) for i in range(len(recoded_all)) for j in range(i + 1, len(recoded_all))]
    select += [f"corr({recoded_all[i]}, {recoded_all[j]}) FILTER (WHERE {everything})" for i, j in pairs]
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
    out["items_n"] = row[at]
    ids = INSTRUMENT.item_ids
    out["r_trust_4_satisfaction_3"] = row[
        at + 1 + pairs.index((ids.index("trust_4"), ids.index("satisfaction_3")))
    ]
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
    every = wide[INSTRUMENT.item_ids].dropna()
    for item in INSTRUMENT.items:
        if item.reverse:
            every[item.id] = INSTRUMENT.scale_min + INSTRUMENT.scale_max - every[item.id]
    corr = every.corr()
    out["items_n"] = len(every)
    out["r_trust_4_satisfaction_3"] = corr.loc["trust_4", "satisfaction_3"]
    return out


# --------------------------------------------------------------------------- report --json


def report_relq(engine) -> dict:
    from relq.outputs.report import build_report

    report = build_report(engine)
    out = {"responses": report["responses"], "nps": report["nps"]["score"]}
    out.update({f"{p}_alpha": report["pillars"][p]["alpha"] for p in PILLARS})
    out.update(report["quadrants"]["counts"])
    cohorts = report["cohorts"]
    out["cohorts"] = len(cohorts)
    out["cohort_customers"] = sum(c["size"] for c in cohorts.values())
    out["cohort_share_cells"] = sum(len(c["active_share"]) for c in cohorts.values())
    out["retention_at_start"] = report["retention"]["at_start"]
    out["retention_retained"] = report["retention"]["retained"]
    return out


def _last_complete_quarter(end: date) -> tuple[date, date]:
    """First and last day of the last calendar quarter the data cover to its end."""
    after = end + timedelta(days=1)
    start = date(after.year, 3 * ((after.month - 1) // 3) + 1, 1)  # the quarter holding the day after the end
    first = date(start.year - (start.month == 1), (start.month - 4) % 12 + 1, 1)
    return first, start - timedelta(days=1)


def retention_sql(con) -> dict:
    """The report's retention: customers active at the quarter's start, and those still active at its end."""
    first, last = _last_complete_quarter(_data_end_sql(con))
    at_start, retained = con.execute(
        """WITH first AS (SELECT customer_id, min(occurred_at)::DATE AS first_at FROM transactions GROUP BY 1),
            life AS (SELECT coalesce(c.acquired_at, f.first_at) AS start_day, c.churned_at
                     FROM customers c FULL JOIN first f USING (customer_id))
           SELECT count(*) FILTER (WHERE start_day < ? AND (churned_at IS NULL OR churned_at >= ?)),
                  count(*) FILTER (WHERE start_day < ? AND (churned_at IS NULL OR churned_at > ?))
           FROM life""",
        [first, first, first, last],
    ).fetchone()
    return {"retention_at_start": at_start, "retention_retained": retained}


def retention_pandas(f) -> dict:
    c, t = f["customers"], f["transactions"]
    first, last = _last_complete_quarter(_data_end_pandas(f))
    bought = t.groupby("customer_id")["occurred_at"].min().dt.normalize()
    life = c.set_index("customer_id")[["acquired_at", "churned_at"]].reindex(
        bought.index.union(c["customer_id"])
    )
    start = pd.to_datetime(life["acquired_at"]).fillna(bought.reindex(life.index))
    churned = pd.to_datetime(life["churned_at"])
    before = start < pd.Timestamp(first)
    at_start = before & (churned.isna() | (churned >= pd.Timestamp(first)))
    retained = before & (churned.isna() | (churned > pd.Timestamp(last)))
    return {"retention_at_start": int(at_start.sum()), "retention_retained": int(retained.sum())}


def _report_from(headline: dict, reliability: dict, quadrants: dict, cohorts: dict, kept: dict) -> dict:
    out = {"responses": headline["responses"], "nps": headline["nps"]}
    out.update({f"{p}_alpha": reliability[f"{p}_alpha"] for p in PILLARS})
    out.update(quadrants)
    sizes = [v for k, v in cohorts.items() if k.endswith("_size")]
    out["cohorts"], out["cohort_customers"], out["cohort_share_cells"] = (
        len(sizes),
        sum(sizes),
        cohorts["cells"],
    )
    out.update(kept)
    return out


def report_sql(con) -> dict:
    return _report_from(
        headline_sql(con), reliability_sql(con), quadrants_sql(con), cohorts_sql(con), retention_sql(con)
    )


def report_pandas(f) -> dict:
    return _report_from(
        headline_pandas(f),
        reliability_pandas(f),
        quadrants_pandas(f),
        cohorts_pandas(f),
        retention_pandas(f),
    )


WORKLOADS: tuple[Workload, ...] = (
    Workload("headline", "Overview / report", headline_relq, headline_sql, headline_pandas),
    Workload(
        "headline filtered",
        "Overview (12 months, EMEA, Growth+Enterprise)",
        headline_filtered_relq,
        headline_filtered_sql,
        headline_filtered_pandas,
    ),
    Workload("trend by month", "Overview", trend_relq, trend_sql, trend_pandas),
    Workload("segments by region and plan", "Segments", segments_relq, segments_sql, segments_pandas),
    Workload("quadrant counts", "Quadrants / report", quadrants_relq, quadrants_sql, quadrants_pandas),
    Workload("cohorts", "Retention / report", cohorts_relq, cohorts_sql, cohorts_pandas),
    Workload("KM duration table", "Retention", durations_relq, durations_sql, durations_pandas),
    Workload("drivers inputs", "Drivers", drivers_relq, drivers_sql, drivers_pandas),
    Workload(
        "reliability and item correlations",
        "Measurement / report",
        reliability_relq,
        reliability_sql,
        reliability_pandas,
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
