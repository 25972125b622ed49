"""Alert rules on any score and segment, and their evaluation (read only; relq.outputs.alerting
fires and delivers).

A rule watches one score (RQ, a pillar, NPS, CSAT or CES) for all customers or one segment
(a customer dimension and one of its values) over a rolling window that ends on the latest survey
day: "Enterprise NPS falls significantly vs the previous period", "satisfaction below 60".

- **falls / rises / changes**: the window vs the window of equal length before it, by the
  customer-linearised period z-test (Methodology page → Comparisons, "Period vs previous"):
  the same customer often answers in both windows, so ``var(d) = C/(C−1)·Σ_c (t_c¹/W₁ − t_c²/W₂)²``;
  significant at p < 0.05, in the rule's direction.
- **below / above**: the window's estimate against the rule's number.

Every estimate carries its customer-clustered 95% interval (clustered mean, Wilson / adjusted
Wald on the effective n). Per-customer sums come from SQL (one grouped query per rule, per
customer first); the statistics over customers from :mod:`relq.measures.clustered`. A window with
fewer responses than the small-sample minimum, or fewer than 5 customers, is never alerted on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from relq.core.auth import MIN_GROUP_CUSTOMERS
from relq.core.settings import resolve_min_n
from relq.exceptions import RelqError
from relq.measures import clustered
from relq.store import catalog, record_audit, schema
from relq.store.cases import require_row_store
from relq.store.filters import SegmentFilter

__all__ = [
    "METRICS",
    "CONDITIONS",
    "AlertRule",
    "Evaluation",
    "parse_recipients",
    "save_rule",
    "delete_rule",
    "list_rules",
    "rules_table",
    "alert_events",
    "latest_survey_day",
    "evaluate_rule",
    "filtered_view_link",
]

R = schema.survey_responses
A = schema.alert_rules

METRICS: dict[str, str] = {
    "rq": "RQ",
    "trust": "Trust",
    "commitment": "Commitment",
    "satisfaction": "Satisfaction",
    "nps": "NPS",
    "csat": "CSAT",
    "ces": "CES",
}
_RANGES = {"nps": (-100.0, 100.0), "ces": (1.0, 7.0)}  # others: 0–100
CONDITIONS: dict[str, str] = {
    "falls": "falls significantly vs the previous period",
    "rises": "rises significantly vs the previous period",
    "changes": "changes significantly vs the previous period",
    "below": "is below",
    "above": "is above",
}
CHANGE_CONDITIONS = ("falls", "rises", "changes")
SIGNIFICANCE = 0.05
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    condition: str
    threshold: float | None = None
    dimension: str | None = None
    value: str | None = None
    window_days: int = 90
    recipients: tuple[str, ...] = ()
    enabled: bool = True
    rule_id: int | None = None

    @property
    def segment(self) -> str:
        return f"{self.dimension.replace('_', ' ')} {self.value}" if self.dimension else "all customers"

    def describe(self) -> str:
        """'NPS (plan Enterprise) falls significantly vs the previous 90 days'."""
        what = f"{METRICS.get(self.metric, self.metric)} ({self.segment})"
        if self.condition in CHANGE_CONDITIONS:
            verb = CONDITIONS[self.condition].replace("previous period", f"previous {self.window_days} days")
            return f"{what} {verb}"
        return f"{what} {CONDITIONS.get(self.condition, self.condition)} {_number(self.threshold)} over the last {self.window_days} days"

    def segment_filter(self) -> SegmentFilter:
        if not self.dimension:
            return SegmentFilter()
        return SegmentFilter().with_dimension(self.dimension, (self.value,))


def _number(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}".replace("-", "−")


def parse_recipients(text: str | list | tuple) -> tuple[str, ...]:
    """Emails and webhook URLs, one per line or separated by commas; a sentence names any other.

    >>> parse_recipients("cx@example.com, https://hooks.example.com/T/1")
    ('cx@example.com', 'https://hooks.example.com/T/1')
    """
    items = text if isinstance(text, (list, tuple)) else re.split(r"[\s,;]+", str(text or ""))
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if item.lower().startswith(("http://", "https://")):
            if " " in item or len(item) < 12:
                raise RelqError(f"{item!r} is not a webhook address (expected https://…).")
        elif not _EMAIL.match(item):
            raise RelqError(f"{item!r} is neither an email address nor a webhook URL (https://…).")
        else:
            item = item.lower()
        if item not in out:
            out.append(item)
    return tuple(out)


def _validate(rule: AlertRule, dimensions: list[str]) -> AlertRule:
    name = rule.name.strip()
    if not name:
        raise RelqError("Give the alert rule a name, e.g. “Enterprise NPS falls”.")
    if rule.metric not in METRICS:
        raise RelqError(f"{rule.metric!r} is not a score; choose one of {', '.join(METRICS)}.")
    if rule.condition not in CONDITIONS:
        raise RelqError(f"{rule.condition!r} is not a condition; choose one of {', '.join(CONDITIONS)}.")
    threshold = rule.threshold
    if rule.condition in ("below", "above"):
        low, high = _RANGES.get(rule.metric, (0.0, 100.0))
        if threshold is None or not (low <= float(threshold) <= high):
            raise RelqError(
                f"“{rule.condition}” needs a number between {low:g} and {high:g} for {METRICS[rule.metric]}."
            )
        threshold = float(threshold)
    else:
        threshold = None
    if not 7 <= int(rule.window_days) <= 366:
        raise RelqError(f"The window is 7 to 366 days, not {rule.window_days}.")
    dimension = (rule.dimension or "").strip() or None
    value = (rule.value or "").strip() or None
    if dimension and dimension not in dimensions:
        raise RelqError(
            f"{dimension!r} is not a segment dimension in the data; choose one of {', '.join(dimensions)}."
        )
    if dimension and not value:
        raise RelqError(f"Choose which {dimension.replace('_', ' ')} the rule watches.")
    recipients = parse_recipients(rule.recipients)
    if not recipients:
        raise RelqError("Name at least one recipient: an email address or a webhook URL.")
    return replace(
        rule,
        name=name,
        threshold=threshold,
        dimension=dimension,
        value=value if dimension else None,
        window_days=int(rule.window_days),
        recipients=recipients,
    )


def save_rule(engine: Engine, rule: AlertRule, user: str | None, now: datetime | None = None) -> int:
    """Create (``rule_id`` None) or change an alert rule; returns its id. A bad rule gets a sentence."""
    require_row_store(engine)
    now = now or datetime.now()
    with engine.begin() as conn:
        rule = _validate(rule, catalog.dimensions(conn))
        values = {
            "name": rule.name,
            "metric": rule.metric,
            "dimension": rule.dimension,
            "value": rule.value,
            "condition": rule.condition,
            "threshold": rule.threshold,
            "window_days": rule.window_days,
            "recipients": json.dumps(list(rule.recipients)),
            "enabled": bool(rule.enabled),
            "updated_by": user,
            "updated_at": now,
        }
        if rule.rule_id is None:
            rule_id = conn.execute(
                A.insert().values(**values, created_by=user, created_at=now).returning(A.c.rule_id)
            ).scalar_one()
        else:
            rule_id = int(rule.rule_id)
            if not conn.execute(
                A.update().where(A.c.rule_id == rule_id).values(**values).returning(A.c.rule_id)
            ).all():
                raise RelqError(f"Alert rule #{rule_id} no longer exists.")
            # a changed rule starts afresh: it fires when its (new) condition holds
            conn.execute(schema.alert_state.delete().where(schema.alert_state.c.rule_id == rule_id))
        record_audit(
            conn,
            user,
            "edit_alert_rule",
            {"rule_id": rule_id, "rule": rule.describe(), "enabled": rule.enabled},
        )
    return int(rule_id)


def delete_rule(engine: Engine, rule_id: int, user: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(A.delete().where(A.c.rule_id == int(rule_id)))
        conn.execute(schema.alert_state.delete().where(schema.alert_state.c.rule_id == int(rule_id)))
        record_audit(conn, user, "delete_alert_rule", {"rule_id": int(rule_id)})


def _rule_of(row) -> AlertRule:
    m = row._mapping
    return AlertRule(
        name=m["name"],
        metric=m["metric"],
        condition=m["condition"],
        threshold=m["threshold"],
        dimension=m["dimension"],
        value=m["value"],
        window_days=int(m["window_days"]),
        recipients=tuple(json.loads(m["recipients"] or "[]")),
        enabled=bool(m["enabled"]),
        rule_id=int(m["rule_id"]),
    )


def list_rules(conn: Connection, enabled_only: bool = False) -> list[AlertRule]:
    query = sa.select(A).order_by(A.c.rule_id)
    if enabled_only:
        query = query.where(A.c.enabled)
    return [_rule_of(r) for r in conn.execute(query)]


def rules_table(conn: Connection) -> pd.DataFrame:
    """Every rule with what it watches, its recipients and how its last evaluation went."""
    s = schema.alert_state
    rows = conn.execute(
        sa.select(A, s.c.status, s.c.message, s.c.evaluated_at)
        .select_from(A.outerjoin(s, s.c.rule_id == A.c.rule_id))
        .order_by(A.c.rule_id)
    ).all()
    records = []
    for row in rows:
        rule = _rule_of(row)
        records.append(
            {
                "rule_id": rule.rule_id,
                "name": rule.name,
                "watches": rule.describe(),
                "recipients": ", ".join(rule.recipients),
                "enabled": rule.enabled,
                "last status": row.status or "not run yet",
                "last evaluated": row.evaluated_at,
                "last result": row.message or "",
            }
        )
    return pd.DataFrame(
        records,
        columns=[
            "rule_id",
            "name",
            "watches",
            "recipients",
            "enabled",
            "last status",
            "last evaluated",
            "last result",
        ],
    )


def alert_events(conn: Connection, limit: int = 200) -> pd.DataFrame:
    """The latest alerts that fired, newest first: when, which rule, the number and its interval."""
    e = schema.alert_events
    rows = conn.execute(
        sa.select(
            e.c.fired_at,
            A.c.name.label("rule"),
            e.c.headline,
            e.c.estimate,
            e.c.low,
            e.c.high,
            e.c.n,
            e.c.customers,
            e.c.window_start,
            e.c.window_end,
            e.c.link,
        )
        .select_from(e.outerjoin(A, A.c.rule_id == e.c.rule_id))
        .order_by(e.c.fired_at.desc(), e.c.event_id.desc())
        .limit(limit)
    )
    return pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))


def latest_survey_day(conn: Connection) -> date | None:
    latest = conn.execute(sa.select(sa.func.max(R.c.submitted_at))).scalar()
    return None if latest is None else pd.Timestamp(latest).date()


@dataclass(frozen=True)
class Evaluation:
    """One rule's result. ``holds`` is True/False, or None when it could not be decided
    (``status`` 'too few' or 'error', and ``message`` says why)."""

    rule: AlertRule
    status: str  # met, not met, too few, error
    holds: bool | None
    message: str
    headline: str = ""
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0
    customers: int = 0
    previous: float = math.nan
    delta: float = math.nan
    delta_low: float = math.nan
    delta_high: float = math.nan
    p_value: float = math.nan
    window: tuple[date, date] | None = None
    link: str = ""
    extra: dict = field(default_factory=dict)


def filtered_view_link(public_url: str, flt: SegmentFilter, page: str = "overview") -> str:
    """The dashboard's address of ``page`` with ``flt`` applied (the filters live in the URL).

    >>> f = SegmentFilter(since=date(2026, 8, 2), until=date(2026, 10, 31)).with_dimension("plan", ["Enterprise"])
    >>> filtered_view_link("https://relq.example.com", f)
    'https://relq.example.com/overview?since=2026-08-02&until=2026-10-31&seg.plan=Enterprise'
    """
    query = urlencode(flt.to_query_params(), safe="|")
    return f"{public_url.rstrip('/')}/{page}" + (f"?{query}" if query else "")


def _per_customer(conn: Connection, rule: AlertRule, flt: SegmentFilter, current_start: date) -> pd.DataFrame:
    """Per customer (unmatched responses: one cluster each) and window: responses and sums of the
    rule's score — the first level of the two-level aggregation."""
    cluster = sa.func.coalesce(R.c.customer_id, sa.literal("response:") + R.c.response_id).label("cluster")
    now = R.c.submitted_at >= datetime.combine(current_start, datetime.min.time())
    metric = rule.metric
    column = R.c.nps if metric == "nps" else R.c.csat if metric == "csat" else R.c[metric]

    def total(condition, value=1):
        return sa.func.coalesce(sa.func.sum(sa.case((condition, value), else_=0)), 0)

    parts = []
    for label, in_window in (("1", now), ("2", sa.not_(now))):
        parts.append(total(in_window).label(f"n{label}"))
        if metric == "nps":
            parts.append(total(sa.and_(in_window, R.c.nps >= 9)).label(f"P{label}"))
            parts.append(total(sa.and_(in_window, R.c.nps <= 6)).label(f"D{label}"))
        elif metric == "csat":
            parts.append(total(sa.and_(in_window, R.c.csat >= 4)).label(f"S{label}"))
        else:
            parts.append(total(in_window, sa.cast(column, sa.Double)).label(f"S{label}"))
    rows = conn.execute(
        sa.select(cluster, *parts).where(flt.response_clause(), column.is_not(None)).group_by(cluster)
    )
    frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    for name in frame.columns[1:]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").fillna(0).astype(float)
    frame["W1"], frame["W2"] = frame["n1"], frame["n2"]  # unit weights: each response counts once
    return frame


def _estimate(rule: AlertRule, part: pd.DataFrame, suffix: str):
    w, n = part[f"W{suffix}"], part[f"n{suffix}"]
    if rule.metric == "nps":
        return clustered.nps_interval_clustered(w, part[f"P{suffix}"], part[f"D{suffix}"], n)
    if rule.metric == "csat":
        return clustered.csat_interval_clustered(w, part[f"S{suffix}"], n)
    return clustered.clustered_mean(w, part[f"S{suffix}"], n)


def _value(result) -> tuple[float, float, float, int, int]:
    estimate = getattr(result, "score", None)
    if estimate is None:
        estimate = result.estimate
    return float(estimate), float(result.low), float(result.high), int(result.n), int(result.customers)


def evaluate_rule(
    conn: Connection,
    rule: AlertRule,
    *,
    public_url: str = "http://localhost:8501",
    min_n: int | None = None,
    end: date | None = None,
    dimensions: list[str] | None = None,
) -> Evaluation:
    """Evaluate one rule over the window ending on the latest survey day (or ``end``)."""
    min_n = resolve_min_n(min_n)
    dimensions = catalog.dimensions(conn) if dimensions is None else dimensions
    if rule.dimension and rule.dimension not in dimensions:
        return Evaluation(
            rule,
            "error",
            None,
            f"The alert rule “{rule.name}” watches the dimension “{rule.dimension}”, which no longer exists "
            "in the data; edit the rule or delete it.",
        )
    if rule.metric not in METRICS:
        return Evaluation(
            rule, "error", None, f"The alert rule “{rule.name}” watches an unknown score {rule.metric!r}."
        )
    end = end or latest_survey_day(conn)
    if end is None:
        return Evaluation(rule, "too few", None, "No survey responses are stored yet.")
    days = int(rule.window_days)
    current_start = end - timedelta(days=days - 1)
    previous_start = current_start - timedelta(days=days)
    segment = rule.segment_filter()
    flt = replace(segment, since=previous_start, until=end)
    per_customer = _per_customer(conn, rule, flt, current_start)
    window = (current_start, end)
    link = filtered_view_link(public_url, replace(segment, since=current_start, until=end))
    now_part = per_customer[per_customer["n1"] > 0]
    label = f"{METRICS[rule.metric]} ({rule.segment})"
    period = f"the {days} days to {end:%d %b %Y}"
    if now_part.empty:
        return Evaluation(
            rule, "too few", None, f"{label}: no answers in {period}.", window=window, link=link
        )
    current = _estimate(rule, now_part, "1")
    estimate, low, high, n, customers = _value(current)
    digits = 0 if rule.metric == "nps" else 1
    described = (
        f"{label}: {_number(estimate, digits)} (95% CI {_number(low, digits)} to {_number(high, digits)}; "
        f"n = {n:,} responses from {customers:,} customers) in {period}"
    )
    base = {
        "estimate": estimate,
        "low": low,
        "high": high,
        "n": n,
        "customers": customers,
        "window": window,
        "link": link,
    }
    if n < min_n or customers < MIN_GROUP_CUSTOMERS:
        return Evaluation(
            rule,
            "too few",
            None,
            f"{described} — too few to alert on (at least {min_n} responses from {MIN_GROUP_CUSTOMERS} customers).",
            **base,
        )
    if rule.condition in ("below", "above"):
        holds = estimate < rule.threshold if rule.condition == "below" else estimate > rule.threshold
        side = "below" if estimate < rule.threshold else "above" if estimate > rule.threshold else "at"
        verb = "is" if holds else "is not"
        headline = (
            f"{label} {verb} {rule.condition} {_number(rule.threshold, digits)}: {_number(estimate, digits)}"
        )
        return Evaluation(
            rule,
            "met" if holds else "not met",
            holds,
            f"{described}, {side} the rule's {_number(rule.threshold, digits)}.",
            headline=headline,
            **base,
        )
    previous_part = per_customer[per_customer["n2"] > 0]
    if previous_part.empty:
        return Evaluation(
            rule, "too few", None, f"{described}; no answers in the {days} days before to compare.", **base
        )
    previous = _estimate(rule, previous_part, "2")
    prev_estimate, _, _, prev_n, prev_customers = _value(previous)
    if prev_n < min_n or prev_customers < MIN_GROUP_CUSTOMERS:
        return Evaluation(
            rule,
            "too few",
            None,
            f"{described}; the {days} days before have too few answers to compare ({prev_n:,} from "
            f"{prev_customers:,} customers).",
            **base,
        )
    if rule.metric in ("nps", "csat"):
        names = ["W1", "P1", "D1", "W2", "P2", "D2"] if rule.metric == "nps" else ["W1", "S1", "W2", "S2"]
        diff = clustered.period_difference_share(per_customer[[*names, "n1", "n2"]], rule.metric)
    else:
        diff = clustered.period_difference(per_customer[["W1", "S1", "W2", "S2", "n1", "n2"]])
    significant = not math.isnan(diff.p_value) and diff.p_value < SIGNIFICANCE
    direction = "fell" if diff.delta < 0 else "rose"
    holds = significant and (
        rule.condition == "changes"
        or (rule.condition == "falls" and diff.delta < 0)
        or (rule.condition == "rises" and diff.delta > 0)
    )
    unit = " points" if rule.metric == "nps" or rule.metric == "csat" else ""
    change = (
        f"{'down' if diff.delta < 0 else 'up'} {_number(abs(diff.delta), digits)}{unit} from "
        f"{_number(prev_estimate, digits)} in the {days} days before (95% CI of the change "
        f"{_number(diff.low, digits)} to "
        f"{_number(diff.high, digits)}; p = {diff.p_value:.3g}, customer-clustered period z-test)"
    )
    headline = (
        f"{label} {direction} {'significantly' if significant else '(not significantly)'}: "
        f"{_number(estimate, digits)}, was {_number(prev_estimate, digits)}"
    )
    return Evaluation(
        rule,
        "met" if holds else "not met",
        holds,
        f"{described}, {change}.",
        headline=headline,
        previous=prev_estimate,
        delta=diff.delta,
        delta_low=diff.low,
        delta_high=diff.high,
        p_value=diff.p_value,
        **base,
    )
