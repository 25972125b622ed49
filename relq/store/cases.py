"""Cases: the customers someone has to call, who owns each call, when it is due and how it ended.

A case is opened for one customer and one reason (a detractor who left a comment, an account
turning at risk, …), from a customer list or by a rule after an import. Its due date is the
reason's SLA in business days (Monday to Friday) from the day it was opened. It moves
open → contacted → resolved or no answer; a closed case can be reopened.

Two rules hold in the database itself, the same on DuckDB and PostgreSQL:

- **one open case per customer and reason**: ``cases.open_key`` (``customer|reason`` while the case
  is open or contacted, NULL once closed) is UNIQUE, so a second one is refused even when two
  people open it at the same moment;
- **no lost update**: every change is ``UPDATE … SET version = version + 1 WHERE version = <the
  version the editor read>``. When someone else saved in between, nothing is saved and
  :class:`relq.exceptions.CaseConflict` says who changed what and when.

Every opening and change writes its history row (``case_events``) and its audit record in the same
transaction as the change itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from relq.exceptions import CaseConflict, RelqError
from relq.store import dialects, schema
from relq.store.database import bulk_insert, record_audit
from relq.store.filters import SegmentFilter

__all__ = [
    "ROW_STORE_NEEDED",
    "supports_cases",
    "require_row_store",
    "Reason",
    "REASONS",
    "STATUSES",
    "STATUS_LABELS",
    "OPEN_STATUSES",
    "CLOSED_STATUSES",
    "TRANSITIONS",
    "OUTCOMES",
    "Opened",
    "business_days_after",
    "reason_slas",
    "set_reason_sla",
    "open_cases",
    "update_case",
    "get_case",
    "case_table",
    "case_counts",
    "case_totals",
    "case_owners",
    "owns_cases",
    "case_history",
]

C = schema.cases
E = schema.case_events

ROW_STORE_NEEDED = (
    "Cases, alerts and digests keep their state in tables RelQ changes row by row (a version per case, "
    "a delivery state per message), so they need DuckDB or PostgreSQL as RELQ_DATABASE_URL; on ClickHouse "
    "every dashboard works, but not these."
)


def supports_cases(bind) -> bool:
    """Whether the store can hold cases, alert state and the outbox (DuckDB, PostgreSQL: not ClickHouse)."""
    return not dialects.is_clickhouse(bind)


def require_row_store(bind) -> None:
    """Stop with a sentence on a store that cannot hold cases (see :data:`ROW_STORE_NEEDED`)."""
    if not supports_cases(bind):
        raise RelqError(ROW_STORE_NEEDED)


@dataclass(frozen=True)
class Reason:
    key: str
    label: str
    sla_days: int  # default; analysts and admins can change it (case_reasons)
    prompt: str  # what the call is for


REASONS: dict[str, Reason] = {
    r.key: r
    for r in (
        Reason(
            "detractor_comment",
            "Detractor with a comment",
            2,
            "They told you what went wrong: call back, listen, fix what you can and say what changed.",
        ),
        Reason("detractor", "Detractor", 3, "Ask what went wrong and what would make it right."),
        Reason(
            "high_value_at_risk",
            "High-value account turning at risk",
            2,
            "A valuable account has started to drift: reach the decision maker before they leave.",
        ),
        Reason("at_risk", "At risk", 5, "Reach them before they leave: learn why they are drifting."),
        Reason(
            "worse_quadrant",
            "Moved to a worse quadrant",
            5,
            "Their relationship got worse since the last survey: find out what happened.",
        ),
        Reason(
            "quadrant", "Quadrant follow-up", 10, "Act on the quadrant's recommendation for this customer."
        ),
        Reason("comment", "Comment follow-up", 5, "Answer what they wrote."),
    )
}
STATUSES: tuple[str, ...] = ("open", "contacted", "resolved", "no_answer")
STATUS_LABELS = {"open": "Open", "contacted": "Contacted", "resolved": "Resolved", "no_answer": "No answer"}
OPEN_STATUSES: tuple[str, ...] = ("open", "contacted")
CLOSED_STATUSES: tuple[str, ...] = ("resolved", "no_answer")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("contacted", "resolved", "no_answer"),
    "contacted": ("resolved", "no_answer"),
    "resolved": ("open",),  # reopen
    "no_answer": ("open",),
}
OUTCOMES: tuple[str, ...] = (
    "Issue fixed",
    "Explained, no change needed",
    "Goodwill gesture",
    "Escalated to product",
    "Plan or price changed",
    "Customer leaving anyway",
    "Could not reach",
)

# Any fixed 64-bit number: the PostgreSQL advisory lock taken while cases are opened.
_CASE_LOCK_KEY = 0x52454C43  # "RELC"


def _open_key(customer_id: str, reason: str) -> str:
    return f"{customer_id}|{reason}"


def _check_reason(reason: str) -> Reason:
    if reason not in REASONS:
        raise RelqError(f"{reason!r} is not a case reason; choose one of {', '.join(REASONS)}.")
    return REASONS[reason]


def business_days_after(start: date, days: int) -> date:
    """The day ``days`` business days (Monday–Friday) after ``start``; a weekend start counts
    from the next Monday.

    >>> business_days_after(date(2026, 11, 27), 2)  # Friday + 2 business days
    datetime.date(2026, 12, 1)
    >>> business_days_after(date(2026, 11, 28), 2)  # Saturday: Monday + 2
    datetime.date(2026, 12, 2)
    """
    if days < 0:
        raise ValueError(f"days must be at least 0, got {days}.")
    return pd.Timestamp(np.busday_offset(np.datetime64(start, "D"), days, roll="forward")).date()


def reason_slas(conn: Connection) -> dict[str, int]:
    """Each reason's SLA in business days: the analysts' setting where there is one, else the default."""
    stored = dict(conn.execute(sa.select(schema.case_reasons.c.reason, schema.case_reasons.c.sla_days)).all())
    return {key: int(stored.get(key, reason.sla_days)) for key, reason in REASONS.items()}


def set_reason_sla(engine: Engine, reason: str, days: int, user: str | None) -> None:
    """Change a reason's SLA (business days, 0–60); applies to cases opened from now on."""
    _check_reason(reason)
    if not 0 <= int(days) <= 60:
        raise RelqError(f"An SLA is 0 to 60 business days, not {days}.")
    table = schema.case_reasons
    with engine.begin() as conn:
        before = reason_slas(conn)[reason]
        conn.execute(table.delete().where(table.c.reason == reason))
        conn.execute(
            table.insert().values(
                reason=reason, sla_days=int(days), updated_by=user, updated_at=datetime.now()
            )
        )
        record_audit(conn, user, "edit_case_sla", {"reason": reason, "from": before, "to": int(days)})


@dataclass(frozen=True)
class Opened:
    """What :func:`open_cases` did: the new case ids, and the customers left alone and why."""

    opened: tuple[int, ...]
    already_open: tuple[str, ...]  # customer ids with an open case for this reason
    unknown: tuple[str, ...]  # customer ids no stored customer has

    def sentence(self, reason: str) -> str:
        label = REASONS[reason].label.lower()
        parts = [f"Opened {len(self.opened):,} case{'s' if len(self.opened) != 1 else ''} ({label})."]
        if self.already_open:
            n = len(self.already_open)
            parts.append(
                f"{n:,} customer{'s' if n != 1 else ''} already had an open case for this reason "
                "and got no second one."
            )
        if self.unknown:
            parts.append(f"{len(self.unknown):,} customer id(s) are not stored customers and were skipped.")
        return " ".join(parts)


def _serialise_case_openings(conn: Connection) -> None:
    """PostgreSQL: openings take turns, so a batch never trips over another one's new case (the
    unique open_key would refuse it anyway, but would fail the whole batch)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("key", _CASE_LOCK_KEY))))


def open_cases(
    engine: Engine | Connection,
    customers: pd.DataFrame | Iterable[str],
    reason: str,
    *,
    user: str | None,
    source: str,
    owner: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Opened:
    """Open one case per customer for ``reason``; never a second open case for the same customer
    and reason.

    ``customers`` is a list of customer ids or a frame with ``customer_id`` and optionally
    ``detail`` (why, in words) and ``response_id`` (the response that prompted it). The owner is
    ``owner`` when given, else the customer's CRM owner, else ``user``. Due: the reason's SLA in
    business days from today. Given a Connection, the cases join its transaction.
    """
    _check_reason(reason)
    require_row_store(engine)
    now = now or datetime.now()
    frame = (
        customers.copy()
        if isinstance(customers, pd.DataFrame)
        else pd.DataFrame({"customer_id": list(customers)})
    )
    if "customer_id" not in frame.columns:
        raise RelqError("The list has no customer_id column, so no case can be opened from it.")
    frame = frame[frame["customer_id"].notna()].copy()
    frame["customer_id"] = frame["customer_id"].astype(str)
    frame = frame.drop_duplicates("customer_id")
    for column in ("detail", "response_id"):
        if column not in frame.columns:
            frame[column] = None
    if isinstance(engine, Connection):
        return _open(engine, frame, reason, user, source, owner, note, now)
    with engine.begin() as conn:
        return _open(conn, frame, reason, user, source, owner, note, now)


def _chunks(values: list, size: int = 5_000):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _open(conn, frame, reason, user, source, owner, note, now) -> Opened:
    _serialise_case_openings(conn)
    ids = frame["customer_id"].tolist()
    owners: dict[str, str | None] = {}
    for chunk in _chunks(ids):
        rows = conn.execute(
            sa.select(schema.customers.c.customer_id, schema.customers.c.owner).where(
                schema.customers.c.customer_id.in_(chunk)
            )
        ).all()
        owners.update({r.customer_id: r.owner for r in rows})
    unknown = tuple(i for i in ids if i not in owners)
    frame = frame[frame["customer_id"].isin(owners)]
    keys = [_open_key(i, reason) for i in frame["customer_id"]]
    taken: set[str] = set()
    for chunk in _chunks(keys):
        taken |= set(conn.execute(sa.select(C.c.open_key).where(C.c.open_key.in_(chunk))).scalars())
    frame = frame.assign(open_key=keys)
    already = tuple(frame.loc[frame["open_key"].isin(taken), "customer_id"])
    new = frame[~frame["open_key"].isin(taken)]
    if new.empty:
        return Opened((), already, unknown)
    due = business_days_after(now.date(), reason_slas(conn)[reason])
    rows = pd.DataFrame(
        {
            "customer_id": new["customer_id"].to_numpy(),
            "reason": reason,
            "source": source,
            "detail": new["detail"].to_numpy(),
            "response_id": new["response_id"].to_numpy(),
            "status": "open",
            "owner": [owner or owners.get(i) or user for i in new["customer_id"]],
            "due_on": pd.Timestamp(due),
            "opened_at": pd.Timestamp(now),
            "opened_by": user,
            "updated_at": pd.Timestamp(now),
            "updated_by": user,
            "version": 1,
            "open_key": new["open_key"].to_numpy(),
        }
    )
    bulk_insert(conn, C, rows)
    opened: dict[str, int] = {}
    for chunk in _chunks(new["open_key"].tolist()):
        opened.update(
            dict(conn.execute(sa.select(C.c.open_key, C.c.case_id).where(C.c.open_key.in_(chunk))).all())
        )
    case_ids = [int(opened[k]) for k in new["open_key"]]
    events = pd.DataFrame(
        {
            "case_id": case_ids,
            "changed_at": pd.Timestamp(now),
            "changed_by": user,
            "action": "opened",
            "detail": f"opened from {source}; due {due:%d %b %Y}" + (f"; note: {note}" if note else ""),
        }
    )
    bulk_insert(conn, E, events)
    record_audit(
        conn,
        user,
        "case_open",
        {
            "reason": reason,
            "source": source,
            "cases": len(case_ids),
            "first": min(case_ids),
            "last": max(case_ids),
        },
    )
    return Opened(tuple(case_ids), already, unknown)


def get_case(conn: Connection, case_id: int) -> dict | None:
    """One case as a dict (with its customer's company and name), or None."""
    k = schema.customers.c
    row = conn.execute(
        sa.select(C, k.company, k.name.label("customer_name"), k.email.label("customer_email"))
        .select_from(C.outerjoin(schema.customers, schema.customers.c.customer_id == C.c.customer_id))
        .where(C.c.case_id == int(case_id))
    ).first()
    return dict(row._mapping) if row is not None else None


def _describe_change(field: str, old, new) -> str:
    if field == "status":
        return f"status {STATUS_LABELS.get(old, old)} → {STATUS_LABELS.get(new, new)}"
    if field == "due_on":
        return f"due {old:%d %b %Y} → {new:%d %b %Y}" if old else f"due {new:%d %b %Y}"
    return f"{field} {old or '—'} → {new or '—'}"


def _conflict(conn: Connection, case_id: int, current: dict | None) -> CaseConflict:
    if current is None:
        return CaseConflict(f"Case #{case_id} no longer exists; nothing was saved.")
    last = conn.execute(
        sa.select(E.c.changed_by, E.c.changed_at, E.c.detail)
        .where(E.c.case_id == case_id)
        .order_by(E.c.changed_at.desc())
        .limit(1)
    ).first()
    who = current.get("updated_by") or "someone"
    when = current.get("updated_at")
    what = f" ({last.detail})" if last is not None and last.detail else ""
    at = f" at {when:%H:%M on %d %b}" if isinstance(when, datetime) else ""
    return CaseConflict(
        f"Case #{case_id} was changed by {who}{at}{what} after you opened it, so your changes were not "
        "saved. Reload the case to see theirs, then make yours again."
    )


def update_case(
    engine: Engine,
    case_id: int,
    expected_version: int,
    *,
    user: str | None,
    status: str | None = None,
    owner: str | None = None,
    due_on: date | None = None,
    outcome: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Change a case the editor read at ``expected_version``; returns the case as saved.

    Raises :class:`CaseConflict` (nothing saved) when the case changed since, and
    :class:`RelqError` with a sentence for a change that is not allowed (a status that cannot
    follow the current one, resolving without an outcome, reopening a second open case).
    """
    require_row_store(engine)
    now = now or datetime.now()
    case_id = int(case_id)
    note = (note or "").strip() or None
    outcome = (outcome or "").strip() or None
    owner = (owner or "").strip() or None
    try:
        with engine.begin() as conn:
            current = get_case(conn, case_id)
            if current is None or int(current["version"]) != int(expected_version):
                raise _conflict(conn, case_id, current)
            changes: dict[str, object] = {}
            described: list[str] = []
            if status is not None and status != current["status"]:
                if status not in STATUSES:
                    raise RelqError(f"{status!r} is not a case status; choose one of {', '.join(STATUSES)}.")
                if status not in TRANSITIONS[current["status"]]:
                    allowed = " or ".join(STATUS_LABELS[s].lower() for s in TRANSITIONS[current["status"]])
                    raise RelqError(
                        f"A case that is {STATUS_LABELS[current['status']].lower()} can only become {allowed}."
                    )
                changes["status"] = status
                described.append(_describe_change("status", current["status"], status))
                if status == "contacted" and current["contacted_at"] is None:
                    changes["contacted_at"] = now
                if status in CLOSED_STATUSES:
                    changes["closed_at"] = now
                    changes["open_key"] = None
                    if status == "resolved" and current["contacted_at"] is None:
                        changes["contacted_at"] = now  # resolved on the first call
                if status == "open":  # reopened
                    changes["closed_at"] = None
                    changes["open_key"] = _open_key(current["customer_id"], current["reason"])
            if owner is not None and owner != current["owner"]:
                changes["owner"] = owner
                described.append(_describe_change("owner", current["owner"], owner))
            if due_on is not None and due_on != current["due_on"]:
                changes["due_on"] = due_on
                described.append(_describe_change("due_on", current["due_on"], due_on))
            if outcome is not None and outcome != current["outcome"]:
                changes["outcome"] = outcome
                described.append(_describe_change("outcome", current["outcome"], outcome))
            final_status = changes.get("status", current["status"])
            if final_status == "resolved" and not (changes.get("outcome") or current["outcome"]):
                raise RelqError("Say what came of it (the outcome) before resolving the case.")
            if not changes and not note:
                return current
            saved = conn.execute(
                C.update()
                .where(C.c.case_id == case_id, C.c.version == int(expected_version))
                .values(**changes, updated_at=now, updated_by=user, version=C.c.version + 1)
                .returning(C.c.version)  # not rowcount: DuckDB's driver does not report it
            ).all()
            if len(saved) != 1:  # someone saved between our read and this update
                raise _conflict(conn, case_id, get_case(conn, case_id))
            events = [{"action": "change", "detail": text} for text in described]
            if note:
                events.append({"action": "note", "detail": note})
            conn.execute(
                E.insert(), [{**e, "case_id": case_id, "changed_at": now, "changed_by": user} for e in events]
            )
            record_audit(
                conn,
                user,
                "case_update",
                {
                    "case_id": case_id,
                    "changes": described,
                    "note": bool(note),
                    "version": int(expected_version) + 1,
                },
            )
            return get_case(conn, case_id)
    except sa.exc.IntegrityError:
        raise RelqError(
            f"Case #{case_id} cannot be reopened: the customer already has an open case for this reason. "
            "Work that one instead."
        ) from None
    except sa.exc.DBAPIError as exc:
        if "conflict" in str(exc).lower():  # DuckDB: another transaction wrote the same row first
            with engine.connect() as conn:
                raise _conflict(conn, case_id, get_case(conn, case_id)) from None
        raise


def _scoped(query, flt: SegmentFilter | None):
    if flt is not None and (flt.customer or flt.quadrant):
        return query.where(
            C.c.customer_id.in_(sa.select(schema.customers.c.customer_id).where(flt.customer_clause()))
        )
    return query


def case_table(
    conn: Connection,
    flt: SegmentFilter | None = None,
    *,
    statuses: Iterable[str] = (),
    reasons: Iterable[str] = (),
    owners: Iterable[str] = (),
    owned_by: Iterable[str] = (),
    overdue_only: bool = False,
    search: str = "",
    today: date | None = None,
) -> pd.DataFrame:
    """Cases with their customer, newest first. ``flt`` limits them to customers in its segments;
    ``owned_by`` to owners named so in any letter case (a person's email and name: "mine");
    ``overdue_only`` to open or contacted cases past their due date.

    Columns: case_id, company, customer_id, reason, status, owner, due_on, overdue,
    days_overdue, opened_at, contacted_at, closed_at, outcome, source, detail, version,
    reason_key, status_key (plus the customer's name, email, region and plan).
    """
    today = today or date.today()
    k = schema.customers.c
    query = sa.select(
        C.c.case_id,
        k.company,
        C.c.customer_id,
        k.name,
        k.email,
        k.region,
        k.plan,
        C.c.reason,
        C.c.status,
        C.c.owner,
        C.c.due_on,
        C.c.opened_at,
        C.c.contacted_at,
        C.c.closed_at,
        C.c.outcome,
        C.c.source,
        C.c.detail,
        C.c.version,
    ).select_from(C.outerjoin(schema.customers, k.customer_id == C.c.customer_id))
    query = _scoped(query, flt)
    if statuses := list(statuses):
        query = query.where(C.c.status.in_(statuses))
    if reasons := list(reasons):
        query = query.where(C.c.reason.in_(reasons))
    if owners := list(owners):
        query = query.where(C.c.owner.in_(owners))
    if owned_by := [o.strip().lower() for o in owned_by if o and o.strip()]:
        query = query.where(sa.func.lower(C.c.owner).in_(owned_by))
    if overdue_only:
        query = query.where(C.c.status.in_(OPEN_STATUSES), C.c.due_on < today)
    if search := search.strip():
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            sa.or_(
                k.company.ilike(pattern, escape="\\"),
                k.name.ilike(pattern, escape="\\"),
                C.c.customer_id.ilike(pattern, escape="\\"),
                C.c.detail.ilike(pattern, escape="\\"),
            )
        )
    rows = conn.execute(query.order_by(C.c.opened_at.desc(), C.c.case_id.desc()))
    frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    frame["due_on"] = pd.to_datetime(frame["due_on"]).dt.date
    is_open = frame["status"].isin(OPEN_STATUSES)
    days = [(today - d).days if d is not None and not pd.isna(d) else 0 for d in frame["due_on"]]
    frame["days_overdue"] = np.where(is_open, np.maximum(days, 0), 0).astype(int)
    frame["overdue"] = is_open & (frame["days_overdue"] > 0)
    frame["reason_key"] = frame["reason"]
    frame["status_key"] = frame["status"]
    frame["reason"] = frame["reason"].map(lambda r: REASONS[r].label if r in REASONS else r)
    frame["status"] = frame["status"].map(lambda s: STATUS_LABELS.get(s, s))
    order = [
        "case_id",
        "company",
        "customer_id",
        "reason",
        "status",
        "owner",
        "due_on",
        "overdue",
        "days_overdue",
        "opened_at",
        "contacted_at",
        "closed_at",
        "outcome",
        "source",
        "detail",
        "name",
        "email",
        "region",
        "plan",
        "version",
        "reason_key",
        "status_key",
    ]
    return frame[order]


def case_counts(
    conn: Connection, flt: SegmentFilter | None = None, by: str = "reason", today: date | None = None
) -> pd.DataFrame:
    """Case counts per reason (or per owner): open, overdue, contacted, resolved, no answer, and the
    customers behind them — aggregates only, computed in the database."""
    if by not in ("reason", "owner"):
        raise ValueError(f"by must be 'reason' or 'owner', not {by!r}")
    today = today or date.today()
    group = C.c[by]
    is_open = C.c.status.in_(OPEN_STATUSES)

    def count_if(condition, label):
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0).label(label)

    query = _scoped(
        sa.select(
            group.label(by),
            count_if(C.c.status == "open", "open"),
            count_if(C.c.status == "contacted", "contacted"),
            count_if(sa.and_(is_open, C.c.due_on < today), "overdue"),
            count_if(C.c.status == "resolved", "resolved"),
            count_if(C.c.status == "no_answer", "no_answer"),
            sa.func.count().label("cases"),
            sa.func.count(sa.distinct(C.c.customer_id)).label("customers"),
        ).group_by(group),
        flt,
    )
    rows = conn.execute(query.order_by(sa.desc("cases")))
    frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    for column in ("open", "contacted", "overdue", "resolved", "no_answer", "cases", "customers"):
        frame[column] = frame[column].astype(int)
    if by == "reason":
        frame["reason"] = frame["reason"].map(lambda r: REASONS[r].label if r in REASONS else r)
    else:
        frame["owner"] = frame["owner"].fillna("(nobody)")
    return frame.rename(columns={"no_answer": "no answer"})


def case_totals(counts: pd.DataFrame) -> dict[str, int]:
    """Totals over a :func:`case_counts` frame: open, contacted, overdue, resolved, no answer."""
    names = ("open", "contacted", "overdue", "resolved", "no answer")
    return {name: int(counts[name].sum()) if name in counts else 0 for name in names}


def owns_cases(conn: Connection, names: Iterable[str]) -> bool:
    """Whether anyone named ``names`` (any letter case) owns a case."""
    names = [n.strip().lower() for n in names if n and n.strip()]
    if not names:
        return False
    query = sa.select(C.c.case_id).where(sa.func.lower(C.c.owner).in_(names)).limit(1)
    return conn.execute(query).first() is not None


def case_owners(conn: Connection) -> list[str]:
    """Everyone who owns a case, alphabetically."""
    return sorted(o for o in conn.execute(sa.select(C.c.owner).distinct()).scalars() if o)


def case_history(conn: Connection, case_id: int) -> pd.DataFrame:
    """Everything that happened to a case, oldest first: when, who, what."""
    rows = conn.execute(
        sa.select(E.c.changed_at.label("when"), E.c.changed_by.label("who"), E.c.action, E.c.detail)
        .where(E.c.case_id == int(case_id))
        .order_by(E.c.changed_at, sa.case((E.c.action == "opened", 0), (E.c.action == "change", 1), else_=2))
    )
    return pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
