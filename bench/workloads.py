"""The benchmark workloads: each page's numbers three ways — relq, hand-written DuckDB SQL, pandas.

Every implementation returns a flat dict of the same figures, so the harness can check that the
three agree before it trusts any timing. The relq side calls exactly what the pages and the CLI
call; the SQL side is what a competent analyst would write by hand against the same file; the
pandas side works on the tables loaded in memory (load time is measured separately). Survey
scores are customer-clustered on every side: per customer first, then over customers, the same
interval arithmetic on the resulting sums.
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


# --------------------------------------------------------------------------- customer-clustered sums
#
# Every survey score's interval treats each customer as a cluster (an unmatched response is one of
# its own): per customer first (n_c, Σy), then over customers (C, ΣW, ΣS, ΣW², ΣWS, ΣS²), then
# var = C/(C−1)·(SS − 2ȳ·WS + ȳ²·WW)/W², a t-interval on C − 1 df for means, Wilson (CSAT) and
# adjusted Wald (NPS) on the effective n. The SQL and pandas sides below compute exactly that by
# hand; the finishing arithmetic on a dozen sums is the same few lines for both.

CLUSTER_SCORES = (*SCORES, "nps", "csat")
_SHIFT = {**{name: 50.0 for name in (*PILLARS, "rq")}, "ces": 4.0, "nps": 0.0, "csat": 0.0}


def _per_customer_sql(group: str | None) -> str:
    """SELECT list of the per-customer level (group, customer, lone response, n and Σ per score)."""
    cols = [f"{group} AS grp"] if group else []
    cols += [
        "r.customer_id",
        "CASE WHEN r.customer_id IS NULL THEN r.response_id END AS lone",
        "count(*) AS responses",
    ]
    for name in SCORES:
        cols += [
            f"count(r.{name}) AS {name}_n",
            f"coalesce(sum(r.{name}::DOUBLE - {_SHIFT[name]}), 0) AS {name}_s",
        ]
    cols += [
        "count(r.nps) AS nps_n",
        "count(*) FILTER (WHERE r.nps >= 9)::DOUBLE - count(*) FILTER (WHERE r.nps <= 6) AS nps_s",
        "count(*) FILTER (WHERE r.nps >= 9) AS nps_p",
        "count(*) FILTER (WHERE r.nps <= 6) AS nps_d",
        "count(r.csat) AS csat_n",
        "count(*) FILTER (WHERE r.csat >= 4)::DOUBLE AS csat_s",
    ]
    return ", ".join(cols)


def _over_customers_sql() -> str:
    cols = ["sum(responses) AS responses", "count(customer_id) AS customers"]
    for name in CLUSTER_SCORES:
        n, s = f"{name}_n", f"{name}_s"
        cols += [
            f"count(*) FILTER (WHERE {n} > 0) AS {name}_C",
            f"sum({n})::DOUBLE AS {name}_W",
            f"sum({s}) AS {name}_S",
            f"sum({n}::DOUBLE * {n}) AS {name}_WW",
            f"sum({n} * {s}) AS {name}_WS",
            f"sum({s} * {s}) AS {name}_SS",
        ]
    cols += ["sum(nps_p)::DOUBLE AS nps_P", "sum(nps_d)::DOUBLE AS nps_D"]
    return ", ".join(cols)


def clustered_sql(
    con, source: str, where: str = "TRUE", group: str | None = None, rollup: bool = False, params=()
):
    """Every score's sums over customers per group, in one hand-written two-level query."""
    grp_out = "grp, " if group else ""
    grouping = ""
    if group:
        grouping = "GROUP BY ROLLUP (grp)" if rollup else "GROUP BY grp"
    total = ", grouping(grp) AS is_total" if group and rollup else ""
    return con.execute(
        f"""WITH per AS (SELECT {_per_customer_sql(group)} FROM {source} WHERE {where} GROUP BY ALL)
            SELECT {grp_out}{_over_customers_sql()}{total} FROM per {grouping}""",  # noqa: S608
        list(params),
    ).df()


def clustered_pandas(frame: pd.DataFrame, group: pd.Series | None = None) -> pd.DataFrame:
    """The same sums with pandas: group by customer (each unmatched response alone), then over customers."""
    r = frame
    lone = r["response_id"].where(r["customer_id"].isna(), "")
    cols = {"responses": pd.Series(1, index=r.index)}
    for name in SCORES:
        cols[f"{name}_n"] = r[name].notna().astype(int)
        cols[f"{name}_s"] = (r[name] - _SHIFT[name]).fillna(0.0)
    cols["nps_n"] = r["nps"].notna().astype(int)
    cols["nps_p"] = (r["nps"] >= 9).astype(int)
    cols["nps_d"] = (r["nps"] <= 6).astype(int)
    cols["nps_s"] = (cols["nps_p"] - cols["nps_d"]).astype(float)
    cols["csat_n"] = r["csat"].notna().astype(int)
    cols["csat_s"] = (r["csat"] >= 4).astype(float)
    keys = [r["customer_id"].fillna(""), lone]
    if group is not None:
        keys = [group, *keys]
    per = pd.DataFrame(cols).groupby(keys, dropna=False, sort=False).sum()
    per["customer"] = (per.index.get_level_values(-2) != "").astype(int)
    out = {"responses": "responses", "customers": "customer"}
    parts = {"responses": per["responses"], "customers": per["customer"]}
    for name in CLUSTER_SCORES:
        n, s = per[f"{name}_n"].astype(float), per[f"{name}_s"]
        parts[f"{name}_C"] = (n > 0).astype(int)
        parts[f"{name}_W"], parts[f"{name}_S"] = n, s
        parts[f"{name}_WW"], parts[f"{name}_WS"], parts[f"{name}_SS"] = n * n, n * s, s * s
    parts["nps_P"], parts["nps_D"] = per["nps_p"].astype(float), per["nps_d"].astype(float)
    table = pd.DataFrame(parts)
    del out
    if group is None:
        return table.sum().to_frame().T
    return table.groupby(level=0, sort=True).sum().reset_index(names="grp")


def _interval(m: dict, name: str) -> tuple[float, float, float, float, float]:
    """(estimate, low, high, var, n_eff) of one score from its sums over customers."""
    from scipy import stats as sps

    c, w, s = float(m[f"{name}_C"]), float(m[f"{name}_W"]), float(m[f"{name}_S"])
    if w <= 0:
        return (np.nan,) * 5
    ybar = s / w
    t2 = max(
        0.0, float(m[f"{name}_SS"]) - 2 * ybar * float(m[f"{name}_WS"]) + ybar * ybar * float(m[f"{name}_WW"])
    )
    var = c / (c - 1) * t2 / (w * w) if c > 1 else np.nan
    if name in SCORES:
        half = sps.t.ppf(0.975, c - 1) * np.sqrt(var)
        mean = _SHIFT[name] + ybar
        return mean, mean - half, mean + half, var, np.nan
    z = sps.norm.ppf(0.975)
    if name == "csat":
        p, d = ybar, 0.0
        u = p * (1 - p)
    else:
        p, d = float(m["nps_P"]) / w, float(m["nps_D"]) / w
        u = p + d - (p - d) ** 2
    deff = var / (u / (w - 1)) if u > 0 else np.nan
    n_eff = w if not deff > 1 + 1e-12 else w / deff
    if name == "csat":
        z2n = z * z / n_eff
        centre = (p + z2n / 2) / (1 + z2n)
        half = z * np.sqrt(p * (1 - p) / n_eff + z2n / (4 * n_eff)) / (1 + z2n)
        return 100 * p, 100 * max(0.0, centre - half), 100 * min(1.0, centre + half), var, n_eff
    ns = n_eff + 3
    ps, ds = (p * n_eff + 0.75) / ns, (d * n_eff + 0.75) / ns
    half = z * np.sqrt((ps + ds - (ps - ds) ** 2) / ns)
    return 100 * (p - d), 100 * (ps - ds - half), 100 * (ps - ds + half), var, n_eff


def _clustered_figures(m: dict, prefix: str = "") -> dict:
    out = {f"{prefix}responses": int(m["responses"])}
    for name in ("trust", "rq", "ces", "nps", "csat"):
        est, low, high, _var, n_eff = _interval(m, name)
        out[f"{prefix}{name}"], out[f"{prefix}{name}_low"], out[f"{prefix}{name}_high"] = est, low, high
        out[f"{prefix}{name}_n"], out[f"{prefix}{name}_customers"] = int(m[f"{name}_W"]), int(m[f"{name}_C"])
        if name == "nps":
            out[f"{prefix}nps_n_eff"] = n_eff
    return out


def _headline_figures(h: metrics.Headline) -> dict:
    out = {"responses": h.responses}
    for name in ("trust", "rq", "ces", "nps", "csat"):
        s = h.score(name)
        out[name], out[f"{name}_low"], out[f"{name}_high"] = s.estimate, s.low, s.high
        out[f"{name}_n"], out[f"{name}_customers"] = s.n, s.customers
    out["nps_n_eff"] = h.nps.n_eff
    return out


def headline_relq(engine, flt=SegmentFilter()) -> dict:
    with engine.connect() as conn:
        return _headline_figures(metrics.headline(conn, flt))


def headline_sql(con) -> dict:
    return _clustered_figures(clustered_sql(con, "survey_responses r").iloc[0].to_dict())


def headline_pandas(f) -> dict:
    return _clustered_figures(clustered_pandas(f["responses"]).iloc[0].to_dict())


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
    frame = clustered_sql(
        con,
        "survey_responses r JOIN customers c USING (customer_id)",
        "r.submitted_at >= ? AND r.submitted_at < ? AND c.region = 'EMEA' AND c.plan IN ('Growth', 'Enterprise')",
        params=[FILTER_SINCE, FILTER_UNTIL + timedelta(days=1)],
    )
    return _clustered_figures(frame.iloc[0].to_dict())


def headline_filtered_pandas(f) -> dict:
    r, c = f["responses"], f["customers"]
    keep = c.loc[(c["region"] == "EMEA") & c["plan"].isin(["Growth", "Enterprise"]), "customer_id"]
    at = r["submitted_at"]
    part = r[
        (at >= pd.Timestamp(FILTER_SINCE))
        & (at < pd.Timestamp(FILTER_UNTIL + timedelta(days=1)))
        & r["customer_id"].isin(keep)
    ]
    return _clustered_figures(clustered_pandas(part).iloc[0].to_dict())


# --------------------------------------------------------------------------- trend (Overview)


def trend_sql(con) -> dict:
    frame = clustered_sql(con, "survey_responses r", group="date_trunc('month', r.submitted_at)")
    out = {"periods": len(frame)}
    for m in frame.to_dict("records"):
        out.update(_trend_month(m, f"{pd.Timestamp(m['grp']):%Y-%m}"))
    return out


def trend_pandas(f) -> dict:
    r = f["responses"]
    frame = clustered_pandas(r, r["submitted_at"].dt.to_period("M").astype(str))
    out = {"periods": len(frame)}
    for m in frame.to_dict("records"):
        out.update(_trend_month(m, m["grp"]))
    return out


def _trend_month(m: dict, month: str) -> dict:
    figures = _clustered_figures(m)
    return {
        f"{month}_{k}": v
        for k, v in figures.items()
        if k in ("trust", "trust_low", "trust_n", "nps", "nps_high", "nps_n", "rq", "csat", "csat_low")
    }


def _trend_figures(frame: pd.DataFrame) -> dict:
    """Per month: trust, NPS, RQ and CSAT with n and an interval bound."""
    out = {"periods": frame["period"].nunique()}
    for row in frame[frame["metric"].isin(["trust", "nps", "rq", "csat"])].itertuples():
        month = f"{row.period:%Y-%m}"
        out[f"{month}_{row.metric}"] = row.estimate
        if row.metric in ("trust", "nps"):
            out[f"{month}_{row.metric}_n"] = row.n
        if row.metric in ("trust", "csat"):
            out[f"{month}_{row.metric}_low"] = row.low
        if row.metric == "nps":
            out[f"{month}_nps_high"] = row.high
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
                key = f"{dim}={row.value}_{row.metric}"
                out[key], out[f"{key}_low"], out[f"{key}_p"] = row.estimate, row.low, row.p_value
                if row.metric in ("trust", "nps"):
                    out[f"{key}_n"] = row.n
    return out


def _segment_tests(frame: pd.DataFrame, dim: str) -> dict:
    """Each segment vs the rest (total − segment): Welch–Satterthwaite on clustered variances for
    means, z on clustered variances for NPS/CSAT."""
    from scipy import stats as sps

    sums = [c for c in frame.columns if c not in ("grp", "is_total")]
    total = frame[frame["is_total"] == 1].iloc[0] if "is_total" in frame else frame[sums].sum()
    out = {}
    for m in (
        frame[frame["is_total"] == 0].to_dict("records") if "is_total" in frame else frame.to_dict("records")
    ):
        rest = {k: float(total[k]) - float(m[k]) for k in sums}
        value = "(no value)" if m["grp"] is None or m["grp"] != m["grp"] else m["grp"]
        for name in ("trust", "rq", "nps", "csat"):
            est, low, _high, v1, _ = _interval(m, name)
            other, _, _, v2, _ = _interval(rest, name)
            delta, se = est - other, np.sqrt(v1 + v2)
            if name in ("trust", "rq"):
                c1, c2 = float(m[f"{name}_C"]), float(rest[f"{name}_C"])
                df = (v1 + v2) ** 2 / (v1**2 / (c1 - 1) + v2**2 / (c2 - 1))
                p = 2 * sps.t.sf(abs(delta) / se, df)
            else:
                p = 2 * sps.norm.sf(abs(delta) / (100 * se))
            key = f"{dim}={value}_{name}"
            out[key], out[f"{key}_low"], out[f"{key}_p"] = est, low, p
            if name in ("trust", "nps"):
                out[f"{key}_n"] = int(m[f"{name}_W"])
    return out


def segments_sql(con) -> dict:
    out = {}
    for dim in SEGMENT_DIMENSIONS:
        frame = clustered_sql(
            con, "survey_responses r LEFT JOIN customers c USING (customer_id)", group=f"c.{dim}", rollup=True
        )
        out.update(_segment_tests(frame, dim))
    return out


def segments_pandas(f) -> dict:
    r, c = f["responses"], f["customers"]
    out = {}
    for dim in SEGMENT_DIMENSIONS:
        joined = r.merge(c[["customer_id", dim]], on="customer_id", how="left")
        frame = clustered_pandas(joined, joined[dim].fillna("(no value)"))
        out.update(_segment_tests(frame.assign(grp=frame["grp"].replace("(no value)", None)), dim))
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


def _driver_figures(per: pd.DataFrame) -> dict:
    """The bootstrap's input — one row per customer — summed per segment, plus its size."""
    out = {"customer_rows": len(per)}
    for segment, part in per.groupby("segment"):
        out[f"{segment}_n"] = int(part["n"].sum())
        out[f"{segment}_customers"] = int(part["customer"].sum())
        out[f"{segment}_s0"] = float(part["s_0"].sum())
        out[f"{segment}_c0_3"] = float(part["c_0_3"].sum())
    return out


def drivers_relq(engine) -> dict:
    """The drivers page's input: per-customer sums (by region) that the customer bootstrap resamples."""
    from relq.analyses.drivers import customer_moments

    with engine.connect() as conn:
        return _driver_figures(customer_moments(conn, SegmentFilter(), "region"))


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
    per = con.execute(
        f"""SELECT coalesce(c.region, '(no value)') AS segment, r.customer_id AS cid,
                   CASE WHEN r.customer_id IS NULL THEN r.response_id END AS lone, count(*) AS n, {sums}, {cross}
            FROM survey_responses r LEFT JOIN customers c USING (customer_id) WHERE {complete}
            GROUP BY ALL ORDER BY segment, cid, lone"""  # noqa: S608
    ).df()
    per["customer"] = per["cid"].notna().astype(int)
    return _driver_figures(per)


def drivers_pandas(f) -> dict:
    r, c = f["responses"], f["customers"]
    cols = list(DRIVER_VARIABLES)
    r = r.dropna(subset=cols)
    joined = r.merge(c[["customer_id", "region"]], on="customer_id", how="left")
    parts = {"n": pd.Series(1, index=joined.index)}
    for i, a in enumerate(cols):
        parts[f"s_{i}"] = joined[a].astype(float)
        for j in range(i, len(cols)):
            parts[f"c_{i}_{j}"] = joined[a].astype(float) * joined[cols[j]]
    keys = [
        joined["region"].fillna("(no value)").rename("segment"),
        joined["customer_id"].fillna("").rename("cid"),
        joined["response_id"].where(joined["customer_id"].isna(), "").rename("lone"),
    ]
    per = pd.DataFrame(parts).groupby(keys, sort=True).sum().reset_index()
    per["customer"] = (per["cid"] != "").astype(int)
    return _driver_figures(per)


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
    out = {"responses": report["responses"], "nps": report["nps"]["score"], "nps_low": report["nps"]["ci"][0]}
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
    out = {"responses": headline["responses"], "nps": headline["nps"], "nps_low": headline["nps_low"]}
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
