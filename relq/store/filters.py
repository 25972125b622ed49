"""The segment filter: one value object that every metric takes and that compiles to SQL.

Values are always bound parameters (``IN`` lists, dates), never formatted into SQL text.
It round-trips through a URL query string so a view can be bookmarked and shared.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from relq.store import schema
from relq.store.dialects import CUSTOMER_FIELD_LOOKUP, FieldLookup
from relq.store.latest import DEFAULT_THRESHOLD, latest_responses, quadrant_key, quadrant_levels
from relq.store.schema import QUALITY_FLAGS

__all__ = [
    "SegmentFilter",
    "Weighting",
    "WEIGHT_SCHEMES",
    "WEIGHT_LABELS",
    "DEFAULT_RAKE",
    "customer_dimension",
    "quadrant_customer_ids",
    "QUERY_KEYS",
    "EARLIEST_DAY",
    "LATEST_DAY",
]

QUERY_KEYS = ("since", "until", "wave", "quadrant", "exclude", "theme", "weight", "rake")
# The days a period may start or end on (the sidebar's date picker offers the same range).
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(2100, 12, 31)
_MAX_URL_VALUE = 500  # characters; longer values in a URL are no stored segment value

WEIGHT_SCHEMES: tuple[str, ...] = ("response", "customer", "value", "raked")
WEIGHT_LABELS = {
    "response": "response",
    "customer": "customer",
    "value": "annual value",
    "raked": "raked to the customer base",
}
DEFAULT_RAKE: tuple[str, ...] = ("region", "plan")


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min)


def customer_dimension(name: str) -> ColumnElement:
    """The SQL expression of a segment dimension, for the customer in ``customers`` rows.

    A built-in customer column (region, plan, …) or an imported extra CRM field.
    """
    if name in schema.customers.c and name in (*schema.SEGMENT_DIMENSIONS, "company"):
        return schema.customers.c[name]
    fields = schema.customer_fields
    field = sa.literal(name, sa.Text)
    lookup = (
        sa.select(fields.c.value)
        .where(fields.c.customer_id == schema.customers.c.customer_id, fields.c.field == field)
        .scalar_subquery()
    )
    return FieldLookup(lookup, schema.customers.c.customer_id, field, CUSTOMER_FIELD_LOOKUP)


@dataclass(frozen=True)
class Weighting:
    """How each response counts in a score (Methodology page → Weights).

    ``response``: each response once. ``customer``: each customer once (a response weighs 1 / that
    customer's responses in view having the score). ``value``: the customer's annual value, split the
    same way. ``raked``: customer weights raked (IPF) to the customer base on the ``rake``
    dimensions, split the same way. ``rake`` matters only for ``raked``.
    """

    scheme: str = "response"
    rake: tuple[str, ...] = DEFAULT_RAKE

    def __post_init__(self) -> None:
        if self.scheme not in WEIGHT_SCHEMES:
            raise ValueError(
                f"{self.scheme!r} is not a weighting; choose one of {', '.join(WEIGHT_SCHEMES)}."
            )
        rake = tuple(str(d) for d in self.rake)
        if not rake or len(set(rake)) != len(rake) or not all(rake):
            raise ValueError(f"rake needs one or more different dimensions, got {self.rake!r}.")
        object.__setattr__(self, "rake", rake)

    @property
    def per_customer(self) -> bool:
        """True when each response's weight comes from its customer (unmatched responses are left out)."""
        return self.scheme != "response"

    @property
    def label(self) -> str:
        if self.scheme == "raked":
            return f"raked to the customer base on {', '.join(d.replace('_', ' ') for d in self.rake)}"
        return WEIGHT_LABELS[self.scheme]

    def question(self) -> str:
        """What a score answers under this weighting, in the users' words."""
        return {
            "response": "what do our responses say",
            "customer": "what does the average customer feel",
            "value": "what does our revenue feel",
            "raked": "what would the whole customer base say",
        }[self.scheme]


@dataclass(frozen=True)
class SegmentFilter:
    """Which responses and customers a number covers.

    ``since``/``until`` are inclusive submission dates; ``customer`` holds (dimension, values)
    pairs; ``quadrant`` is a quadrant key such as ``x_high_y_low`` for the default pair and
    threshold; ``exclude_flags`` removes flagged responses — the user's visible choice;
    ``themes`` keeps the responses whose comment mentions any of these comment themes (and, for
    customer-level figures, the customers who wrote such a comment in the period).
    ``weighting`` says how each selected response counts (it selects nothing).
    """

    since: date | None = None
    until: date | None = None
    waves: tuple[str, ...] = ()
    customer: tuple[tuple[str, tuple[str, ...]], ...] = ()
    quadrant: str | None = None
    exclude_flags: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    weighting: Weighting = Weighting()

    # -- building -------------------------------------------------------------------------
    def with_dimension(self, name: str, values) -> SegmentFilter:
        rest = tuple((d, v) for d, v in self.customer if d != name)
        values = tuple(str(v) for v in values)
        return replace(self, customer=rest + (((name, values),) if values else ()))

    def values_of(self, name: str) -> tuple[str, ...]:
        return next((v for d, v in self.customer if d == name), ())

    def shifted_back(self) -> SegmentFilter | None:
        """The same filter over the previous period of equal length (None without both dates)."""
        if not (self.since and self.until):
            return None
        days = (self.until - self.since).days + 1
        return replace(self, since=self.since - timedelta(days=days), until=self.since - timedelta(days=1))

    @property
    def whole_history(self) -> bool:
        """No period, wave, quality-flag or theme restriction: only customers' segments and
        quadrants, which pick whole customers — what the stored per-customer tables built over the
        whole history can stand in for."""
        return not (self.since or self.until or self.waves or self.exclude_flags or self.themes)

    def picks_cells(self, *grouped: str | None) -> bool:
        """Whether the view picks its customers by segment cells only — no quadrant, segments chosen
        (and ``grouped``, a dimension a reader groups by) among ``schema.SEGMENT_SUM_DIMENSIONS`` —
        so the stored sums per segment cell can stand in for its customers' own."""
        chosen = [name for name, _ in self.customer] + [g for g in grouped if g is not None]
        return not self.quadrant and all(name in schema.SEGMENT_SUM_DIMENSIONS for name in chosen)

    def cell_clause(self, cells: sa.Table) -> ColumnElement:
        """WHERE clause on a table of segment cells (a column per dimension) for the view's
        segments; only for a view that :meth:`picks_cells`."""
        return sa.and_(sa.true(), *(cells.c[name].in_(list(values)) for name, values in self.customer))

    @property
    def is_empty(self) -> bool:
        return not (
            self.since
            or self.until
            or self.waves
            or self.customer
            or self.quadrant
            or self.exclude_flags
            or self.themes
        )

    # -- SQL ------------------------------------------------------------------------------
    def customer_clause(self) -> ColumnElement:
        """WHERE clause on ``customers`` for the customer-level dimensions, the quadrant and the
        comment themes (customers who wrote a comment on one of them in the period)."""
        clauses = [self._segment_clause()]
        if self.themes:
            responses = schema.survey_responses
            clauses.append(
                schema.customers.c.customer_id.in_(
                    sa.select(responses.c.customer_id).where(
                        self.period_clause(responses.c.submitted_at), self.theme_clause(responses)
                    )
                )
            )
        return sa.and_(*clauses)

    def _segment_clause(self) -> ColumnElement:
        clauses: list[ColumnElement] = []
        for name, values in self.customer:
            clauses.append(customer_dimension(name).in_(list(values)))
        if self.quadrant:
            clauses.append(schema.customers.c.customer_id.in_(quadrant_customer_ids(self)))
        return sa.and_(sa.true(), *clauses)

    def theme_clause(self, responses: sa.Table = schema.survey_responses) -> ColumnElement:
        """The response's comment mentions one of ``themes`` (stored assignments)."""
        assigned = schema.comment_themes
        return responses.c.response_id.in_(
            sa.select(assigned.c.response_id).where(
                assigned.c.theme.in_(list(self.themes)), assigned.c.source.in_(("rule", "discovered"))
            )
        )

    def period_clause(self, column: sa.Column) -> ColumnElement:
        clauses = []
        if self.since:
            clauses.append(column >= _start_of(self.since))
        if self.until:
            clauses.append(column < _start_of(self.until + timedelta(days=1)))
        return sa.and_(sa.true(), *clauses)

    def response_clause(self, responses: sa.Table = schema.survey_responses) -> ColumnElement:
        """WHERE clause on ``survey_responses``: period, wave, flags and the customer's segment."""
        clauses = [self.period_clause(responses.c.submitted_at)]
        if self.waves:
            clauses.append(responses.c.wave.in_(list(self.waves)))
        for flag in self.exclude_flags:
            clauses.append(sa.not_(responses.c[flag]))
        if self.customer or self.quadrant:
            clauses.append(
                responses.c.customer_id.in_(
                    sa.select(schema.customers.c.customer_id).where(self._segment_clause())
                )
            )
        if self.themes:
            clauses.append(self.theme_clause(responses))
        return sa.and_(*clauses)

    # -- URL ------------------------------------------------------------------------------
    def to_query_params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.since:
            params["since"] = self.since.isoformat()
        if self.until:
            params["until"] = self.until.isoformat()
        if self.waves:
            params["wave"] = ",".join(self.waves)
        if self.quadrant:
            params["quadrant"] = self.quadrant
        if self.exclude_flags:
            params["exclude"] = ",".join(self.exclude_flags)
        if self.themes:
            params["theme"] = "|".join(self.themes)
        for name, values in self.customer:
            params[f"seg.{name}"] = "|".join(values)
        if self.weighting.scheme != "response":
            params["weight"] = self.weighting.scheme
            if self.weighting.scheme == "raked" and self.weighting.rake != DEFAULT_RAKE:
                params["rake"] = ",".join(self.weighting.rake)
        return params

    @classmethod
    def from_query_params(cls, params) -> SegmentFilter:
        """Read a filter back from a query string; unknown or malformed values are ignored."""

        def day(key):
            try:
                value = date.fromisoformat(str(params.get(key, ""))[:10]) if params.get(key) else None
            except ValueError:
                return None
            return value if value is None or EARLIEST_DAY <= value <= LATEST_DAY else None

        def clean(value: str) -> bool:
            return bool(value) and len(value) <= _MAX_URL_VALUE and value.isprintable()

        def listed(key, sep=","):
            raw = params.get(key)
            return tuple(v for v in str(raw).split(sep) if clean(v)) if raw else ()

        def quadrant():
            key = params.get("quadrant")
            try:
                return quadrant_levels(key) and key if key else None
            except ValueError:
                return None

        customer = tuple(
            (key[4:], listed(key, "|"))
            for key in sorted(params)
            if key.startswith("seg.") and clean(key[4:]) and listed(key, "|")
        )
        exclude = tuple(f for f in listed("exclude") if f in QUALITY_FLAGS)
        since, until = day("since"), day("until")
        if since and until and since > until:  # the same period, written the other way round
            since, until = until, since
        scheme = params.get("weight") if params.get("weight") in WEIGHT_SCHEMES else "response"
        rake = tuple(dict.fromkeys(listed("rake"))) or DEFAULT_RAKE
        return cls(
            since=since,
            until=until,
            waves=listed("wave"),
            customer=customer,
            quadrant=quadrant(),
            exclude_flags=exclude,
            themes=listed("theme", "|"),
            weighting=Weighting(scheme, rake),
        )


def quadrant_customer_ids(flt: SegmentFilter) -> sa.Select:
    """customer_id of the customers in ``flt.quadrant`` for trust × satisfaction at 50.

    Used by :meth:`SegmentFilter.customer_clause`; the inner query drops the quadrant so it does
    not call itself.
    """
    if flt.quadrant is None:
        raise ValueError("quadrant_customer_ids needs a filter with a quadrant.")
    quadrant_levels(flt.quadrant)
    latest = latest_responses(
        replace(flt, quadrant=None, themes=()).response_clause(), "trust", "satisfaction", details=False
    )
    key = quadrant_key(latest.c.x_score, latest.c.y_score, DEFAULT_THRESHOLD, DEFAULT_THRESHOLD)
    return sa.select(latest.c.customer_id).where(key == flt.quadrant)
