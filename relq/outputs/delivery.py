"""Delivering what waits in the outbox: mail through RELQ_SMTP_URL, webhooks by POST.

Each delivery is claimed (committed) before it leaves, marked sent with its audit record after
the server accepted it, and put back with its reason when it did not go through — so nothing is
lost, the next run (``python -m relq alerts run``, or the next import) retries it, and nothing
that went out is sent again (:mod:`relq.store.outbox`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from relq.core.settings import Settings, load_settings
from relq.exceptions import DeliveryFailed
from relq.outputs import mail, webhook
from relq.store import outbox

__all__ = ["DeliveryReport", "deliver_pending"]

NO_MAIL_SERVER = (
    "Mail is not configured, so it waits in the outbox: set RELQ_SMTP_URL "
    "(smtp://[user:password@]host:port) and run `python -m relq alerts run`."
)


@dataclass
class DeliveryReport:
    """What one run delivered: the ids sent, and each failure with the recipient and a sentence."""

    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        if not self.sent and not self.failed:
            return "Nothing was waiting to be delivered."
        text = f"Delivered {len(self.sent):,} of {len(self.sent) + len(self.failed):,} waiting messages."
        if self.failed:
            text += " " + self.problem()
        return text

    def problem(self) -> str:
        """One line for the failures (empty when there are none)."""
        if not self.failed:
            return ""
        reasons = list(dict.fromkeys(reason for _, _, reason in self.failed))
        more = (
            f" (and {len(reasons) - 1} other reason{'s' if len(reasons) > 2 else ''})"
            if len(reasons) > 1
            else ""
        )
        n = len(self.failed)
        return (
            f"{n:,} deliver{'ies' if n != 1 else 'y'} failed and stay{'s' if n == 1 else ''} queued for the next run: "
            f"{reasons[0]}{more}"
        )


def deliver_pending(
    engine: Engine, *, user: str | None, settings: Settings | None = None, now: datetime | None = None
) -> DeliveryReport:
    """Send everything waiting in the outbox, oldest first."""
    settings = settings or load_settings()
    report = DeliveryReport()
    with engine.connect() as conn:
        waiting = outbox.claimable(conn, now)
    emails = waiting[waiting["channel"] == "email"]
    for row in waiting[waiting["channel"] == "webhook"].itertuples():
        delivery = outbox.claim(engine, row.delivery_id, now)
        if delivery is None:
            continue  # another sender has it, or it went out meanwhile
        try:
            webhook.post_json(
                delivery["target"], delivery["payload"], delivery["delivery_id"], settings.delivery_timeout
            )
        except DeliveryFailed as exc:
            outbox.release(engine, delivery["delivery_id"], str(exc))
            report.failed.append(
                (delivery["delivery_id"], outbox.mask_target("webhook", delivery["target"]), str(exc))
            )
            continue
        outbox.mark_sent(engine, delivery, user, now)
        report.sent.append(delivery["delivery_id"])
    if emails.empty:
        return report
    server = settings.smtp
    claimed = [
        d for d in (outbox.claim(engine, r.delivery_id, now) for r in emails.itertuples()) if d is not None
    ]
    if server is None:
        for delivery in claimed:
            outbox.release(engine, delivery["delivery_id"], NO_MAIL_SERVER)
            report.failed.append((delivery["delivery_id"], delivery["target"], NO_MAIL_SERVER))
        return report
    if not claimed:
        return report
    try:
        with mail.smtp_session(server, settings.delivery_timeout) as client:
            for delivery in claimed:
                try:
                    mail.send_one(client, server, settings.mail_from, delivery["target"], delivery["payload"])
                except DeliveryFailed as exc:
                    outbox.release(engine, delivery["delivery_id"], str(exc))
                    report.failed.append((delivery["delivery_id"], delivery["target"], str(exc)))
                    continue
                outbox.mark_sent(engine, delivery, user, now)
                report.sent.append(delivery["delivery_id"])
                delivery["done"] = True
    except DeliveryFailed as exc:  # could not connect or log in: nothing of this batch left
        for delivery in claimed:
            if not delivery.get("done") and not any(f[0] == delivery["delivery_id"] for f in report.failed):
                outbox.release(engine, delivery["delivery_id"], str(exc))
                report.failed.append((delivery["delivery_id"], delivery["target"], str(exc)))
    return report
