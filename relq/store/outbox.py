"""The outbox: every mail and webhook call RelQ owes someone, until it went through.

A delivery is queued (``pending``) in the same transaction as what caused it (an alert that
fired, a digest asked for). A sender **claims** it (``sending``, committed before anything leaves
RelQ), sends it, then marks it ``sent`` together with its audit record. A failed attempt goes back
to ``pending`` with its reason and is retried by the next run; a sent one is never sent again.
``dedupe_key`` is unique, so the same alert cannot be queued twice for one recipient.

A delivery whose sender died mid-send stays ``sending``; after :data:`CLAIM_TIMEOUT` the next run
takes it up again. It then goes out with the same Message-ID (mail) or X-RelQ-Delivery header
(webhook), so a receiver can recognise the rare repeat.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from relq.store import schema
from relq.store.database import record_audit

__all__ = [
    "CLAIM_TIMEOUT",
    "mask_target",
    "enqueue",
    "claimable",
    "claim",
    "mark_sent",
    "release",
    "outbox_table",
]

OUT = schema.outbox
CLAIM_TIMEOUT = timedelta(minutes=15)


def mask_target(channel: str, target: str) -> str:
    """How a recipient is shown and logged: a webhook by its host only (its path is a secret).

    >>> mask_target("webhook", "https://hooks.slack.com/services/T0/B0/XyZ")
    'https://hooks.slack.com/…'
    """
    if channel != "webhook":
        return target
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"


def enqueue(
    conn: Connection,
    *,
    kind: str,
    channel: str,
    target: str,
    subject: str,
    payload: str,
    dedupe_key: str,
    event_id: int | None = None,
    user: str | None = None,
    now: datetime | None = None,
) -> int | None:
    """Queue one delivery in ``conn``'s transaction; None when ``dedupe_key`` is already queued."""
    if conn.execute(sa.select(OUT.c.delivery_id).where(OUT.c.dedupe_key == dedupe_key)).first() is not None:
        return None
    return conn.execute(
        OUT.insert()
        .values(
            kind=kind,
            event_id=event_id,
            channel=channel,
            target=target,
            subject=subject,
            payload=payload,
            state="pending",
            attempts=0,
            created_at=now or datetime.now(),
            created_by=user,
            dedupe_key=dedupe_key,
        )
        .returning(OUT.c.delivery_id)
    ).scalar_one()


def _claimable(now: datetime):
    return sa.or_(
        OUT.c.state == "pending", sa.and_(OUT.c.state == "sending", OUT.c.claimed_at < now - CLAIM_TIMEOUT)
    )


def claimable(conn: Connection, now: datetime | None = None) -> pd.DataFrame:
    """Deliveries waiting to go out, oldest first (without their payloads)."""
    now = now or datetime.now()
    rows = conn.execute(
        sa.select(OUT.c.delivery_id, OUT.c.kind, OUT.c.channel, OUT.c.target, OUT.c.subject, OUT.c.attempts)
        .where(_claimable(now))
        .order_by(OUT.c.delivery_id)
    )
    return pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))


def claim(engine: Engine, delivery_id: int, now: datetime | None = None) -> dict | None:
    """Take one delivery for sending (committed at once); None when another sender has it or it
    went out already."""
    now = now or datetime.now()
    with engine.begin() as conn:
        # RETURNING, not rowcount: DuckDB's driver does not report how many rows an UPDATE changed
        taken = conn.execute(
            OUT.update()
            .where(OUT.c.delivery_id == int(delivery_id), _claimable(now))
            .values(state="sending", claimed_at=now, attempts=OUT.c.attempts + 1)
            .returning(OUT.c.delivery_id)
        ).all()
        if len(taken) != 1:
            return None
        return dict(conn.execute(sa.select(OUT).where(OUT.c.delivery_id == int(delivery_id))).one()._mapping)


def mark_sent(engine: Engine, delivery: dict, user: str | None, now: datetime | None = None) -> None:
    """Record a delivery as sent, with its audit record, in one transaction."""
    now = now or datetime.now()
    with engine.begin() as conn:
        conn.execute(
            OUT.update()
            .where(OUT.c.delivery_id == int(delivery["delivery_id"]))
            .values(state="sent", sent_at=now, last_error=None)
        )
        record_audit(
            conn,
            user,
            "send",
            {
                "delivery_id": int(delivery["delivery_id"]),
                "kind": delivery["kind"],
                "channel": delivery["channel"],
                "to": mask_target(delivery["channel"], delivery["target"]),
                "subject": delivery["subject"],
            },
        )


def release(engine: Engine, delivery_id: int, error: str) -> None:
    """Put a delivery that did not go through back in the queue, with the reason."""
    with engine.begin() as conn:
        conn.execute(
            OUT.update()
            .where(OUT.c.delivery_id == int(delivery_id), OUT.c.state == "sending")
            .values(state="pending", claimed_at=None, last_error=error)
        )


def outbox_table(conn: Connection, limit: int = 200) -> pd.DataFrame:
    """The latest deliveries for the Alerts page: what, to whom (webhooks masked), state, attempts,
    last error."""
    rows = conn.execute(
        sa.select(
            OUT.c.delivery_id,
            OUT.c.created_at,
            OUT.c.kind,
            OUT.c.channel,
            OUT.c.target,
            OUT.c.subject,
            OUT.c.state,
            OUT.c.attempts,
            OUT.c.sent_at,
            OUT.c.last_error,
        )
        .order_by(OUT.c.delivery_id.desc())
        .limit(limit)
    )
    frame = pd.DataFrame(rows.fetchall(), columns=list(rows.keys()))
    frame["target"] = [mask_target(c, t) for c, t in zip(frame["channel"], frame["target"], strict=True)]
    return frame
