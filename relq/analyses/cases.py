"""The rules that open cases after each import, and whether the calls worked.

**Rules** (analysts and admins switch them on or off and set their parameters):

- *Every new detractor with a comment*: a response of the import with NPS 0–6 and a comment,
  from a stored, not churned customer (their latest such response of the import).
- *A high-value account turning at risk*: an account in the chosen value tiers (or above the
  chosen annual value) on the at-risk list now that was not on it at the rule's previous run. On
  its first run the rule only learns who is already at risk, so it never floods the team.
- *A customer moving to a worse quadrant*: the import holds the customer's latest response, and
  it sits in a worse quadrant than their previous one (fewer of the pair's pillars at or above
  the threshold).

A rule never opens a second case for a customer who has an open one for the same reason
(:func:`relq.store.cases.open_cases`).

**Did it work** (:func:`case_effects`), for closed cases. The contact day is when the case was
marked contacted (else closed). Each contacted customer is compared with the customers who never
had a case and, on that day, were in the same plan and, in their latest response before it, the
same trust × satisfaction quadrant, NPS group (promoter, passive, detractor) and 10-point band of
RQ (coarsened exact matching). The
outcomes: the NPS (+100/0/−100) and the RQ of the next response after the contact day, and being
still a customer ``horizon`` days later. Per case, the difference between the contacted customer
and the mean of their matched comparison customers; the mean difference over cases has a
customer-clustered t-interval (a customer with two cases is one cluster). This is observational:
nobody chose at random whom to call.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from scipy import stats as sp_stats
from sqlalchemy.engine import Connection, Engine

from relq import store
from relq.analyses import retention
from relq.analyses.quadrants import quadrant_name
from relq.exceptions import RelqError
from relq.measures import clustered
from relq.store import record_audit, schema
from relq.store.cases import CLOSED_STATUSES, Opened, open_cases
from relq.store.filters import SegmentFilter
from relq.store.latest import quadrant_key
from relq.store.schema import PILLARS

__all__ = [
    "CaseRule",
    "RULES",
    "RuleResult",
    "rule_settings",
    "save_rule_settings",
    "apply_case_rules",
    "EFFECT_CAVEAT",
    "CaseEffects",
    "case_effects",
]

R = schema.survey_responses
K = schema.customers
CASES = schema.cases
RULE_USER = "RelQ rules"


@dataclass(frozen=True)
class CaseRule:
    key: str
    label: str
    reason: str
    defaults: dict
    help: str


RULES: dict[str, CaseRule] = {
    r.key: r
    for r in (
        CaseRule(
            "detractor_comment",
            "Every new detractor with a comment",
            "detractor_comment",
            {"max_nps": 6},
            "A response of the import with NPS at most max_nps and a comment opens a case.",
        ),
        CaseRule(
            "high_value_at_risk",
            "A high-value account turning at risk",
            "high_value_at_risk",
            {"value_tiers": ["Top 20%"], "min_annual_value": None},
            "An account in value_tiers (or worth at least min_annual_value a year) that joins the at-risk list.",
        ),
        CaseRule(
            "worse_quadrant",
            "A customer moving to a worse quadrant",
            "worse_quadrant",
            {"x": "trust", "y": "satisfaction", "threshold": 50.0},
            "The customer's newest response has fewer of the two pillars at or above the threshold than "
            "their previous one.",
        ),
    )
}


def rule_settings(conn: Connection) -> dict[str, tuple[bool, dict]]:
    """Each rule's (enabled, parameters): what analysts saved, else the defaults (all on)."""
    t = schema.case_rules
    stored = {r.rule: r for r in conn.execute(sa.select(t))}
    out = {}
    for key, rule in RULES.items():
        row = stored.get(key)
        params = dict(rule.defaults)
        if row is not None and row.params:
            params.update({k: v for k, v in json.loads(row.params).items() if k in rule.defaults})
        out[key] = (bool(row.enabled) if row is not None else True, params)
    return out


def _check_params(key: str, params: dict) -> dict:
    params = {k: v for k, v in params.items() if k in RULES[key].defaults}
    if key == "detractor_comment":
        value = int(params.get("max_nps", 6))
        if not 0 <= value <= 10:
            raise RelqError(f"max_nps is an NPS answer from 0 to 10, not {value}.")
        params["max_nps"] = value
    elif key == "high_value_at_risk":
        tiers = [str(t) for t in params.get("value_tiers") or []]
        minimum = params.get("min_annual_value")
        if minimum is not None and (not isinstance(minimum, (int, float)) or minimum < 0):
            raise RelqError("min_annual_value is an amount of at least 0, or empty.")
        if not tiers and minimum is None:
            raise RelqError("Say what a high-value account is: choose value tiers, an annual value, or both.")
        params["value_tiers"] = tiers
    elif key == "worse_quadrant":
        x, y = params.get("x", "trust"), params.get("y", "satisfaction")
        if x not in PILLARS or y not in PILLARS or x == y:
            raise RelqError(f"The quadrant pair is two different pillars among {', '.join(PILLARS)}.")
        threshold = float(params.get("threshold", 50.0))
        if not 0 <= threshold <= 100:
            raise RelqError(f"The quadrant threshold is 0 to 100, not {threshold:g}.")
        params.update(x=x, y=y, threshold=threshold)
    return params


def save_rule_settings(engine: Engine, key: str, enabled: bool, params: dict, user: str | None) -> None:
    """Switch a rule on or off and set its parameters (a bad value gets a sentence)."""
    if key not in RULES:
        raise RelqError(f"{key!r} is not a case rule; choose one of {', '.join(RULES)}.")
    params = _check_params(key, {**RULES[key].defaults, **params})
    t = schema.case_rules
    with engine.begin() as conn:
        row = conn.execute(sa.select(t).where(t.c.rule == key)).first()
        values = {
            "enabled": bool(enabled),
            "params": json.dumps(params),
            "updated_by": user,
            "updated_at": datetime.now(),
        }
        if row is None:
            conn.execute(t.insert().values(rule=key, **values))
        else:
            conn.execute(t.update().where(t.c.rule == key).values(**values))
        record_audit(conn, user, "edit_case_rule", {"rule": key, "enabled": bool(enabled), "params": params})


@dataclass(frozen=True)
class RuleResult:
    rule: str
    opened: Opened | None = None
    note: str = ""

    def sentence(self) -> str:
        label = RULES[self.rule].label
        if self.opened is None:
            return f"{label}: {self.note}"
        text = self.opened.sentence(RULES[self.rule].reason)
        return f"{label}: {text}" + (f" {self.note}" if self.note else "")


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _detractors_with_comments(conn: Connection, import_id: int, max_nps: int) -> pd.DataFrame:
    ranked = (
        sa.select(
            R.c.customer_id,
            R.c.response_id,
            R.c.nps,
            R.c.comment,
            R.c.submitted_at,
            sa.func.row_number()
            .over(partition_by=R.c.customer_id, order_by=(R.c.submitted_at.desc(), R.c.response_id.desc()))
            .label("recency"),
        )
        .select_from(R.join(K, K.c.customer_id == R.c.customer_id))
        .where(
            R.c.import_id == import_id,
            R.c.nps <= max_nps,
            R.c.comment.is_not(None),
            sa.func.length(sa.func.trim(R.c.comment)) > 0,
            K.c.churned_at.is_(None),
        )
        .subquery()
    )
    rows = conn.execute(sa.select(ranked).where(ranked.c.recency == 1)).all()
    frame = pd.DataFrame(
        rows, columns=["customer_id", "response_id", "nps", "comment", "submitted_at", "recency"]
    )
    frame["detail"] = [
        f"NPS {int(n)} on {pd.Timestamp(t):%d %b %Y}: “{_clip(c)}”"
        for n, c, t in zip(frame["nps"], frame["comment"], frame["submitted_at"], strict=True)
    ]
    return frame[["customer_id", "response_id", "detail"]]


def _high_value_at_risk(conn: Connection, params: dict) -> pd.DataFrame:
    risk = retention.at_risk_customers(conn)
    if risk.empty:
        return pd.DataFrame(columns=["customer_id", "detail"])
    # the high-value customers chosen in SQL and met with the at-risk list here, rather than the
    # at-risk customers' values read by a list of ids (25k after a 1M-row export, a parameter each)
    tiers = list(params.get("value_tiers") or [])
    high = K.c.value_tier.in_(tiers) if tiers else sa.false()
    if params.get("min_annual_value") is not None:
        high = sa.or_(high, K.c.annual_value >= float(params["min_annual_value"]))
    value = store.read_frame(conn, sa.select(K.c.customer_id, K.c.value_tier, K.c.annual_value).where(high))
    why = risk["reasons"] if "reasons" in risk.columns else pd.Series("on the at-risk list", index=risk.index)
    frame = pd.DataFrame({"customer_id": risk["customer_id"].astype(str), "reasons": why}).merge(
        value, on="customer_id"
    )
    reasons = frame["reasons"]
    frame["detail"] = [
        f"{tier or 'high value'}, {('worth ' + format(v, ',.0f') + ' a year; ') if not pd.isna(v) else ''}at risk: {r}"
        for tier, v, r in zip(frame["value_tier"], frame["annual_value"], reasons, strict=True)
    ]
    return frame[["customer_id", "detail"]]


def _worse_quadrant(conn: Connection, import_id: int, params: dict) -> pd.DataFrame:
    x, y, threshold = params["x"], params["y"], float(params["threshold"])
    in_import = sa.select(R.c.customer_id).where(R.c.import_id == import_id, R.c.customer_id.is_not(None))
    ranked = (
        sa.select(
            R.c.customer_id,
            R.c.import_id,
            R.c[x].label("x_score"),
            R.c[y].label("y_score"),
            R.c.response_id,
            sa.func.row_number()
            .over(partition_by=R.c.customer_id, order_by=(R.c.submitted_at.desc(), R.c.response_id.desc()))
            .label("recency"),
        )
        .where(R.c.customer_id.in_(in_import), R.c[x].is_not(None), R.c[y].is_not(None))
        .subquery()
    )
    # read column by column: after a 1M-row export, 400k rows (each customer's latest two)
    frame = store.read_frame(conn, sa.select(ranked).where(ranked.c.recency <= 2))
    latest = frame[(frame["recency"] == 1) & (frame["import_id"] == import_id)].set_index("customer_id")
    before = frame[frame["recency"] == 2].set_index("customer_id")
    both = latest.join(before, rsuffix="_before", how="inner")
    if both.empty:
        return pd.DataFrame(columns=["customer_id", "response_id", "detail"])
    highs_now = (both["x_score"] >= threshold).astype(int) + (both["y_score"] >= threshold).astype(int)
    highs_before = (both["x_score_before"] >= threshold).astype(int) + (
        both["y_score_before"] >= threshold
    ).astype(int)
    worse = both[highs_now < highs_before]

    def key(xs, ys):
        return f"x_{'high' if xs >= threshold else 'low'}_y_{'high' if ys >= threshold else 'low'}"

    details = [
        f"{quadrant_name(key(r.x_score_before, r.y_score_before), x, y)} → {quadrant_name(key(r.x_score, r.y_score), x, y)} "
        f"({x} {r.x_score_before:.0f} → {r.x_score:.0f}, {y} {r.y_score_before:.0f} → {r.y_score:.0f})"
        for r in worse.itertuples()
    ]
    return pd.DataFrame(
        {"customer_id": worse.index, "response_id": worse["response_id"].to_numpy(), "detail": details}
    )


def _watch(engine: Engine, key: str, candidates: pd.DataFrame, now: datetime) -> tuple[pd.DataFrame, str]:
    """The candidates that were not watched at the previous run; the watch list becomes the
    candidates. On the first run nobody is new (the rule learns who is already there)."""
    w, t = schema.case_rule_watch, schema.case_rules
    with engine.begin() as conn:
        row = conn.execute(sa.select(t.c.watching_since).where(t.c.rule == key)).first()
        first_run = row is None or row.watching_since is None
        seen = set(conn.execute(sa.select(w.c.customer_id).where(w.c.rule == key)).scalars())
        current = set(candidates["customer_id"])
        conn.execute(
            w.delete().where(w.c.rule == key, w.c.customer_id.not_in(current) if current else sa.true())
        )
        added = sorted(current - seen)
        if added:
            conn.execute(w.insert(), [{"rule": key, "customer_id": c, "since": now} for c in added])
        if row is None:
            conn.execute(t.insert().values(rule=key, enabled=True, params=None, watching_since=now))
        elif first_run:
            conn.execute(t.update().where(t.c.rule == key).values(watching_since=now))
    if first_run:
        return candidates.iloc[0:0], (
            f"First run: {len(current):,} accounts are already on the list and are now watched; "
            "a case opens when another one joins it."
        )
    return candidates[candidates["customer_id"].isin(added)], ""


def apply_case_rules(
    engine: Engine, import_id: int, *, user: str = RULE_USER, now: datetime | None = None
) -> list[RuleResult]:
    """Run every switched-on rule for the rows ``import_id`` brought; returns what each did."""
    now = now or datetime.now()
    with engine.connect() as conn:
        settings = rule_settings(conn)
        kind = conn.execute(
            sa.select(schema.imports.c.kind).where(schema.imports.c.import_id == import_id)
        ).scalar()
    results: list[RuleResult] = []
    for key, (enabled, params) in settings.items():
        if not enabled:
            continue
        rule = RULES[key]
        note = ""
        with engine.connect() as conn:
            if key == "detractor_comment":
                if kind != "survey":
                    continue
                candidates = _detractors_with_comments(conn, import_id, int(params["max_nps"]))
            elif key == "worse_quadrant":
                if kind != "survey":
                    continue
                candidates = _worse_quadrant(conn, import_id, params)
            else:
                candidates = _high_value_at_risk(conn, params)
        if key == "high_value_at_risk":
            candidates, note = _watch(engine, key, candidates, now)
        opened = open_cases(
            engine,
            candidates,
            rule.reason,
            user=user,
            source=f"rule: {rule.label.lower()} (import {import_id})",
            now=now,
        )
        results.append(RuleResult(key, opened, note))
    return results


# --------------------------------------------------------------------------- did it work

EFFECT_CAVEAT = (
    "This is observational, not an experiment: nobody chose at random whom to call. The comparison "
    "customers match the contacted ones on plan, quadrant and the score before the contact, but "
    "whatever made the team call some customers and not others may still differ between the groups. "
    "Read a difference as a lead worth testing, not as proof."
)
OUTCOME_LABELS = {
    "nps": "NPS of the next response",
    "rq": "RQ of the next response",
    "retained": "Still a customer {horizon} days later (%)",
}


@dataclass(frozen=True)
class CaseEffects:
    """Per outcome: contacted vs comparable customers, the difference with its interval (a tidy
    frame), the per-case rows behind it, and how many closed cases could not be compared and why."""

    table: pd.DataFrame
    cases: pd.DataFrame
    closed: int
    left_out: dict[str, int] = field(default_factory=dict)
    horizon_days: int = 90

    @property
    def compared(self) -> int:
        """Closed cases compared on at least one outcome."""
        return int(self.table["cases"].max()) if len(self.table) else 0


def _closed_cases(flt: SegmentFilter | None):
    t0 = sa.func.coalesce(CASES.c.contacted_at, CASES.c.closed_at).label("t0")
    query = (
        sa.select(CASES.c.case_id, CASES.c.customer_id, CASES.c.status, t0, K.c.plan)
        .select_from(CASES.join(K, K.c.customer_id == CASES.c.customer_id))
        .where(CASES.c.status.in_(CLOSED_STATUSES), t0.is_not(None))
    )
    if flt is not None and (flt.customer or flt.quadrant):
        query = query.where(K.c.customer_id.in_(sa.select(K.c.customer_id).where(flt.customer_clause())))
    return query.cte("closed")


_NEVER = sa.literal(datetime(9999, 12, 31), sa.DateTime)


def _answers_in_sequence():
    """Every customer's complete answers (RQ, trust and satisfaction present), each with when the
    customer answered next and what: one window over the responses, computed once."""
    scored = sa.and_(
        R.c.customer_id.is_not(None),
        R.c.rq.is_not(None),
        R.c.trust.is_not(None),
        R.c.satisfaction.is_not(None),
    )
    order = {"partition_by": R.c.customer_id, "order_by": (R.c.submitted_at, R.c.response_id)}
    return (
        sa.select(
            R.c.customer_id,
            R.c.submitted_at,
            R.c.trust,
            R.c.satisfaction,
            R.c.rq,
            R.c.nps,
            # no next answer: a day far ahead, so "stood on the contact day" is two plain inequalities
            sa.func.coalesce(sa.func.lead(R.c.submitted_at).over(**order), _NEVER).label("next_at"),
            sa.func.lead(R.c.nps).over(**order).label("next_nps"),
            sa.func.lead(R.c.rq).over(**order).label("next_rq"),
        )
        .where(scored)
        .cte("answers")
    )


def _standing(answers, closed, lookback: timedelta):
    """The answer that stood on the contact day: the latest before it (within ``lookback``)."""
    return sa.and_(
        answers.c.submitted_at < closed.c.t0,
        answers.c.submitted_at >= closed.c.t0 - lookback,
        answers.c.next_at >= closed.c.t0,
    )


def _stratum(answers, band: float) -> list:
    """What a comparison customer must share with the contacted one, besides the plan."""
    nps_group = sa.case(
        (answers.c.nps >= 9, "promoter"),
        (answers.c.nps >= 7, "passive"),
        (answers.c.nps >= 0, "detractor"),
        else_="none",
    )
    return [
        quadrant_key(answers.c.trust, answers.c.satisfaction, 50.0, 50.0).label("quadrant"),
        sa.func.floor(answers.c.rq / band).label("band"),
        nps_group.label("nps_group"),
    ]


def case_effects(
    conn: Connection,
    flt: SegmentFilter | None = None,
    *,
    horizon_days: int = 90,
    band: float = 10.0,
    lookback_days: int = 365,
) -> CaseEffects:
    """Did the calls work? (module docstring). Unit: the closed case, clustered by customer;
    time origin: the contact day."""
    closed = _closed_cases(flt)
    lookback = timedelta(days=lookback_days)
    answers = _answers_in_sequence()
    horizon_end = sa.cast(closed.c.t0, sa.Date) + timedelta(days=horizon_days)
    after = sa.and_(answers.c.next_at > closed.c.t0, answers.c.next_at <= closed.c.t0 + lookback)
    nps_score = sa.case((answers.c.next_nps >= 9, 100.0), (answers.c.next_nps <= 6, -100.0), else_=0.0)
    retained = sa.case((sa.or_(K.c.churned_at.is_(None), K.c.churned_at > horizon_end), 1.0), else_=0.0)

    def outcomes(prefix: str) -> list:
        return [
            sa.case((sa.and_(after, answers.c.next_nps.is_not(None)), nps_score)).label(f"{prefix}nps"),
            sa.case((sa.and_(after, answers.c.next_rq.is_not(None)), answers.c.next_rq)).label(f"{prefix}rq"),
            retained.label(f"{prefix}retained"),
        ]

    treated = (
        sa.select(
            closed.c.case_id,
            closed.c.customer_id,
            closed.c.status,
            closed.c.t0,
            closed.c.plan,
            answers.c.rq.label("rq_before"),
            *_stratum(answers, band),
            *outcomes(""),
        )
        .select_from(
            closed.join(
                answers,
                sa.and_(answers.c.customer_id == closed.c.customer_id, _standing(answers, closed, lookback)),
            ).join(K, K.c.customer_id == closed.c.customer_id)
        )
        .cte("treated")
    )
    # comparison customers: never had a case, same plan, still customers on the contact day
    ever = sa.select(CASES.c.customer_id)
    comparison = (
        sa.select(closed.c.case_id, *_stratum(answers, band), *outcomes(""))
        .select_from(
            closed.join(K, K.c.plan == closed.c.plan).join(
                answers,
                sa.and_(answers.c.customer_id == K.c.customer_id, _standing(answers, closed, lookback)),
            )
        )
        .where(
            K.c.customer_id.not_in(ever),
            sa.or_(K.c.churned_at.is_(None), K.c.churned_at >= sa.cast(closed.c.t0, sa.Date)),
        )
        .subquery("comparison")
    )
    matched = (
        sa.select(
            comparison.c.case_id,
            sa.func.count().label("comparable"),
            *[
                part
                for name in ("nps", "rq", "retained")
                for part in (
                    sa.func.count(comparison.c[name]).label(f"{name}_n0"),
                    sa.func.coalesce(sa.func.sum(comparison.c[name]), 0.0).label(f"{name}_sum0"),
                )
            ],
        )
        .select_from(
            comparison.join(
                treated,
                sa.and_(
                    treated.c.case_id == comparison.c.case_id,
                    treated.c.quadrant == comparison.c.quadrant,
                    treated.c.band == comparison.c.band,
                    treated.c.nps_group == comparison.c.nps_group,
                ),
            )
        )
        .group_by(comparison.c.case_id)
        .subquery("matched")
    )
    rows = conn.execute(
        sa.select(
            treated.c.case_id,
            treated.c.customer_id,
            treated.c.status,
            treated.c.t0,
            treated.c.rq_before,
            sa.func.coalesce(matched.c.comparable, 0).label("comparable"),
            *[
                part
                for name in ("nps", "rq", "retained")
                for part in (
                    sa.case((treated.c[name].is_not(None), 1), else_=0).label(f"{name}_n1"),
                    sa.func.coalesce(treated.c[name], 0.0).label(f"{name}_sum1"),
                    sa.func.coalesce(matched.c[f"{name}_n0"], 0).label(f"{name}_n0"),
                    sa.func.coalesce(matched.c[f"{name}_sum0"], 0.0).label(f"{name}_sum0"),
                )
            ],
        ).select_from(treated.outerjoin(matched, matched.c.case_id == treated.c.case_id))
    )
    per_case = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    n_closed = conn.execute(sa.select(sa.func.count()).select_from(closed)).scalar_one()
    return _effects(per_case, n_closed, store.current_data_end(conn), horizon_days)


def _effects(per_case: pd.DataFrame, n_closed: int, data_end, horizon_days: int) -> CaseEffects:
    for column in per_case.columns:
        if column not in ("case_id", "customer_id", "status", "t0"):
            per_case[column] = pd.to_numeric(per_case[column], errors="coerce").fillna(0.0).astype(float)
    left_out = {
        "no survey answer in the year before the contact": int(n_closed - len(per_case)),
        "no comparable customer": int((per_case["comparable"] == 0).sum()) if len(per_case) else 0,
    }
    with_controls = per_case[per_case["comparable"] > 0].copy()
    records = []
    horizon_ok = (
        pd.to_datetime(with_controls["t0"]) + pd.Timedelta(days=horizon_days) <= pd.Timestamp(data_end)
        if data_end is not None and len(with_controls)
        else pd.Series(False, index=with_controls.index)
    )
    for outcome in ("nps", "rq", "retained"):
        usable = (with_controls[f"{outcome}_n1"] > 0) & (with_controls[f"{outcome}_n0"] > 0)
        if outcome == "retained":
            usable &= horizon_ok
        part = with_controls[usable]
        contacted = part[f"{outcome}_sum1"] / part[f"{outcome}_n1"]
        comparison = part[f"{outcome}_sum0"] / part[f"{outcome}_n0"]
        scale = 100.0 if outcome == "retained" else 1.0
        difference = (contacted - comparison) * scale
        with_controls.loc[part.index, f"{outcome}_difference"] = difference
        by_customer = pd.DataFrame({"customer_id": part["customer_id"], "d": difference}).groupby(
            "customer_id"
        )["d"]
        result = clustered.clustered_mean(by_customer.count(), by_customer.sum(), by_customer.count())
        t_stat = (
            result.estimate / result.se
            if result.se and not math.isnan(result.se) and result.se > 0
            else math.nan
        )
        p_value = float(2 * sp_stats.t.sf(abs(t_stat), result.df)) if not math.isnan(t_stat) else math.nan
        records.append(
            {
                "outcome": OUTCOME_LABELS[outcome].format(horizon=horizon_days),
                "cases": int(len(part)),
                "customers": int(result.customers),
                "comparisons": int(part[f"{outcome}_n0"].sum()),  # comparison customers, summed over cases
                "contacted": float(contacted.mean() * scale) if len(part) else math.nan,
                "comparable": float(comparison.mean() * scale) if len(part) else math.nan,
                "difference": result.estimate,
                "low": result.low,
                "high": result.high,
                "p": p_value,
            }
        )
    if len(with_controls):
        left_out["no next answer yet"] = int(
            ((with_controls["nps_n1"] == 0) & (with_controls["rq_n1"] == 0)).sum()
        )
        left_out[f"contacted less than {horizon_days} days before the data end"] = int((~horizon_ok).sum())
    table = pd.DataFrame(records)
    return CaseEffects(table, with_controls.reset_index(drop=True), int(n_closed), left_out, horizon_days)
