"""What the store holds: segment dimensions and their values, survey waves, the data's period."""

from __future__ import annotations

from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from relq.store import schema
from relq.store.filters import customer_dimension

__all__ = [
    "MAX_EXTRA_DIMENSIONS",
    "MAX_DIMENSION_VALUES",
    "dimensions",
    "dimension_values",
    "waves",
    "period_bounds",
]

# Extra CRM fields offered as segments (filters, splits): at most this many, the most filled first,
# each with at most this many distinct values. Every field is stored; the others are no segment
# (a customer's notes or an id are not one, and a thousand filters help nobody).
MAX_EXTRA_DIMENSIONS = 25
MAX_DIMENSION_VALUES = 200


def dimensions(conn: Connection) -> list[str]:
    """Built-in segment dimensions, then the imported extra CRM fields that make segments (see
    :data:`MAX_EXTRA_DIMENSIONS`), by name."""
    f = schema.customer_fields.c
    rows = conn.execute(
        sa.select(f.field)
        .group_by(f.field)
        .having(sa.func.count(sa.distinct(f.value)) <= MAX_DIMENSION_VALUES)
        .order_by(sa.func.count(f.value).desc(), f.field)
        .limit(MAX_EXTRA_DIMENSIONS + len(schema.SEGMENT_DIMENSIONS))
    ).scalars()
    extra = [name for name in rows if name not in schema.SEGMENT_DIMENSIONS][:MAX_EXTRA_DIMENSIONS]
    return [*schema.SEGMENT_DIMENSIONS, *sorted(extra)]


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
