"""The demo company's case history: the calls its CX team made to detractors who left a comment.

A believable backlog for the Cases page and enough closed cases for "Did it work": over the nine
months before the last survey wave, about one in six customers whose response was a detractor's with a comment
got a case (their first such response), opened a day later with the CRM owner as owner and the
reason's 2-business-day SLA. Older cases are closed — mostly resolved, some with no answer —
and the last wave's are still open or contacted. Drawn from their own random stream, so the
rest of the demo is the same with or without them. Nothing here changes the customers' later
answers: "Did it work" on the demo shows what an honest comparison looks like when the calls had
no built-in effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from relq.store.cases import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    OUTCOMES,
    REASONS,
    STATUS_LABELS,
    business_days_after,
)

__all__ = ["demo_cases"]

SHARE_CALLED = 0.17
MONTHS_OF_CASES = 9
_COLUMNS = [
    "customer_id",
    "reason",
    "source",
    "detail",
    "response_id",
    "status",
    "owner",
    "due_on",
    "outcome",
    "opened_at",
    "opened_by",
    "contacted_at",
    "closed_at",
    "updated_at",
    "updated_by",
    "version",
    "open_key",
]
_EVENT_COLUMNS = ["customer_id", "opened_at", "changed_at", "changed_by", "action", "detail"]
RULE_USER = "RelQ rules"


def demo_cases(
    customers: pd.DataFrame, responses: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo's cases (columns of ``cases`` but the id) and their history (columns of
    ``case_events`` but the case id, with the case's customer_id and opened_at to find it by)."""
    rng = np.random.default_rng([seed, 15])
    empty = pd.DataFrame(columns=_COLUMNS), pd.DataFrame(columns=_EVENT_COLUMNS)
    r = responses
    if r.empty:
        return empty
    last_wave = pd.Timestamp(r["submitted_at"].max())
    since = last_wave - pd.DateOffset(months=MONTHS_OF_CASES)
    comment = r["comment"].fillna("").astype(str).str.strip()
    candidates = r[
        (r["nps"] <= 6) & (comment != "") & r["customer_id"].notna() & (r["submitted_at"] >= since)
    ]
    candidates = candidates.sort_values(["submitted_at", "response_id"]).drop_duplicates("customer_id")
    candidates = candidates.merge(customers[["customer_id", "owner", "churned_at"]], on="customer_id")
    churned = pd.to_datetime(candidates["churned_at"])
    candidates = candidates[churned.isna() | (churned > candidates["submitted_at"])]
    chosen = candidates[rng.random(len(candidates)) < SHARE_CALLED].reset_index(drop=True)
    n = len(chosen)
    if n == 0:
        return empty
    opened = (chosen["submitted_at"] + pd.to_timedelta(rng.uniform(0.2, 1.5, n), unit="D")).dt.round("s")
    contacted = (opened + pd.to_timedelta(rng.uniform(0.3, 5.0, n), unit="D")).dt.round("s")
    closed = (contacted + pd.to_timedelta(rng.uniform(0.5, 14.0, n), unit="D")).dt.round("s")
    recent = opened > last_wave - pd.Timedelta(days=30)  # the latest wave's calls are still being made
    draw = rng.random(n)
    status = np.where(
        recent,
        np.where(draw < 0.55, "open", "contacted"),
        np.where(draw < 0.78, "resolved", np.where(draw < 0.96, "no_answer", "contacted")),
    )
    # a case with no answer was tried, never reached: no contact day, closed when given up
    contacted = contacted.where((status != "open") & (status != "no_answer"))
    closed = closed.where(np.isin(status, CLOSED_STATUSES))
    pick = rng.integers(0, len(OUTCOMES) - 2, n)  # the usual outcomes; not "leaving" or "could not reach"
    outcome = np.where(
        status == "resolved",
        np.array(OUTCOMES, dtype=object)[pick],
        np.where(status == "no_answer", "Could not reach", None),
    )
    sla = REASONS["detractor_comment"].sla_days
    due = [business_days_after(t.date(), sla) for t in opened]
    comments = chosen["comment"].astype(str).str.slice(0, 300)
    source = "rule: every new detractor with a comment"
    cases = pd.DataFrame(
        {
            "customer_id": chosen["customer_id"],
            "reason": "detractor_comment",
            "source": source,
            "detail": [
                f"NPS {int(s)} on {t:%d %b %Y}: “{c}”"
                for s, t, c in zip(chosen["nps"], chosen["submitted_at"], comments, strict=True)
            ],
            "response_id": chosen["response_id"],
            "status": status,
            "owner": chosen["owner"],
            "due_on": pd.to_datetime(due),
            "outcome": outcome,
            "opened_at": opened,
            "opened_by": RULE_USER,
            "contacted_at": contacted,
            "closed_at": closed,
            "updated_at": pd.concat([opened, contacted, closed], axis=1).max(axis=1),
            "updated_by": chosen["owner"],
            "version": 1,
            "open_key": [
                f"{c}|detractor_comment" if s in OPEN_STATUSES else None
                for c, s in zip(chosen["customer_id"], status, strict=True)
            ],
        },
        columns=_COLUMNS,
    )
    events = []
    for c in cases.itertuples():
        key = (c.customer_id, c.opened_at)
        events.append(
            (*key, c.opened_at, RULE_USER, "opened", f"opened from {source}; due {c.due_on:%d %b %Y}")
        )
        if not pd.isna(c.contacted_at):
            events.append((*key, c.contacted_at, c.owner, "change", "status Open → Contacted"))
        if not pd.isna(c.closed_at):
            before = "Contacted" if not pd.isna(c.contacted_at) else "Open"
            events.append(
                (*key, c.closed_at, c.owner, "change", f"status {before} → {STATUS_LABELS[c.status]}")
            )
            if c.outcome:
                events.append((*key, c.closed_at, c.owner, "change", f"outcome — → {c.outcome}"))
    return cases, pd.DataFrame(events, columns=_EVENT_COLUMNS)
