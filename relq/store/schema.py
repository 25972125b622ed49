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
    Float,
    Index,
    Integer,
    MetaData,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.compiler import compiles

from relq.core.instrument import PILLARS

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
    "app_settings",
    "data_changes",
    "PILLARS",
    "CUSTOMER_FIELDS",
    "TRANSACTION_FIELDS",
    "TICKET_FIELDS",
    "RESPONSE_FIELDS",
    "SEGMENT_DIMENSIONS",
    "QUALITY_FLAGS",
]

# The data-quality flag columns of survey_responses: one list for the importer and the filter.
QUALITY_FLAGS: tuple[str, ...] = ("flag_duplicate", "flag_speeder", "flag_straightliner", "flag_out_of_range")


@compiles(Float, "duckdb")
def _float_is_double_on_duckdb(type_, compiler, **kw) -> str:
    """DuckDB reads FLOAT as 4-byte REAL; PostgreSQL as 8-byte. RelQ wants the same figures on
    both engines, so every Float (columns and casts in queries) is DOUBLE on DuckDB."""
    return "DOUBLE"


metadata = MetaData()

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
)

transactions = Table(
    "transactions",
    metadata,
    Column("transaction_id", Text, primary_key=True),  # given, else a content hash
    Column("customer_id", Text, nullable=False),
    Column("occurred_at", DateTime, nullable=False),
    Column("amount", Double, nullable=False),
    Column("import_id", Integer),
    Index("ix_transactions_customer", "customer_id", "occurred_at"),
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
    Index("ix_responses_submitted", "submitted_at"),
    Index("ix_responses_customer", "customer_id", "submitted_at"),
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
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("logged_at", DateTime, nullable=False),
    Column("user_email", Text),
    Column("action", Text, nullable=False),  # import, undo_import, export, edit_instrument, ...
    Column("detail", Text),
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
