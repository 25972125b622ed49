"""How many customers a number rests on: the counts behind the rule that executives never see a
view, group, period or bar covering fewer than 5 customers.

A respondent is the customer behind a response; a response matched to no customer counts as a
respondent of its own (it is someone, and nobody else). Counted in the database, never by
pulling rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.store import schema
from relq.store.filters import SegmentFilter, customer_dimension

__all__ = [
    "ViewSize",
    "view_size",
    "respondents",
    "respondents_by_period",
    "respondents_by_segment",
    "personal_names",
]

R = schema.survey_responses
C = schema.customers


def _respondent():
    """The person behind a response: its customer, else the response itself."""
    return sa.func.coalesce(R.c.customer_id, sa.literal("response:") + R.c.response_id)


@dataclass(frozen=True)
class ViewSize:
    """Respondents with a survey response in view, and customers in the view's segment (any period)."""

    respondents: int
    customers: int

    def smallest(self) -> int:
        """The smaller of the two groups a number in this view can rest on (0 when no response:
        then only the customer numbers exist)."""
        return min(self.respondents, self.customers) if self.respondents else self.customers


def respondents(conn: Connection, flt: SegmentFilter) -> int:
    """Distinct respondents among the responses in ``flt``."""
    return int(
        conn.execute(
            sa.select(sa.func.count(sa.distinct(_respondent()))).where(flt.response_clause())
        ).scalar_one()
    )


def view_size(conn: Connection, flt: SegmentFilter) -> ViewSize:
    """How many respondents and customers the view ``flt`` covers."""
    customers = conn.execute(
        sa.select(sa.func.count()).select_from(C).where(flt.customer_clause())
    ).scalar_one()
    return ViewSize(respondents(conn, flt), int(customers))


def respondents_by_period(conn: Connection, flt: SegmentFilter, freq: str = "month") -> pd.DataFrame:
    """Distinct respondents per month (or quarter) of submission: period, customers."""
    if freq not in ("month", "quarter"):
        raise ValueError(f"freq must be 'month' or 'quarter', not {freq!r}")
    period = sa.func.date_trunc(freq, R.c.submitted_at).label("period")
    rows = conn.execute(
        sa.select(period, sa.func.count(sa.distinct(_respondent())).label("customers"))
        .where(flt.response_clause())
        .group_by(period)
    ).all()
    frame = pd.DataFrame(rows, columns=["period", "customers"])
    frame["period"] = pd.to_datetime(frame["period"])
    return frame


def respondents_by_segment(conn: Connection, flt: SegmentFilter, dimension: str) -> pd.DataFrame:
    """Distinct respondents per value of a customer dimension among the responses in ``flt``:
    segment, customers (unmatched responses have no segment and are left out)."""
    segment = customer_dimension(dimension).label("segment")
    rows = conn.execute(
        sa.select(segment, sa.func.count(sa.distinct(R.c.customer_id)).label("customers"))
        .select_from(R.join(C, R.c.customer_id == C.c.customer_id))
        .where(flt.response_clause())
        .group_by(segment)
    ).all()
    frame = pd.DataFrame(rows, columns=["segment", "customers"])
    frame = frame[frame["segment"].notna()]
    frame["segment"] = frame["segment"].astype(str)
    return frame.reset_index(drop=True)


def personal_names(conn: Connection, limit: int = 200_000) -> list[str]:
    """The names the CRM holds — customers' and contacts' names and account owners — to mask
    them inside free text (relq.core.redact)."""
    names = sa.union(
        sa.select(C.c.name.label("name")).where(C.c.name.is_not(None)),
        sa.select(C.c.owner.label("name")).where(C.c.owner.is_not(None)),
    ).subquery("names")
    return [str(n) for n in conn.execute(sa.select(names.c.name).limit(limit)).scalars() if str(n).strip()]
