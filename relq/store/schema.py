"""The RelQ data model as SQLAlchemy Core tables.

Every data row remembers the import that added it (``import_id``) so an import can be undone
whole. The demo company is import 0's kin: its ``imports`` row has ``is_demo`` true.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
)

from relq.core.instrument import PILLARS
from relq.store import dialects  # noqa: F401 - registers how these tables render on each engine

__all__ = [
    "metadata",
    "customers",
    "customer_fields",
    "transactions",
    "tickets",
    "survey_responses",
    "survey_answers",
    "imports",
    "import_rejects",
    "audit_log",
    "theme_rules",
    "theme_models",
    "theme_discovered",
    "comment_facts",
    "comment_themes",
    "churn_scores",
    "purchase_summary",
    "customer_lifetimes",
    "purchase_months",
    "answer_rows",
    "ANSWER_COLUMNS",
    "derived_versions",
    "response_sums",
    "theme_sums",
    "DERIVED_TABLES",
    "customer_totals",
    "latest_pairs",
    "latest_comments",
    "SEGMENT_SUM_DIMENSIONS",
    "segment_months",
    "segment_totals",
    "segment_quarters",
    "segment_items",
    "segment_quality",
    "customer_activity",
    "segment_cohorts",
    "segment_themes",
    "account_waves",
    "app_settings",
    "data_changes",
    "cases",
    "case_events",
    "case_reasons",
    "case_rules",
    "case_rule_watch",
    "alert_rules",
    "alert_state",
    "alert_events",
    "outbox",
    "PILLARS",
    "CUSTOMER_FIELDS",
    "TRANSACTION_FIELDS",
    "TICKET_FIELDS",
    "RESPONSE_FIELDS",
    "SEGMENT_DIMENSIONS",
    "QUALITY_FLAGS",
    "LISTWISE",
]

# The data-quality flag columns of survey_responses: one list for the importer and the filter.
QUALITY_FLAGS: tuple[str, ...] = ("flag_duplicate", "flag_speeder", "flag_straightliner", "flag_out_of_range")
# The variables of the Drivers page's regression (the pillars, then the outcome NPS), whose sums over
# the responses having all of them are stored by month in response_sums.
LISTWISE: tuple[str, ...] = (*PILLARS, "nps")


metadata = MetaData()


def _clickhouse(order_by: str) -> dict:
    """How a table is laid out on ClickHouse (relq.store.dialects renders it): a MergeTree sorted
    by ``order_by`` — the columns RelQ's queries filter and group by, most selective first."""
    return {"clickhouse": {"engine": "MergeTree", "order_by": order_by}}


import_id_seq = Sequence("import_id_seq", metadata=metadata)

imports = Table(
    "imports",
    metadata,
    Column("import_id", Integer, import_id_seq, primary_key=True, server_default=import_id_seq.next_value()),
    Column("file_name", Text, nullable=False),
    Column("file_hash", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("detected_format", Text),
    Column("mapping", Text),  # JSON, the mapping-file format (README → Mapping files)
    Column("rows_total", Integer, nullable=False, default=0),
    Column("rows_imported", Integer, nullable=False, default=0),
    Column("rows_rejected", Integer, nullable=False, default=0),
    Column("rows_duplicate", Integer, nullable=False, default=0),
    Column("rows_unmatched", Integer, nullable=False, default=0),
    Column("imported_by", Text),
    Column("imported_at", DateTime, nullable=False),
    Column("is_demo", Boolean, nullable=False, default=False),
    info=_clickhouse("import_id"),
)

import_rejects = Table(
    "import_rejects",
    metadata,
    Column("import_id", Integer, nullable=False),
    Column("row_number", Integer, nullable=False),  # 1-based data row in the file
    Column("column_name", Text),
    Column("value", Text),
    Column("reason", Text, nullable=False),
    Column("raw", Text),  # the whole row as JSON, so nothing is lost
    Index("ix_import_rejects_import", "import_id"),
    info=_clickhouse("import_id, row_number"),
)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("external_ref", Text),
    Column("name", Text),
    Column("email", Text),
    Column("company", Text),
    Column("region", Text),
    Column("industry", Text),
    Column("plan", Text),
    Column("owner", Text),
    Column("acquired_at", Date),
    Column("churned_at", Date),
    Column("annual_value", Double),
    # Derived from transactions after every import (relq.store.refresh_derived).
    Column("cohort", Text),  # 'YYYY-MM' of acquired_at, else of the first transaction
    Column("value_tier", Text),
    Column("lifecycle_stage", Text),
    Column("import_id", Integer),
    Index("ix_customers_email", "email"),
    info=_clickhouse("customer_id"),
)

# Any extra CRM column an analyst imports becomes a segment dimension, stored long.
customer_fields = Table(
    "customer_fields",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("field", Text, nullable=False),
    Column("value", Text),
    Column("import_id", Integer),
    UniqueConstraint("customer_id", "field", name="uq_customer_fields"),
    info=_clickhouse("field, customer_id"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("transaction_id", Text, primary_key=True),  # given, else a content hash
    Column("customer_id", Text, nullable=False),
    Column("occurred_at", DateTime, nullable=False),
    Column("amount", Double, nullable=False),
    Column("import_id", Integer),
    # PostgreSQL only (as the two on survey_responses): DuckDB's scans read columns with zone maps
    # and never need them, while each import paid to keep their in-memory ART indexes up to date.
    Index("ix_transactions_customer", "customer_id", "occurred_at").ddl_if(dialect="postgresql"),
    # the data's end (the latest purchase) read from the index instead of every row
    Index("ix_transactions_occurred", "occurred_at").ddl_if(dialect="postgresql"),
    info=_clickhouse("customer_id, occurred_at"),
)

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("opened_at", DateTime, nullable=False),
    Column("first_response_at", DateTime),
    Column("resolved_at", DateTime),
    Column("channel", Text),
    Column("status", Text),
    Column("import_id", Integer),
    Index("ix_tickets_customer", "customer_id"),
    Index("ix_tickets_opened", "opened_at").ddl_if(dialect="postgresql"),
    info=_clickhouse("customer_id, opened_at"),
)

survey_responses = Table(
    "survey_responses",
    metadata,
    Column("response_id", Text, primary_key=True),  # given, else a content hash
    Column("customer_id", Text),  # null when no customer matched
    Column("email", Text),
    Column("submitted_at", DateTime, nullable=False),
    Column("wave", Text),  # survey wave, e.g. '2025-Q3'
    Column("duration", Double),  # seconds
    Column("nps", Integer),
    Column("csat", Integer),
    Column("ces", Integer),
    Column("comment", Text),
    Column("trust", Double),
    Column("commitment", Double),
    Column("satisfaction", Double),
    Column("rq", Double),
    Column("flag_duplicate", Boolean, nullable=False, default=False),
    Column("flag_speeder", Boolean, nullable=False, default=False),
    Column("flag_straightliner", Boolean, nullable=False, default=False),
    Column("flag_out_of_range", Boolean, nullable=False, default=False),
    Column("import_id", Integer),
    # PostgreSQL only: on DuckDB these cost 2.6 s of a 1M-response import (bench/RESULTS.md) and
    # its column scans never use them; store.create_schema drops them from older DuckDB stores.
    Index("ix_responses_submitted", "submitted_at").ddl_if(dialect="postgresql"),
    Index("ix_responses_customer", "customer_id", "submitted_at").ddl_if(dialect="postgresql"),
    info=_clickhouse("toStartOfMonth(submitted_at), ifNull(customer_id, ''), submitted_at"),
)

survey_answers = Table(
    "survey_answers",
    metadata,
    Column("response_id", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("value", Double),
    Column("import_id", Integer),
    # No UNIQUE (response_id, item_id): an answer is written only in the transaction that inserts
    # its response, and survey_responses' primary key admits each response once, so answers
    # cannot repeat. On DuckDB the constraint kept an in-memory ART index over every stored
    # answer (≈10 s and most of the memory of a 1M-response import, bench/RESULTS.md); the
    # analytical scans never use it. PostgreSQL keeps an ordinary index for joins on few responses.
    Index("ix_survey_answers_response", "response_id").ddl_if(dialect="postgresql"),
    info=_clickhouse("response_id, item_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("logged_at", DateTime, nullable=False),
    Column("user_email", Text),
    Column("action", Text, nullable=False),  # import, undo_import, export, edit_instrument, ...
    Column("detail", Text),
    info=_clickhouse("logged_at"),
)

# Comment themes (relq.ingest.themes): the analysts' rules, versioned (an edit adds a version; a
# deletion is a version with active false), and the latest discovery (TF-IDF + NMF) kept as plain
# numbers (vocabulary, idf, components as JSON, never a pickled model) so comments imported later
# are assigned to the same discovered themes.
theme_rules = Table(
    "theme_rules",
    metadata,
    Column("theme", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("phrases", Text, nullable=False),  # JSON list of phrases, keywords, /regular expressions/
    Column("exclusions", Text, nullable=False),  # JSON list, same syntax
    Column("source", Text, nullable=False),  # starter | analyst | discovered
    Column("active", Boolean, nullable=False),
    Column("edited_by", Text),
    Column("edited_at", DateTime, nullable=False),
    Column("note", Text),
    UniqueConstraint("theme", "version", name="uq_theme_rules_version"),
)

theme_models = Table(
    "theme_models",
    metadata,
    Column("discovery_id", Integer, nullable=False),
    Column("k", Integer, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("sample_size", Integer, nullable=False),  # comments the model was fitted on
    Column("comments", Integer, nullable=False),  # comments that could be themed at the time
    Column("vocabulary", Text, nullable=False),  # JSON list of terms
    Column("idf", Text, nullable=False),  # JSON list, one per term
    Column("components", Text, nullable=False),  # JSON k × terms
    Column("fitted_by", Text),
    Column("fitted_at", DateTime, nullable=False),
)

theme_discovered = Table(
    "theme_discovered",
    metadata,
    Column("discovery_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("theme", Text, nullable=False),  # its top terms, until an analyst promotes it to a rule
    Column("terms", Text, nullable=False),  # JSON list of the top terms, strongest first
    Column("promoted_to", Text),  # the rule it became
)

# One row per stored comment once read: its language (comments in other languages are counted
# as not themed) and its VADER sentiment. Rows belong to the response's import.
comment_facts = Table(
    "comment_facts",
    metadata,
    Column("response_id", Text, nullable=False),
    Column("language", Text, nullable=False),  # en, fr, de, es, und (undetermined) or another code
    Column("themable", Boolean, nullable=False),
    Column("sentiment", Text, nullable=False),  # positive | neutral | negative
    Column("compound", Double, nullable=False),
    Column("import_id", Integer),
    Index("ix_comment_facts_response", "response_id").ddl_if(dialect="postgresql"),
)

# The stored assignments every page and the theme filter read: a response mentions a theme.
comment_themes = Table(
    "comment_themes",
    metadata,
    Column("response_id", Text, nullable=False),
    Column("theme", Text, nullable=False),
    Column("source", Text, nullable=False),  # rule | discovered
    Column("score", Double, nullable=False),  # 1 for a rule; the topic's weight for discovery
    Column("import_id", Integer),
    # DuckDB: no index (an in-memory ART index over every assignment costs more than the hash
    # joins it would save); PostgreSQL: the filter's semi-join looks up by theme.
    Index("ix_comment_themes_theme", "theme", "response_id").ddl_if(dialect="postgresql"),
    Index("ix_comment_themes_response", "response_id").ddl_if(dialect="postgresql"),
)

# Today's churn-risk scores as the last fit left them (relq.analyses.churn_risk.save_scores, run
# after each import and the demo's load), so a page's first visit reads them instead of fitting
# the model again. Only rows of the current data version and recipe (horizon, at-risk days, churn
# basis) are read; a header row (position 0, no customer) carries the message when there is no
# score. Personal fields are not copied here: they are joined from customers when read.
churn_scores = Table(
    "churn_scores",
    metadata,
    Column("recipe", Text, nullable=False),
    Column("data_version", Integer, nullable=False),
    Column("position", Integer, nullable=False),  # riskiest first, from 1
    Column("customer_id", Text),
    Column("probability", Double),
    Column("factors", Text),
    Column("factor_1", Text),
    Column("factor_2", Text),
    Column("factor_3", Text),
    Column("days_since_purchase", Double),
    Column("wave_latest", Text),
    info=_clickhouse("recipe, data_version, position"),
)

# Each customer's purchases summed once per change of the stored data, so retention, cohorts and
# survival read one row per customer (and one per customer and month with a purchase) instead of
# grouping every purchase on every page run: relq.analyses.retention.save_purchase_summary rebuilds
# them after each import, undo and demo load (with today's churn-risk scores), and they are read only
# while derived_versions says they are of the current data version and data end. DuckDB and
# PostgreSQL; ClickHouse reads the purchases themselves.
purchase_summary = Table(
    "purchase_summary",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("first_at", DateTime, nullable=False),
    Column("last_at", DateTime, nullable=False),
    Column("revenue", Double, nullable=False),
    Column("revenue_12m", Double, nullable=False),  # the 365 days before the data's end
    info=_clickhouse("customer_id"),
)

# Each customer's span as the Retention page reads it (relq.analyses.retention.save_purchase_summary,
# in the same transaction): one row per customer of the CRM or with a purchase — the full join of
# customers and purchase_summary — with its acquisition and churn dates and its purchases summed
# (no purchase: NULL first and last, revenue 0). A page's lifetimes read it instead of that join, and
# join the customers only for a CRM field or a segment.
customer_lifetimes = Table(
    "customer_lifetimes",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("acquired_at", Date),
    Column("churned_at", Date),
    Column("first_at", DateTime),
    Column("last_at", DateTime),
    Column("revenue", Double, nullable=False),
    Column("revenue_12m", Double, nullable=False),
    info=_clickhouse("customer_id"),
)

purchase_months = Table(
    "purchase_months",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("m", Integer, nullable=False),  # months since year 0: year·12 + month − 1
    # the customer's cohort when it was built: acquired_at, else the first purchase (day and month)
    Column("start_day", Date, nullable=False),
    Column("start_m", Integer, nullable=False),
    info=_clickhouse("customer_id, m"),
)

# The stored answers pivoted to one row per response, as the reliability statistics read them:
# column c<i> holds the answer to the instrument's i-th item on its scale, reverse-keyed items
# recoded, out-of-scale answers NULL (relq.measures.reliability.save_answer_rows, rebuilt with the
# purchase summary). Read only while derived_versions says it is of the current data version and
# of the same instrument (its recipe); an instrument of more than ANSWER_COLUMNS items, or ClickHouse,
# reads the answers themselves. Every response with a stored answer has a row, carrying the
# response's time, customer, wave and quality flags, so a view's filter applies to the rows
# themselves, without joining the responses (NULL for an answer whose response is not stored).
ANSWER_COLUMNS = 40
answer_rows = Table(
    "answer_rows",
    metadata,
    Column("response_id", Text, nullable=False),
    Column("submitted_at", DateTime),
    Column("customer_id", Text),
    Column("wave", Text),
    *(Column(flag, Boolean) for flag in QUALITY_FLAGS),
    *(Column(f"c{i}", Double) for i in range(ANSWER_COLUMNS)),
    # over every stored answer of the response, as the data-quality checks read them
    Column("answers", Integer, nullable=False),  # answers given (a value, in scale or not)
    Column("lowest", Double),
    Column("highest", Double),
    Column("out_of_scale", Integer, nullable=False),  # answers outside the questionnaire's scale
    info=_clickhouse("response_id"),
)


def _month_row_keys() -> list[Column]:
    """The keys of a stored month table (response_sums, theme_sums): the month's first instant, the
    customer (an unmatched response: its id in response_id), the wave and the quality flags — what a
    view's filter reads (relq.store.database.month_row_keys makes them from the responses)."""
    return [
        Column("submitted_at", DateTime, nullable=False),
        Column("customer_id", Text),
        Column("response_id", Text),  # an unmatched response's id; NULL for a customer's row
        Column("wave", Text),
        *(Column(flag, Boolean, nullable=False) for flag in QUALITY_FLAGS),
    ]


_MONTH_KEYS = ("submitted_at", "customer_id", "response_id", "wave", *QUALITY_FLAGS)

# The survey scores' per-customer sums by calendar month, as every customer-clustered score reads them
# (relq.measures.customer_sums.save_response_sums, rebuilt with the purchase summary): one row per
# month, customer (an unmatched response: per response, its id in response_id), wave and set of
# quality flags, with the responses, and per score the responses having it and Σ(y − shift) (NPS:
# promoters and detractors; CSAT: answers 4–5). ``submitted_at`` is the month's first instant, so the
# rows stand in for the responses only when the view's dates start and end on month boundaries and no
# comment theme is chosen; read only while derived_versions says they are of the current data version.
response_sums = Table(
    "response_sums",
    metadata,
    *_month_row_keys(),
    # Counts too are DOUBLE: whole numbers, exact below 2⁵³, and DuckDB sums doubles several times
    # faster than integers, whose sums it widens to 128 bits (bench/RESULTS.md).
    Column("responses", Double, nullable=False),
    *(
        Column(f"{name}_{part}", Double, nullable=False)
        for name in ("trust", "commitment", "satisfaction", "rq", "ces")
        for part in ("n", "s")
    ),
    *(Column(name, Double, nullable=False) for name in ("nps_n", "nps_p", "nps_d", "csat_n", "csat_s")),
    # the Drivers page's sums over the responses having all of LISTWISE (the pillars and NPS): their
    # count, Σx of each variable and Σxy of each pair (i ≤ j), in LISTWISE order
    Column("lw_n", Double, nullable=False),
    *(Column(f"lw_s_{i}", Double, nullable=False) for i in range(len(LISTWISE))),
    *(
        Column(f"lw_c_{i}_{j}", Double, nullable=False)
        for i in range(len(LISTWISE))
        for j in range(i, len(LISTWISE))
    ),
    info=_clickhouse("submitted_at, ifNull(customer_id, '')"),
)

# The customer dimensions the stored segment sums are kept by (see segment_months below).
SEGMENT_SUM_DIMENSIONS: tuple[str, ...] = ("region", "industry", "plan", "value_tier", "lifecycle_stage")

# Each customer's sums over the whole history (relq.measures.customer_sums.save_customer_totals,
# rebuilt with the month sums): one row per customer (an unmatched response: per response, its id in
# response_id) with the columns of response_sums — what a view with no period, wave, quality-flag or
# theme restriction reads for its per-customer sums instead of adding up each customer's months.
customer_totals = Table(
    "customer_totals",
    metadata,
    Column("customer_id", Text),
    Column("response_id", Text),  # an unmatched response's id; NULL for a customer's row
    *(Column(c.name, Double, nullable=False) for c in response_sums.c if c.name not in _MONTH_KEYS),
    # the row's place among all rows: customers by id, then unmatched responses by id, in code point
    # order (the Drivers page's seeded bootstrap draws rows by position; sorting by this integer
    # after the read replaces a sort of the ids in the query), and the customer's value of each
    # dimension of SEGMENT_SUM_DIMENSIONS when built (NULL for an unmatched response), so a read
    # grouped by one of them needs no join to the customers
    Column("row_order", Integer),
    *(Column(d, Text) for d in SEGMENT_SUM_DIMENSIONS),
    info=_clickhouse("ifNull(customer_id, '')"),
)

# The survey scores' sums over customers per segment cell (relq.measures.customer_sums.
# save_segment_sums, rebuilt with the month sums): one row per combination of these customer
# dimensions found among the customers (NULL where a customer has no value, and for the unmatched
# responses) — by calendar month in segment_months (each month's customers its clusters), over the
# whole history in segment_totals — with what a customer-clustered score needs of the customers in
# it: responses, customers, unmatched responses, and per score C, N, U, W, S, WW, WS, SS (NPS also
# P, D, promoters, detractors), each a sum over the customers, so the cells of a view add up to the
# view's. Read for a view counting each response once, choosing segments of these dimensions only,
# with every wave and quality flag and no theme or quadrant (segment_months: dates on month
# boundaries; segment_totals: the whole history), while derived_versions says they are current.
_SUMMED_SCORES = ("trust", "commitment", "satisfaction", "rq", "ces", "nps", "csat")
SEGMENT_SUM_COLUMNS: tuple[str, ...] = (
    "responses",
    "customers",
    "unmatched",
    *(f"{name}_{part}" for name in _SUMMED_SCORES for part in ("C", "N", "U", "W", "S", "WW", "WS", "SS")),
    "nps_P",
    "nps_D",
    "nps_promoters",
    "nps_detractors",
)


def _cell_table(name: str, *columns: Column, order_by: str = "tuple()") -> Table:
    """A table of segment cells: a column per dimension of SEGMENT_SUM_DIMENSIONS, then ``columns``."""
    return Table(
        name,
        metadata,
        *(Column(d, Text) for d in SEGMENT_SUM_DIMENSIONS),
        *columns,
        info=_clickhouse(order_by),
    )


def _cell_stats_table(name: str, *keys: str) -> Table:
    """A table of segment cells holding one row per statistic: the cell, ``keys`` (Text), ``stat`` and
    its ``value`` — written and read through relq.measures.customer_sums.save_cell_stats / cell_stats."""
    return _cell_table(
        name,
        *(Column(key, Text, nullable=False) for key in keys),
        Column("stat", Text, nullable=False),
        Column("value", Double, nullable=False),
        order_by=", ".join((*keys, "stat")),
    )


def _sum_columns(prefix: str = "") -> list[Column]:
    return [Column(f"{prefix}{c}", Double) for c in SEGMENT_SUM_COLUMNS]


segment_months = _cell_table(
    "segment_months", Column("period", Date, nullable=False), *_sum_columns(), order_by="period"
)
segment_totals = _cell_table("segment_totals", *_sum_columns())

# The same cells for the last full quarter before the data's end against the quarter before it —
# the executive overview's cards and segment moves when no period is chosen — with what a change
# linearised over the customers of both quarters needs (relq.measures.customer_sums.pair_sums): the
# sums of each quarter (c_*, p_*) and per score the customers in either, Σ S1·S2, S1·W2, W1·S2, W1·W2.
# derived_versions' recipe names the two quarters.
segment_quarters = _cell_table(
    "segment_quarters",
    *_sum_columns("c_"),
    *_sum_columns("p_"),
    *(
        Column(f"{name}_{part}", Double)
        for name in _SUMMED_SCORES
        for part in ("C", "S1S2", "S1W2", "W1S2", "W1W2")
    ),
)

# The reliability statistics' sums per segment cell over the whole history (relq.measures.reliability.
# save_segment_items, rebuilt from the answer rows with the instrument they were pivoted with, its
# recipe): the answer rows split as reliability.item_sums splits them — ``part`` "all" the rows
# complete on every item, a pillar's name the rows complete on that pillar but not on every item —
# and one row per statistic of a part (``stat`` n, s<i> = Σxᵢ, c<i>_<j> = Σxᵢxⱼ by the items' places),
# its ``value`` the sum over the cell's rows: what the Measurement and Gap quadrants pages add up for
# a view choosing segments of these dimensions only, with no period, wave, flag, theme or quadrant.
segment_items = _cell_stats_table("segment_items", "part")

# Data quality's counts of the responses per segment cell over the whole history (relq.analyses.
# dataquality.save_segment_quality, rebuilt after every change of the data with the instrument the
# checks read, its recipe): one row per count (``stat`` as dataquality's one pass names it — the
# responses, those having each column, those failing each check but speeders, whose line is half the
# view's own median) with its ``value`` in the cell: what the Data quality page adds up for a view
# choosing segments of these dimensions only, with no period, wave, flag, theme or quadrant.
segment_quality = _cell_stats_table("segment_quality")

# The cohort table's counts per segment cell (relq.analyses.retention.save_segment_cohorts, rebuilt
# with the purchase summary, for its data end): per combination of the customer dimensions, cohort
# (months since year 0 of the customers' start) and ``k`` months after it, ``n`` the customers active
# then — k = −1 the cohort's size: what the cohort table adds up for a view choosing segments of these
# dimensions only, over the whole history, with no quadrant.
segment_cohorts = _cell_table(
    "segment_cohorts",
    Column("cohort", Integer, nullable=False),
    Column("k", Integer, nullable=False),
    Column("n", Double, nullable=False),
    order_by="cohort, k",
)

# Each customer's last purchase, response or ticket (relq.analyses.retention.save_purchase_summary,
# rebuilt with the purchase summary): what the stale-customer check reads instead of every purchase,
# response and ticket.
customer_activity = Table(
    "customer_activity",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("last_at", DateTime, nullable=False),
    info=_clickhouse("customer_id"),
)

# Each customer's latest response having both pillars of each quadrant pair, over the whole history
# (relq.store.latest.save_latest_pairs, rebuilt with the purchase summary): one row per pair and
# customer — what the gap quadrants read for a view with no period, wave, quality-flag or theme
# restriction instead of ranking every response.
latest_pairs = Table(
    "latest_pairs",
    metadata,
    Column("pair", Text, nullable=False),  # the two pillars in PILLARS order, "trust|satisfaction"
    Column("customer_id", Text, nullable=False),
    Column("response_id", Text, nullable=False),
    Column("submitted_at", DateTime, nullable=False),
    *(Column(pillar, Double) for pillar in PILLARS),
    Column("nps", Integer),
    Column("csat", Integer),
    Column("comment", Text),
    info=_clickhouse("pair, customer_id"),
)

# Each customer's latest non-empty comment over the whole history (relq.store.latest.save_latest_pairs,
# rebuilt with the latest pairs): one row per customer who wrote one — what a customer list of a view
# with no period, wave, quality-flag or theme restriction reads instead of ranking every comment.
latest_comments = Table(
    "latest_comments",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("submitted_at", DateTime, nullable=False),
    Column("comment", Text, nullable=False),
    info=_clickhouse("customer_id"),
)

# Each account's latest two survey waves over the whole history (relq.analyses.retention.
# save_account_waves, rebuilt with the purchase summary): one row per customer with the columns of
# retention.account_waves — what the at-risk list reads for a view with no period, wave,
# quality-flag or theme restriction instead of grouping every response by person and wave.
account_waves = Table(
    "account_waves",
    metadata,
    Column("customer_id", Text, nullable=False),
    Column("wave_latest", Text),
    Column("wave_previous", Text),
    Column("latest_at", DateTime),
    *(Column(f"{pillar}_latest", Double) for pillar in PILLARS),
    Column("n1", Integer),
    Column("s1", Double),
    Column("ss1", Double),
    Column("n2", Integer),
    Column("s2", Double),
    Column("ss2", Double),
    Column("pairs", Integer),
    Column("p1", Double),
    Column("p2", Double),
    Column("dd", Double),
    Column("nps_answers", Integer),
    Column("promoters", Integer),
    Column("detractors", Integer),
    info=_clickhouse("customer_id"),
)

# The comment themes' per-customer sums by calendar month, as the Comment themes page's table reads
# them (relq.store.themes.save_theme_sums, rebuilt in every transaction that changes the stored
# themes and with the purchase summary after a data change): one row per month, customer (an
# unmatched response: per response), wave, set of quality flags, and either a language (``theme``
# empty: every response whose comment was read) or a theme (``language`` empty: the responses
# mentioning it), with the sums of relq.store.themes.theme_score_sums. Like response_sums, read only
# for a view whose dates start and end on month boundaries, with no comment theme chosen, while
# derived_versions says the rows are of the current data version.
theme_sums = Table(
    "theme_sums",
    metadata,
    *_month_row_keys(),
    Column("language", Text, nullable=False),
    Column("theme", Text, nullable=False),
    *(
        Column(name, Double, nullable=False)
        for name in (
            "n",
            "nps_w",
            "promoters",
            "detractors",
            *(f"{p}_{part}" for p in PILLARS for part in ("w", "s")),
            "positive",
            "neutral",
            "negative",
            "other_language",
            "themed",
        )
    ),
    info=_clickhouse("submitted_at, ifNull(customer_id, '')"),
)

# The Comment themes page's sums per segment cell over the whole history (relq.analyses.themes.
# save_theme_cells, made from theme_sums after every change of the data or the themes — every
# rebuild of theme_sums forgets them until then): one row per statistic of a ``part`` and ``key`` —
# "totals" (key empty: the sums over the cell's customers of their responses with a read comment),
# "theme" (key the theme: the sums over the customers mentioning it of their mentions and of the
# products with their comments and the rest), "base" (key empty: their NPS answers) and "language"
# (key the language: the comments read, in another language, mentioning a theme) — with its ``value``
# the sum over the cell's customers: what the page adds up for a view choosing segments of these
# dimensions only, with no period, wave, flag, theme or quadrant.
segment_themes = _cell_stats_table("segment_themes", "part", "key")

# Which data version (and data end; for the answer rows, which instrument) each derived table was
# built from; a table whose row is missing or older than the data is not read.
derived_versions = Table(
    "derived_versions",
    metadata,
    Column("name", Text, primary_key=True),
    Column("data_version", Integer, nullable=False),
    Column("data_end", Date, nullable=False),
    Column("recipe", Text),
)

# The tables rebuilt from the stored rows after every change of the data (relq.store.database
# drops one of other columns when it opens a store; removing an import empties them).
DERIVED_TABLES = (
    purchase_summary,
    customer_lifetimes,
    purchase_months,
    answer_rows,
    response_sums,
    customer_totals,
    latest_pairs,
    latest_comments,
    segment_months,
    segment_totals,
    segment_quarters,
    segment_items,
    segment_quality,
    customer_activity,
    segment_cohorts,
    account_waves,
    theme_sums,
    segment_themes,
    derived_versions,
)

# What an admin sets on the Admin page (e.g. whether executives may see owner splits): key → JSON.
app_settings = Table(
    "app_settings",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text),
    Column("updated_at", DateTime),
    Column("updated_by", Text),
)

# One row per change of the stored data (import, undo, demo, instrument edit), appended in the
# same transaction as the change. Its row count is the store's data version: every process (the
# dashboard, the CLI) sees an import at once, and the dashboard's cached numbers are keyed on it.
data_changes = Table(
    "data_changes",
    metadata,
    Column("changed_at", DateTime, nullable=False),
    Column("change", Text, nullable=False),
)

# --------------------------------------------------------------------------- closing the loop
# RelQ's own tables for cases, the rules that open them, alerts and the outbox. They are created
# like every other table (create_schema: CREATE TABLE IF NOT EXISTS), the same on every engine.

case_id_seq = Sequence("case_id_seq", metadata=metadata)

cases = Table(
    "cases",
    metadata,
    Column("case_id", Integer, case_id_seq, primary_key=True, server_default=case_id_seq.next_value()),
    Column("customer_id", Text, nullable=False),
    Column("reason", Text, nullable=False),  # a key of relq.store.cases.REASONS
    Column("source", Text),  # the list or rule it was opened from
    Column("detail", Text),  # why, in words: the NPS and comment, the at-risk reasons, the move
    Column("response_id", Text),  # the survey response that prompted it, when one did
    Column("status", Text, nullable=False),  # open → contacted → resolved | no_answer
    Column("owner", Text),
    Column("due_on", Date),
    Column("outcome", Text),
    Column("opened_at", DateTime, nullable=False),
    Column("opened_by", Text),
    Column("contacted_at", DateTime),
    Column("closed_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", Text),
    # Optimistic concurrency: every change sets version = version + 1 WHERE version = the one read.
    Column("version", Integer, nullable=False),
    # customer|reason while the case is open or contacted, NULL once closed: the database itself
    # refuses a second open case for the same customer and reason.
    Column("open_key", Text),
    Column("import_id", Integer),  # set only on the demo company's cases (removed with it)
    UniqueConstraint("open_key", name="uq_cases_open_key"),
    Index("ix_cases_customer", "customer_id"),
)

case_events = Table(
    "case_events",
    metadata,
    Column("case_id", Integer, nullable=False),
    Column("changed_at", DateTime, nullable=False),
    Column("changed_by", Text),
    Column("action", Text, nullable=False),  # opened, status, owner, due, outcome, note
    Column("detail", Text),
    Index("ix_case_events_case", "case_id"),
)

# Rows only where an analyst changed a default (relq.store.cases holds the defaults).
case_reasons = Table(
    "case_reasons",
    metadata,
    Column("reason", Text, primary_key=True),
    Column("sla_days", Integer, nullable=False),  # business days from opening to due
    Column("updated_by", Text),
    Column("updated_at", DateTime),
)

case_rules = Table(
    "case_rules",
    metadata,
    Column("rule", Text, primary_key=True),  # a key of relq.analyses.cases.RULES
    Column("enabled", Boolean, nullable=False),
    Column("params", Text),  # JSON
    Column("updated_by", Text),
    Column("updated_at", DateTime),
    Column("watching_since", DateTime),  # a watching rule's first run: it learnt who was already there
)

# Who a watching rule saw last time (the high-value accounts at risk), so it acts on a change only.
case_rule_watch = Table(
    "case_rule_watch",
    metadata,
    Column("rule", Text, nullable=False),
    Column("customer_id", Text, nullable=False),
    Column("since", DateTime, nullable=False),
    UniqueConstraint("rule", "customer_id", name="uq_case_rule_watch"),
)

alert_rule_id_seq = Sequence("alert_rule_id_seq", metadata=metadata)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column(
        "rule_id",
        Integer,
        alert_rule_id_seq,
        primary_key=True,
        server_default=alert_rule_id_seq.next_value(),
    ),
    Column("name", Text, nullable=False),
    Column("metric", Text, nullable=False),  # rq, trust, commitment, satisfaction, nps, csat, ces
    Column("dimension", Text),  # the segment: a customer dimension and one of its values (or none)
    Column("value", Text),
    Column("condition", Text, nullable=False),  # falls, rises, changes, below, above
    Column("threshold", Double),
    Column("window_days", Integer, nullable=False),
    Column("recipients", Text, nullable=False),  # JSON list of emails and webhook URLs
    Column("enabled", Boolean, nullable=False),
    Column("created_by", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_by", Text),
    Column("updated_at", DateTime, nullable=False),
)

alert_state = Table(
    "alert_state",
    metadata,
    Column("rule_id", Integer, primary_key=True, autoincrement=False),
    Column("active", Boolean, nullable=False),  # the condition held at the last evaluation
    Column("status", Text, nullable=False),  # fired, holding, clear, too few, error
    Column("message", Text),
    Column("evaluated_at", DateTime, nullable=False),
)

alert_event_id_seq = Sequence("alert_event_id_seq", metadata=metadata)

alert_events = Table(
    "alert_events",
    metadata,
    Column(
        "event_id",
        Integer,
        alert_event_id_seq,
        primary_key=True,
        server_default=alert_event_id_seq.next_value(),
    ),
    Column("rule_id", Integer, nullable=False),
    Column("fired_at", DateTime, nullable=False),
    Column("headline", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("link", Text),
    Column("estimate", Double),
    Column("low", Double),
    Column("high", Double),
    Column("n", Integer),
    Column("customers", Integer),
    Column("window_start", Date),
    Column("window_end", Date),
)

delivery_id_seq = Sequence("delivery_id_seq", metadata=metadata)

# Every mail and webhook call waits here until it went through: pending → sending → sent. A failed
# attempt goes back to pending with its reason; the next run retries it. ``dedupe_key`` is unique,
# so the same alert is never queued twice for the same recipient.
outbox = Table(
    "outbox",
    metadata,
    Column(
        "delivery_id", Integer, delivery_id_seq, primary_key=True, server_default=delivery_id_seq.next_value()
    ),
    Column("kind", Text, nullable=False),  # alert, digest
    Column("event_id", Integer),
    Column("channel", Text, nullable=False),  # email, webhook
    Column("target", Text, nullable=False),  # an email address or a webhook URL
    Column("subject", Text),
    Column("payload", Text, nullable=False),  # the whole MIME message, or the webhook's JSON
    Column("state", Text, nullable=False),  # pending, sending, sent
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", Text),
    Column("claimed_at", DateTime),
    Column("sent_at", DateTime),
    Column("dedupe_key", Text, nullable=False),
    UniqueConstraint("dedupe_key", name="uq_outbox_dedupe"),
)

CUSTOMER_FIELDS: tuple[str, ...] = (
    "customer_id",
    "external_ref",
    "name",
    "email",
    "company",
    "region",
    "industry",
    "plan",
    "owner",
    "acquired_at",
    "churned_at",
    "annual_value",
)
TRANSACTION_FIELDS: tuple[str, ...] = ("transaction_id", "customer_id", "occurred_at", "amount")
TICKET_FIELDS: tuple[str, ...] = (
    "ticket_id",
    "customer_id",
    "opened_at",
    "first_response_at",
    "resolved_at",
    "channel",
    "status",
)
RESPONSE_FIELDS: tuple[str, ...] = (
    "response_id",
    "customer_id",
    "email",
    "submitted_at",
    "wave",
    "duration",
    "nps",
    "csat",
    "ces",
    "comment",
)
# Customer columns a user can segment by; imported extra fields join these at run time.
SEGMENT_DIMENSIONS: tuple[str, ...] = (
    "region",
    "industry",
    "plan",
    "value_tier",
    "lifecycle_stage",
    "cohort",
    "owner",
)
