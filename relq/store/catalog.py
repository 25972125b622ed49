"""What the store holds: segment dimensions and their values, survey waves, the data's period."""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.store import schema
from relq.store.filters import customer_dimension

__all__ = ["dimensions", "dimension_values", "waves", "period_bounds"]


def dimensions(conn: Connection) -> list[str]:
    """Built-in segment dimensions, then every imported extra CRM field."""
    extra = conn.execute(
        sa.select(schema.customer_fields.c.field).distinct().order_by(schema.customer_fields.c.field)
    ).scalars()
    return [*schema.SEGMENT_DIMENSIONS, *[f for f in extra if f not in schema.SEGMENT_DIMENSIONS]]


def dimension_values(conn: Connection, name: str, limit: int = 500) -> list[str]:
    """The distinct values of a dimension among customers, most common first."""
    column = customer_dimension(name).label("value")
    rows = conn.execute(
        sa.select(column, sa.func.count().label("n"))
        .select_from(schema.customers)
        .group_by(column)
        .order_by(sa.desc("n"))
        .limit(limit)
    ).all()
    return [str(r.value) for r in rows if r.value is not None]


def waves(conn: Connection) -> list[str]:
    R = schema.survey_responses
    return [w for w in conn.execute(sa.select(R.c.wave).distinct().order_by(R.c.wave)).scalars() if w]


def period_bounds(conn: Connection) -> tuple[date, date] | None:
    """First and last submission dates of the stored responses (None when there are none)."""
    R = schema.survey_responses
    lo, hi = conn.execute(sa.select(sa.func.min(R.c.submitted_at), sa.func.max(R.c.submitted_at))).one()
    if lo is None:
        return None
    return pd.Timestamp(lo).date(), pd.Timestamp(hi).date()
