"""Alerts: evaluate every rule, fire once per change, queue the messages, deliver them.

An alert **fires once per change**: when its condition holds now and did not at the rule's
previous evaluation. While it keeps holding nothing more is sent; once it no longer holds the
rule is clear and the next change fires again. A window that cannot be judged (too few answers)
leaves the rule's state as it was. Firing, its queued messages (one per recipient) and its audit
record are one transaction; delivery follows (:mod:`relq.outputs.delivery`).

An email recipient needs a role in the roles file (as for digests), and a recipient limited to
a scope (say one region) gets only alerts on a segment inside it. Alerts carry aggregates only —
a number, its interval, its n — never a customer's name.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from relq.analyses import alerts
from relq.core import auth
from relq.core.settings import Settings, load_settings
from relq.outputs import mail, webhook
from relq.outputs.delivery import DeliveryReport, deliver_pending
from relq.store import catalog, outbox, record_audit, schema, serialise_imports
from relq.store.cases import require_row_store

__all__ = ["AlertRun", "run_alerts", "within_scope"]

S = schema.alert_state


@dataclass
class AlertRun:
    evaluations: list[alerts.Evaluation] = field(default_factory=list)
    fired: list[tuple[alerts.Evaluation, int, int]] = field(
        default_factory=list
    )  # (evaluation, event id, queued)
    skipped: list[str] = field(default_factory=list)  # recipients left out, one sentence each
    delivery: DeliveryReport | None = None

    @property
    def errors(self) -> list[str]:
        return [e.message for e in self.evaluations if e.status == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors and (self.delivery is None or self.delivery.ok)

    def lines(self) -> list[str]:
        """What happened, one line per rule that fired or failed, then the delivery summary."""
        out = [
            f"Alert “{e.rule.name}” fired: {e.headline} (queued for {q} recipient{'s' if q != 1 else ''})."
            for e, _, q in self.fired
        ]
        out += [f"Alert rule error: {m}" for m in self.errors]
        out += self.skipped
        quiet = len(self.evaluations) - len(self.fired) - len(self.errors)
        if self.evaluations:
            out.append(
                f"{len(self.evaluations)} alert rule(s) evaluated; {quiet} did not fire (no change to report)."
            )
        if self.delivery is not None:
            out.append(self.delivery.summary())
        return out

    def problem(self) -> str:
        """One line for what went wrong (empty when nothing did)."""
        problems = []
        if self.errors:
            problems.append(
                self.errors[0]
                + (f" (and {len(self.errors) - 1} more rule error(s))" if len(self.errors) > 1 else "")
            )
        if self.delivery is not None and not self.delivery.ok:
            problems.append(self.delivery.problem())
        return " ".join(problems)


def within_scope(scope: auth.Scope, rule: alerts.AlertRule) -> bool:
    """Whether a recipient limited to ``scope`` may receive alerts on ``rule``'s segment."""
    return all(rule.dimension == dimension and rule.value in values for dimension, values in scope)


def _alert_mail(evaluation: alerts.Evaluation, to: str, event_id: int, settings: Settings) -> tuple[str, str]:
    rule = evaluation.rule
    subject = f"RelQ alert: {evaluation.headline}"
    text = (
        f"{evaluation.headline}\n\n{evaluation.message}\n\nRule: {rule.describe()}\n"
        f"Open the filtered view: {evaluation.link}\n\n"
        f"You get this because you are a recipient of the RelQ alert rule “{rule.name}”. It is sent once "
        "per change: again only after the number has recovered and moved again.\n"
    )
    body = (
        '<!doctype html><html><body style="font-family: Helvetica, Arial, sans-serif; color:#1F2933">'
        f'<h2 style="color:#1F3B57">{html.escape(evaluation.headline)}</h2>'
        f"<p>{html.escape(evaluation.message)}</p>"
        f'<p><a href="{html.escape(evaluation.link)}">Open the filtered view in RelQ</a></p>'
        f'<p style="color:#52606D; font-size: 0.9em">Rule: {html.escape(rule.describe())}. Sent once per change.</p>'
        "</body></html>"
    )
    message = mail.build_message(
        sender=settings.mail_from,
        to=to,
        subject=subject,
        text=text,
        html=body,
        message_key=f"alert-{event_id}-{to}",
    )
    return subject, message


def _fire(
    conn, evaluation: alerts.Evaluation, roles: auth.RoleMap, settings: Settings, user, now
) -> tuple[int, int, list[str]]:
    rule = evaluation.rule
    e = schema.alert_events
    event_id = conn.execute(
        e.insert()
        .values(
            rule_id=rule.rule_id,
            fired_at=now,
            headline=evaluation.headline,
            message=evaluation.message,
            link=evaluation.link,
            estimate=evaluation.estimate,
            low=evaluation.low,
            high=evaluation.high,
            n=evaluation.n,
            customers=evaluation.customers,
            window_start=evaluation.window[0] if evaluation.window else None,
            window_end=evaluation.window[1] if evaluation.window else None,
        )
        .returning(e.c.event_id)
    ).scalar_one()
    queued, skipped = 0, []
    for target in rule.recipients:
        if target.startswith(("http://", "https://")):
            payload = webhook.alert_payload(
                evaluation.headline, evaluation.message, rule.describe(), evaluation.link
            )
            channel, subject, body = "webhook", evaluation.headline, webhook.as_json(payload)
        else:
            if auth.role_for(target, roles) is None:
                skipped.append(
                    f"Alert “{rule.name}”: {target} has no role in the roles file, so it was not sent to them."
                )
                continue
            scope = auth.scope_for(target, roles)
            if not within_scope(scope, rule):
                skipped.append(
                    f"Alert “{rule.name}”: {target} sees only {auth.describe_scope(scope)}, and the rule watches "
                    f"{rule.segment}, so it was not sent to them."
                )
                continue
            channel = "email"
            subject, body = _alert_mail(evaluation, target, event_id, settings)
        if outbox.enqueue(
            conn,
            kind="alert",
            event_id=event_id,
            channel=channel,
            target=target,
            subject=subject,
            payload=body,
            dedupe_key=f"alert:{event_id}:{target}",
            user=user,
            now=now,
        ):
            queued += 1
    record_audit(
        conn,
        user,
        "alert",
        {"rule_id": rule.rule_id, "event_id": event_id, "headline": evaluation.headline, "queued": queued},
    )
    return event_id, queued, skipped


def run_alerts(
    engine: Engine,
    *,
    user: str | None,
    settings: Settings | None = None,
    roles: auth.RoleMap | None = None,
    now: datetime | None = None,
    deliver: bool = True,
) -> AlertRun:
    """Evaluate every enabled rule, fire what changed, then deliver everything waiting."""
    require_row_store(engine)
    settings = settings or load_settings()
    roles = roles if roles is not None else auth.load_roles(settings.roles_path)
    now = now or datetime.now()
    run = AlertRun()
    with engine.connect() as conn:
        rules = alerts.list_rules(conn, enabled_only=True)
        dimensions = catalog.dimensions(conn)
        end = alerts.latest_survey_day(conn)
    for rule in rules:
        with engine.connect() as conn:
            evaluation = alerts.evaluate_rule(
                conn,
                rule,
                public_url=settings.public_url,
                min_n=settings.min_n,
                end=end,
                dimensions=dimensions,
            )
        run.evaluations.append(evaluation)
        with engine.begin() as conn:
            serialise_imports(conn)  # PostgreSQL: two runs at once take turns, so a change fires once
            state = conn.execute(sa.select(S).where(S.c.rule_id == rule.rule_id)).first()
            was_active = bool(state.active) if state is not None else False
            active = was_active if evaluation.holds is None else bool(evaluation.holds)
            status = {"met": "holding", "not met": "clear"}.get(evaluation.status, evaluation.status)
            if evaluation.holds and not was_active:
                event_id, queued, skipped = _fire(conn, evaluation, roles, settings, user, now)
                run.fired.append((evaluation, event_id, queued))
                run.skipped += skipped
                status = "fired"
            values = {"active": active, "status": status, "message": evaluation.message, "evaluated_at": now}
            if state is None:
                conn.execute(S.insert().values(rule_id=rule.rule_id, **values))
            else:
                conn.execute(S.update().where(S.c.rule_id == rule.rule_id).values(**values))
    if deliver:
        run.delivery = deliver_pending(engine, user=user, settings=settings, now=now)
    return run
